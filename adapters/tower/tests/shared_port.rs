//! The `shared_port` example as a process: it prints `listening on ADDR`,
//! then answers both the standard gRPC health check and Raft RPCs on that
//! one address.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use raft_grpc_transport::message::{RequestVoteRequest, RpcHeader};
use raft_grpc_transport_tokio::{Config, GrpcTransport};
use raft_grpc_transport_tower::SERVICE_NAME;

mod common;

/// The running example; killed when the test ends.
struct Example(std::process::Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_port_answers_health_and_raft_on_the_address_it_prints() {
    let binary = common::build_example("shared_port");
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start `shared_port`");
    let stdout = child.stdout.take().expect("piped stdout");
    let example = Example(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read `shared_port`'s output");
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("`shared_port` printed {line:?}"))
        .to_owned();
    assert!(!addr.ends_with(":0"), "port 0 not resolved: {line:?}");

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", SERVICE_NAME] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "health of {service:?}"
        );
    }

    let client = GrpcTransport::builder("client", Config::default()).build();
    let vote = client
        .request_vote(
            &addr,
            RequestVoteRequest {
                header: RpcHeader::new(3, "client", "client"),
                term: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(vote.granted && vote.term == 5);
    assert_eq!(vote.header.id, bytes::Bytes::from_static(b"shared_port"));
    client.close().await;
    drop(example);
}
