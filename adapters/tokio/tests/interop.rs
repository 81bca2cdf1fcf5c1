//! A tokio transport and a smol transport talk to each other, both ways:
//! the same driver on two runtimes, over real sockets.

#[allow(dead_code)]
mod common;

use common::*;
use raft_grpc_transport_api::reference;
use raft_grpc_transport_tokio::Config;

type SmolTransport = raft_grpc_transport_smol::GrpcTransport;
type TokioTransport = raft_grpc_transport_tokio::GrpcTransport;

async fn smol_server() -> SmolTransport {
    let server = SmolTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    server.set_heartbeat_handler(Some(reference::heartbeat_handler(server_header())));
    smol::spawn(answer_all(server.consumer())).detach();
    server
}

async fn tokio_server() -> TokioTransport {
    let server = TokioTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    server.set_heartbeat_handler(Some(reference::heartbeat_handler(server_header())));
    tokio::spawn(answer_all(server.consumer()));
    server
}

async fn tokio_client_to_smol_server() {
    let server = smol_server().await;
    let client = TokioTransport::builder("client", Config::default()).build();
    every_rpc_kind(&client, server.local_addr()).await;
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn a_tokio_client_calls_a_smol_server_from_a_current_thread_runtime() {
    tokio_client_to_smol_server().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tokio_client_calls_a_smol_server_from_a_multi_thread_runtime() {
    tokio_client_to_smol_server().await;
}

#[tokio::test]
async fn a_smol_client_calls_a_tokio_server_on_a_current_thread_runtime() {
    // The smol client's futures are awaited on the tokio runtime's thread,
    // which runs the server's tasks meanwhile.
    let server = tokio_server().await;
    let client = SmolTransport::builder("client", Config::default()).build();
    every_rpc_kind(&client, server.local_addr()).await;
    client.close().await;
    server.close().await;
}

#[test]
fn a_smol_client_calls_a_tokio_server_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(tokio_server());
    // The client runs on smol, outside the tokio runtime altogether.
    smol::block_on(async {
        let client = SmolTransport::builder("client", Config::default()).build();
        every_rpc_kind(&client, server.local_addr()).await;
        client.close().await;
        server.close().await;
    });
}
