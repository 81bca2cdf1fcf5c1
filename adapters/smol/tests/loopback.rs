//! What is particular to the smol backend. The loopback behaviour that
//! every backend shares (every RPC kind, pipelines, snapshots, deadlines,
//! limits, restarts, close) is the suite in `tests/behaviour`, which runs
//! on this backend too.

use bytes::Bytes;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

async fn served(config: Config) -> GrpcTransport {
    let server = GrpcTransport::bind("127.0.0.1:0", config).await.unwrap();
    let consumer = server.consumer();
    let header = RpcHeader::new(3, "server", server.local_addr().to_owned());
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    })
    .detach();
    server
}

fn client(config: Config) -> GrpcTransport {
    GrpcTransport::builder("client", config).build()
}

fn append(index: u64, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader::new(3, "client", "127.0.0.1:0"),
        term: 3,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, 3, Bytes::from(vec![index as u8; size]))],
        ..Default::default()
    }
}

/// The transport's tasks run on smol's global executor and its sockets on
/// async-io's reactor thread, so its futures can be awaited anywhere.
#[test]
fn runs_under_any_executor() {
    // smol's own executor.
    smol::block_on(async {
        let server = served(Config::default()).await;
        let client = client(Config::default());
        assert!(
            client
                .append_entries(server.local_addr(), append(1, 10))
                .await
                .unwrap()
                .success
        );
    });
    // A bare block_on.
    futures_lite::future::block_on(async {
        let server = served(Config::default()).await;
        let client = client(Config::default());
        assert!(
            client
                .request_vote(server.local_addr(), RequestVoteRequest::default())
                .await
                .unwrap()
                .granted
        );
    });
    // Inside a tokio runtime, from several tokio tasks at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = served(Config::default()).await;
        let client = client(Config::default());
        let mut tasks = Vec::new();
        for i in 1..=8u64 {
            let (client, target) = (client.clone(), server.local_addr().to_owned());
            tasks.push(tokio::spawn(async move {
                client.append_entries(&target, append(i, 100)).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().success);
        }
    });
}
