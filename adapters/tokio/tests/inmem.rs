//! The in-memory network on tokio: the same driver over in-memory streams.

#[allow(dead_code)]
mod common;

use common::*;
use raft_grpc_transport::Code;
use raft_grpc_transport::message::RequestVoteRequest;
use raft_grpc_transport_tokio::{InmemConfig, InmemNetwork, InmemTransport};

async fn run_on_the_network() {
    let net = InmemNetwork::new();
    let a: InmemTransport = net.transport("a", InmemConfig::default());
    let b = net.transport("b", InmemConfig::default());
    tokio::spawn(answer_all(b.consumer()));
    every_rpc_kind(&a, "b").await;

    // A partition fails calls across it; healing it carries the next one.
    net.disconnect("a", "b");
    let err = a
        .request_vote("b", RequestVoteRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    net.connect("a", "b");
    assert!(
        a.request_vote("b", RequestVoteRequest::default())
            .await
            .unwrap()
            .granted
    );
    // Nobody at an unknown address.
    let err = a
        .request_vote("c", RequestVoteRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn the_in_memory_network_on_a_current_thread_runtime() {
    run_on_the_network().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_memory_network_on_a_multi_thread_runtime() {
    run_on_the_network().await;
}
