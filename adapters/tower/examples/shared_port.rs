//! `shared_port`: the Raft service and the standard gRPC health service
//! (`grpc.health.v1.Health`) on one port, served by tonic.
//!
//! ```sh
//! cargo run --release -p raft-grpc-transport-tower --example shared_port -- --listen 127.0.0.1:7000
//! # listening on 127.0.0.1:7000
//! ```
//!
//! The Raft side answers as `node serve` does (the reference answers:
//! AppendEntries succeeds, votes are granted, a snapshot succeeds when
//! every byte arrived), so `node call --target 127.0.0.1:7000 --rpc …`
//! and any gRPC health checker (`grpc_health_probe -addr 127.0.0.1:7000`)
//! work against the same port. It runs until interrupted.

use std::process::ExitCode;

use raft_grpc_transport::message::RpcHeader;
use raft_grpc_transport_api::reference;
use raft_grpc_transport_tokio::{Config, GrpcTransport};
use raft_grpc_transport_tower::{RaftService, SERVICE_NAME};
use tonic_health::ServingStatus;

/// The RPC header version this server puts in its answers.
const PROTOCOL_VERSION: i64 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [] => "127.0.0.1:7000".to_owned(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        _ => {
            eprintln!("usage: shared_port [--listen ADDR]");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("shared_port: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(e) => {
            eprintln!("shared_port: {e}");
            return ExitCode::FAILURE;
        }
    };

    // The transport listens on nothing itself: tonic's server hands it the
    // Raft service's requests, and its own client makes outgoing calls.
    let transport = GrpcTransport::builder(addr.clone(), Config::default()).build();
    let header = RpcHeader::new(PROTOCOL_VERSION, "shared_port", addr.clone());
    transport.set_heartbeat_handler(Some(reference::heartbeat_handler(header.clone())));
    let consumer = transport.consumer();
    tokio::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            tokio::spawn(reference::answer(rpc, header.clone()));
        }
    });
    let raft = RaftService::new(&transport);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    println!("listening on {addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = tonic::transport::Server::builder()
        // Receive windows that follow the link (see the README).
        .http2_adaptive_window(Some(true))
        .add_service(raft)
        .add_service(health)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await;
    transport.close().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shared_port: {e}");
            ExitCode::FAILURE
        }
    }
}
