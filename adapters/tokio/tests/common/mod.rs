//! What the tests share: requests, the reference server side, and one run
//! of every RPC kind written against the runtime-free `Transport` trait (so
//! that it drives a tokio or a smol client alike).

use bytes::Bytes;
use raft_grpc_transport::message::*;
use raft_grpc_transport_api::{AppendPipeline, Transport, reference};
use raft_grpc_transport_tokio::Consumer;

/// Bytes of the snapshot [`every_rpc_kind`] installs.
pub const SNAPSHOT_SIZE: usize = 16 << 20;
/// Appends [`every_rpc_kind`] pipelines.
pub const PIPELINED: u64 = 2_000;

pub fn header(name: &str) -> RpcHeader {
    RpcHeader::new(3, name.to_owned(), "127.0.0.1:0")
}

/// An AppendEntries carrying entry `index` of `size` bytes.
pub fn append(index: u64, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header("client"),
        term: 3,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, 3, Bytes::from(vec![index as u8; size]))],
        ..Default::default()
    }
}

pub fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
        term: 3,
        ..Default::default()
    }
}

/// The header servers answer with.
pub fn server_header() -> RpcHeader {
    RpcHeader::new(3, "server", "127.0.0.1:0")
}

/// Answers everything the consumer receives the reference way (snapshots
/// read to their end), until the transport closes. Spawn it on any
/// executor.
pub async fn answer_all(consumer: Consumer) {
    while let Some(rpc) = consumer.recv().await {
        reference::answer(rpc, server_header()).await;
    }
}

/// A snapshot source: `size` bytes of a pattern.
pub fn snapshot_data(size: usize) -> futures_lite::io::Cursor<Vec<u8>> {
    futures_lite::io::Cursor::new((0..size).map(|i| (i % 251) as u8).collect())
}

/// Every RPC kind from `client` to `target`, which answers the reference
/// way: a heartbeat, a large AppendEntries, RequestVote, RequestPreVote,
/// TimeoutNow, a 16 MiB InstallSnapshot (the reference answer succeeds only
/// when every byte arrived), and 2,000 pipelined appends that complete in
/// order.
pub async fn every_rpc_kind<T: Transport>(client: &T, target: &str) {
    let h = client.append_entries(target, heartbeat()).await.unwrap();
    assert!(h.success && h.term == 3);

    let r = client
        .append_entries(
            target,
            AppendEntriesRequest {
                prev_log_entry: 9,
                entries: vec![Log::command(10, 3, Bytes::from(vec![1u8; 100_000]))],
                ..append(1, 0)
            },
        )
        .await
        .unwrap();
    assert!(r.success);
    assert_eq!((r.term, r.last_log), (3, 10));
    assert_eq!(r.header.id, Bytes::from_static(b"server"));

    let v = client
        .request_vote(
            target,
            RequestVoteRequest {
                header: header("client"),
                term: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(v.granted && v.term == 4);

    let p = client
        .request_pre_vote(
            target,
            RequestPreVoteRequest {
                header: header("client"),
                term: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(p.granted && p.term == 5);

    client
        .timeout_now(
            target,
            TimeoutNowRequest {
                header: header("client"),
            },
        )
        .await
        .unwrap();

    let s = client
        .install_snapshot(
            target,
            InstallSnapshotRequest {
                header: header("client"),
                term: 6,
                size: SNAPSHOT_SIZE as u64,
                ..Default::default()
            },
            snapshot_data(SNAPSHOT_SIZE),
        )
        .await
        .unwrap();
    assert!(s.success && s.term == 6, "{s:?}");

    let pipeline = client.append_entries_pipeline(target).await.unwrap();
    let sender = async {
        for i in 1..=PIPELINED {
            assert_eq!(pipeline.append(&append(i, 64)).await.unwrap(), i - 1);
        }
    };
    let receiver = async {
        for i in 0..PIPELINED {
            let (seq, result) = pipeline.next().await.unwrap();
            assert_eq!(seq, i);
            let response = result.unwrap();
            assert!(response.success);
            assert_eq!(response.last_log, i + 1);
        }
    };
    futures_lite::future::zip(sender, receiver).await;
    pipeline.close();
    assert!(pipeline.next().await.is_none(), "nothing after close");
}
