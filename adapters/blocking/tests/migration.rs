//! `MigrationTransport` from plain threads, through the blocking wrapper.

use std::io::Read;
use std::thread;

use bytes::Bytes;
use raft_grpc_transport::message::*;
use raft_grpc_transport_api::TransportError;
use raft_grpc_transport_api::migration::{MigrationTransport, fallback_on_either};
use raft_grpc_transport_blocking::Blocking;
use raft_grpc_transport_blocking::{InmemConfig, InmemNetwork, InmemTransport};

/// Answers every RPC like `node serve`, on a thread of its own.
fn answer_all(transport: InmemTransport, id: &'static str) {
    thread::spawn(move || {
        let blocking = Blocking::new(transport);
        while let Some(rpc) = blocking.recv() {
            rpc.answer_reference(RpcHeader::new(3, id, ""));
        }
    });
}

#[test]
fn blocking_migration_falls_back_and_merges_incoming_rpcs() {
    let (new, old) = (InmemNetwork::new(), InmemNetwork::new());
    let leader = Blocking::new(MigrationTransport::new(
        new.transport("leader", InmemConfig::default()),
        old.transport("leader", InmemConfig::default()),
        fallback_on_either,
    ));
    // "legacy" speaks only the old transport.
    let legacy = old.transport("legacy", InmemConfig::default());
    answer_all(legacy.clone(), "legacy");

    let r = leader
        .append_entries(
            "legacy",
            AppendEntriesRequest {
                term: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.header.id, Bytes::from_static(b"legacy"));
    assert!(
        leader
            .request_pre_vote("legacy", RequestPreVoteRequest::default())
            .unwrap()
            .granted
    );
    leader
        .timeout_now("legacy", TimeoutNowRequest::default())
        .unwrap();

    // A snapshot from a reopenable std source falls back; a read-once one
    // does not.
    let data = vec![4u8; 250_000];
    let meta = InstallSnapshotRequest {
        term: 2,
        size: data.len() as u64,
        ..Default::default()
    };
    let source = || Ok(std::io::Cursor::new(data.clone()));
    assert!(
        leader
            .install_snapshot_from("legacy", meta.clone(), source)
            .unwrap()
            .success
    );
    let err = leader
        .install_snapshot("legacy", meta, std::io::Cursor::new(data.clone()))
        .unwrap_err();
    assert_eq!(err.code(), raft_grpc_transport::Code::Unavailable);

    let pipeline = leader.append_entries_pipeline("legacy").unwrap();
    pipeline
        .append(&AppendEntriesRequest {
            term: 2,
            prev_log_entry: 8,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pipeline.next_completion().unwrap().1.unwrap().last_log, 8);

    // The legacy node calls the leader on the old transport: the merged
    // consumer gets it.
    let caller = thread::spawn(move || {
        futures_lite::future::block_on(legacy.request_vote(
            "leader",
            RequestVoteRequest {
                term: 5,
                ..Default::default()
            },
        ))
    });
    let mut rpc = leader
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert!(matches!(
        rpc.request,
        RaftRequest::RequestVote(RequestVoteRequest { term: 5, .. })
    ));
    if let Some(s) = rpc.snapshot.as_mut() {
        let _ = s.read_to_end(&mut Vec::new());
    }
    rpc.respond(Ok(RaftResponse::RequestVote(RequestVoteResponse {
        term: 5,
        granted: true,
        ..Default::default()
    })));
    assert!(caller.join().unwrap().unwrap().granted);

    leader.close();
    assert_eq!(
        leader
            .append_entries("legacy", AppendEntriesRequest::default())
            .unwrap_err(),
        TransportError::Shutdown
    );
    assert!(leader.recv().is_none());
}
