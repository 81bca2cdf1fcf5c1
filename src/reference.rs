//! The reference responder: how `node serve`, the demo and the test peers
//! answer Raft RPCs.
//!
//! This module owns a fixed and documented way of answering every RPC
//! kind, so that a client (ours, the Go library's, tonic's) can be checked
//! against a known server: AppendEntries succeeds with the request's term
//! and `last_log` = the last entry's index (or `prev_log_entry` when there
//! are none); RequestVote and RequestPreVote are granted at the request's
//! term; InstallSnapshot reads the data to its end and succeeds when
//! exactly `size` bytes arrived intact; TimeoutNow gets an empty answer.
//! Every response carries the responder's header. It is no Raft: it keeps
//! no state.
//!
//! [`response`] and [`append_entries_response`] compute the answer, for
//! whatever receives the requests (a transport's consumer, a simulation, a
//! test that records what arrived). It is pure: reading a snapshot's data
//! first is the caller's part.

use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, RaftRequest,
    RaftResponse, RequestPreVoteResponse, RequestVoteResponse, RpcHeader, TimeoutNowResponse,
};

/// The reference answer to an AppendEntries (unary, pipelined or a
/// heartbeat).
pub fn append_entries_response(
    request: &AppendEntriesRequest,
    header: RpcHeader,
) -> AppendEntriesResponse {
    AppendEntriesResponse {
        header,
        term: request.term,
        last_log: request
            .entries
            .last()
            .map_or(request.prev_log_entry, |e| e.index),
        success: true,
        no_retry_backoff: false,
    }
}

/// The reference answer to `request`. For InstallSnapshot,
/// `snapshot_received` is how many bytes of data were read to a clean end
/// (`None` when reading failed); other RPCs ignore it.
pub fn response(
    request: &RaftRequest,
    header: RpcHeader,
    snapshot_received: Option<u64>,
) -> RaftResponse {
    match request {
        RaftRequest::AppendEntries(r) => {
            RaftResponse::AppendEntries(append_entries_response(r, header))
        }
        RaftRequest::RequestVote(r) => RaftResponse::RequestVote(RequestVoteResponse {
            header,
            term: r.term,
            granted: true,
            ..Default::default()
        }),
        RaftRequest::RequestPreVote(r) => RaftResponse::RequestPreVote(RequestPreVoteResponse {
            header,
            term: r.term,
            granted: true,
        }),
        RaftRequest::TimeoutNow(_) => RaftResponse::TimeoutNow(TimeoutNowResponse { header }),
        RaftRequest::InstallSnapshot(meta) => {
            RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                header,
                term: meta.term,
                success: snapshot_received == Some(meta.size),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::{InstallSnapshotRequest, Log};

    #[test]
    fn answers_as_documented() {
        let request = RaftRequest::AppendEntries(AppendEntriesRequest {
            term: 4,
            prev_log_entry: 9,
            entries: vec![
                Log::command(10, 4, Bytes::new()),
                Log::command(11, 4, Bytes::new()),
            ],
            ..Default::default()
        });
        let RaftResponse::AppendEntries(r) =
            response(&request, RpcHeader::new(3, "ref", "addr"), None)
        else {
            panic!()
        };
        assert_eq!((r.term, r.last_log, r.success), (4, 11, true));
        assert_eq!(r.header.id, Bytes::from_static(b"ref"));

        let heartbeat = AppendEntriesRequest {
            term: 7,
            ..Default::default()
        };
        let r = append_entries_response(&heartbeat, RpcHeader::default());
        assert_eq!((r.term, r.last_log, r.success), (7, 0, true));

        let meta = InstallSnapshotRequest {
            term: 5,
            size: 3,
            ..Default::default()
        };
        let snapshot = RaftRequest::InstallSnapshot(meta);
        for (received, success) in [(Some(3), true), (Some(2), false), (None, false)] {
            assert_eq!(
                response(&snapshot, RpcHeader::default(), received),
                RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                    header: RpcHeader::default(),
                    term: 5,
                    success
                })
            );
        }
    }
}
