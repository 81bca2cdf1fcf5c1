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
//! [`answer`] does it all for an incoming [`Rpc`]; [`response`] and
//! [`append_entries_response`] compute the answer for code that receives
//! requests its own way (a simulation, a test that records what arrived);
//! [`heartbeat_handler`] answers heartbeats on the fast path.

use std::sync::Arc;

use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, RaftRequest,
    RaftResponse, RequestPreVoteResponse, RequestVoteResponse, RpcHeader, TimeoutNowResponse,
};
use crate::transport::{HeartbeatHandler, Rpc};

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

/// A heartbeat handler that answers every heartbeat the reference way,
/// with `header` in the response.
pub fn heartbeat_handler(header: RpcHeader) -> HeartbeatHandler {
    Arc::new(move |request: &AppendEntriesRequest| {
        Ok(append_entries_response(request, header.clone()))
    })
}

/// Answers `rpc` the reference way, with `header` in the response. Reads an
/// InstallSnapshot's data first. Returns whether the answer could be
/// delivered.
pub async fn answer(rpc: Rpc, header: RpcHeader) -> bool {
    let Rpc {
        request,
        responder,
        snapshot,
    } = rpc;
    let mut received = None;
    if let Some(mut reader) = snapshot {
        let mut count = 0u64;
        received = loop {
            match reader.chunk().await {
                Ok(Some(chunk)) => count += chunk.len() as u64,
                Ok(None) => break Some(count),
                Err(_) => break None,
            }
        };
    }
    responder.respond(Ok(response(&request, header, received)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::Bytes;

    use super::*;
    use crate::message::{AppendEntriesRequest, InstallSnapshotRequest, Log};
    use crate::status::Status;
    use crate::transport::{Responder, SnapshotBytes, SnapshotReader};

    fn run(request: RaftRequest, snapshot: Option<SnapshotReader>) -> RaftResponse {
        let answer_slot = Arc::new(Mutex::new(None));
        let slot = answer_slot.clone();
        let rpc = Rpc {
            request,
            responder: Responder::new(move |r| {
                *slot.lock().unwrap() = Some(r);
                true
            }),
            snapshot,
        };
        let mut future = std::pin::pin!(answer(rpc, RpcHeader::new(3, "ref", "addr")));
        let waker = std::task::Waker::noop();
        assert_eq!(
            future.as_mut().poll(&mut Context::from_waker(waker)),
            Poll::Ready(true)
        );
        let result: Option<Result<RaftResponse, Status>> = answer_slot.lock().unwrap().take();
        result.unwrap().unwrap()
    }

    #[test]
    fn the_heartbeat_handler_answers_as_documented() {
        let handler = heartbeat_handler(RpcHeader::new(3, "ref", "addr"));
        let heartbeat = AppendEntriesRequest {
            header: RpcHeader::new(3, "leader", "l:1"),
            term: 7,
            ..Default::default()
        };
        let r = handler(&heartbeat).unwrap();
        assert_eq!((r.term, r.last_log, r.success), (7, 0, true));
        assert_eq!(r.header, RpcHeader::new(3, "ref", "addr"));
    }

    #[test]
    fn answers_as_documented() {
        let r = run(
            RaftRequest::AppendEntries(AppendEntriesRequest {
                term: 4,
                prev_log_entry: 9,
                entries: vec![
                    Log::command(10, 4, Bytes::new()),
                    Log::command(11, 4, Bytes::new()),
                ],
                ..Default::default()
            }),
            None,
        );
        let RaftResponse::AppendEntries(r) = r else {
            panic!()
        };
        assert_eq!((r.term, r.last_log, r.success), (4, 11, true));
        assert_eq!(r.header.id, Bytes::from_static(b"ref"));

        let data = SnapshotBytes::new([Bytes::from_static(b"abc")], None);
        let meta = InstallSnapshotRequest {
            term: 5,
            size: 3,
            ..Default::default()
        };
        let r = run(
            RaftRequest::InstallSnapshot(meta.clone()),
            Some(SnapshotReader::new(data, 3)),
        );
        assert_eq!(
            r,
            RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                header: RpcHeader::new(3, "ref", "addr"),
                term: 5,
                success: true
            })
        );
        let short = SnapshotBytes::new([Bytes::from_static(b"ab")], None);
        let r = run(
            RaftRequest::InstallSnapshot(meta),
            Some(SnapshotReader::new(short, 3)),
        );
        assert!(matches!(
            r,
            RaftResponse::InstallSnapshot(InstallSnapshotResponse { success: false, .. })
        ));
    }
}
