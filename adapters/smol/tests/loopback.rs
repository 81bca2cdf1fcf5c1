//! The transport over real loopback sockets.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

/// The reference responder of `node serve`.
async fn respond(rpc: raft_grpc_transport_smol::Rpc, header: RpcHeader) {
    let response = match &rpc.request {
        RaftRequest::AppendEntries(r) => RaftResponse::AppendEntries(AppendEntriesResponse {
            header: header.clone(),
            term: r.term,
            last_log: r.entries.last().map_or(r.prev_log_entry, |e| e.index),
            success: true,
            ..Default::default()
        }),
        RaftRequest::RequestVote(r) => RaftResponse::RequestVote(RequestVoteResponse {
            header: header.clone(),
            term: r.term,
            granted: true,
            ..Default::default()
        }),
        RaftRequest::RequestPreVote(r) => RaftResponse::RequestPreVote(RequestPreVoteResponse {
            header: header.clone(),
            term: r.term,
            granted: true,
        }),
        RaftRequest::TimeoutNow(_) => RaftResponse::TimeoutNow(TimeoutNowResponse {
            header: header.clone(),
        }),
        RaftRequest::InstallSnapshot(meta) => {
            let mut reader = rpc.snapshot.expect("snapshot data");
            let mut received = 0u64;
            let mut ok = true;
            loop {
                match reader.chunk().await {
                    Ok(Some(chunk)) => received += chunk.len() as u64,
                    Ok(None) => break,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            let response = RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                header: header.clone(),
                term: meta.term,
                success: ok && received == meta.size,
            });
            rpc.responder.respond(Ok(response));
            return;
        }
    };
    rpc.responder.respond(Ok(response));
}

async fn serve(transport: &GrpcTransport) {
    let consumer = transport.consumer();
    let header = RpcHeader::new(3, "server", transport.local_addr().to_owned());
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            respond(rpc, header.clone()).await;
        }
    })
    .detach();
}

#[test]
fn every_rpc_kind() {
    block_on(async {
        let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        serve(&server).await;
        let client = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let target = server.local_addr().to_owned();
        let header = RpcHeader::new(3, "client", client.local_addr().to_owned());

        let r = client
            .append_entries(
                &target,
                AppendEntriesRequest {
                    header: header.clone(),
                    term: 3,
                    prev_log_entry: 9,
                    entries: vec![Log::command(10, 3, Bytes::from(vec![1u8; 100_000]))],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(r.success);
        assert_eq!((r.term, r.last_log), (3, 10));
        assert_eq!(r.header.id, Bytes::from_static(b"server"));

        let v = client
            .request_vote(
                &target,
                RequestVoteRequest {
                    header: header.clone(),
                    term: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(v.granted && v.term == 4);
        let p = client
            .request_pre_vote(
                &target,
                RequestPreVoteRequest {
                    header: header.clone(),
                    term: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(p.granted && p.term == 5);
        client
            .timeout_now(
                &target,
                TimeoutNowRequest {
                    header: header.clone(),
                },
            )
            .await
            .unwrap();

        let size = 10 << 20;
        let data = vec![7u8; size];
        let s = client
            .install_snapshot(
                &target,
                InstallSnapshotRequest {
                    header: header.clone(),
                    term: 6,
                    size: size as u64,
                    ..Default::default()
                },
                futures_lite::io::Cursor::new(data),
            )
            .await
            .unwrap();
        assert!(s.success && s.term == 6);

        let pipeline = client.append_entries_pipeline(&target).await.unwrap();
        for i in 1..=1000u64 {
            pipeline
                .append(&AppendEntriesRequest {
                    header: header.clone(),
                    term: 3,
                    prev_log_entry: i - 1,
                    entries: vec![Log::command(i, 3, Bytes::from_static(b"x"))],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for i in 0..1000u64 {
            let (seq, result) = pipeline.next().await.unwrap();
            assert_eq!(seq, i);
            assert_eq!(result.unwrap().last_log, i + 1);
        }
        pipeline.close();
        client.close().await;
        server.close().await;
        let _ = Duration::ZERO;
    });
}
