//! The reference answer to an incoming [`Rpc`], as `node serve`, the demo
//! and the test peers give it.
//!
//! This module owns [`answer`]: it reads an InstallSnapshot's data to its
//! end, then answers with the core's reference response
//! ([`raft_grpc_transport::reference::response`]: AppendEntries succeeds
//! with the request's term, votes are granted, a snapshot succeeds when
//! exactly `size` bytes arrived intact), and [`heartbeat_handler`], which
//! answers heartbeats on the fast path the same way. It keeps no state: it
//! is no Raft.

use std::sync::Arc;

use raft_grpc_transport::message::{AppendEntriesRequest, RpcHeader};
use raft_grpc_transport::reference::{append_entries_response, response};

use crate::{HeartbeatHandler, Rpc};

/// A heartbeat handler that answers every heartbeat the reference way,
/// with `header` in the response.
pub fn heartbeat_handler(header: RpcHeader) -> HeartbeatHandler {
    Arc::new(move |request: &AppendEntriesRequest, _: &crate::PeerInfo| {
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
        ..
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
    use crate::{Responder, SnapshotBytes, SnapshotReader};
    use raft_grpc_transport::Status;
    use raft_grpc_transport::message::{
        AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse, Log, RaftRequest,
        RaftResponse,
    };

    fn run(request: RaftRequest, snapshot: Option<SnapshotReader>) -> RaftResponse {
        let answer_slot = Arc::new(Mutex::new(None));
        let slot = answer_slot.clone();
        let responder = Responder::new(move |r| {
            *slot.lock().unwrap() = Some(r);
            true
        });
        let rpc = Rpc::new(request, responder, snapshot);
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
        let r = handler(&heartbeat, &crate::PeerInfo::default()).unwrap();
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
