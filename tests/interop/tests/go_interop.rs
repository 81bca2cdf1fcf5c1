//! Rust ↔ Go interop: our smol transport against a Go peer built from
//! hashicorp/raft's types and grpc-go (`go/cmd/peer`, on `go/transport`),
//! both ways, every RPC kind, every field.
//!
//! Each side prints what it sent or received as canonical JSON
//! (`raft_grpc_interop::canon`, `go/canon`) and the test compares the two
//! transcripts line by line: a field lost, renumbered or re-encoded on the
//! way shows up as a differing line.
//!
//! The Go library itself (`github.com/dhiaayachi/raft-grpc-transport`) is
//! not what runs here: the Go module proxy serves only its v0.1.0, whose
//! field numbers differ from v0.2.0 and later (the versions our proto
//! follows). The Go peer is built from the same parts the Go library uses,
//! with code generated from our proto, and keeps the Go library's receiver
//! behaviour (see `go/transport/transport.go`).

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use raft_grpc_interop::suite::{
    PIPELINED, SNAPSHOT_SIZE, assert_same, call, pattern_data, rust_suite,
};
use raft_grpc_interop::{Program, build_go_program, canon, go_available};
use raft_grpc_transport::message::{
    AppendEntriesRequest, Log, RaftRequest, RaftResponse, RequestVoteRequest, RpcHeader,
};
use raft_grpc_transport::{Code, reference};
use raft_grpc_transport_api::Rpc;
use raft_grpc_transport_smol::{Config, GrpcTransport};

fn start_go_server() -> (Program, String) {
    start_go_server_with(&[])
}

/// `peer serve … EXTRA…` (the TLS flags, say).
fn start_go_server_with(extra: &[&str]) -> (Program, String) {
    let peer = build_go_program("peer");
    let mut server = Program::spawn(
        Command::new(peer)
            .args(["serve", "--listen", "127.0.0.1:0", "--id", "go-server"])
            .args(extra),
    );
    let addr = server.wait_for("listening on ");
    (server, addr)
}

#[test]
fn interop_rust_client_to_go_server_every_rpc_and_field() {
    if !go_available("interop_rust_client_to_go_server_every_rpc_and_field") {
        return;
    }
    let (server, addr) = start_go_server();
    let client = GrpcTransport::builder("127.0.0.1:9", Config::default()).build();
    rust_client_to_go_server(&client, server, &addr);
}

/// Every RPC kind with every field, a 64 MiB snapshot and the pipelined
/// appends from `client` to the Go server at `addr`, each exchange
/// compared with the Go server's transcript line.
fn rust_client_to_go_server(client: &GrpcTransport, mut server: Program, addr: &str) {
    let header = RpcHeader::new(3, "rust-client", "127.0.0.1:9");
    block_on(async {
        let requests = rust_suite(&header);
        for request in requests {
            let data = match &request {
                RaftRequest::InstallSnapshot(r) => pattern_data(r.size),
                _ => String::new(),
            };
            let response = call(client, addr, request.clone())
                .await
                .unwrap_or_else(|e| panic!("{} failed: {e}", canon::kind(&request)));
            let ours = canon::exchange(&request, &data, &response);
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same(canon::kind(&request), &ours, &theirs);
        }
        // The responses carry the Go server's header.
        let pipeline = client
            .append_entries_pipeline(addr)
            .await
            .expect("open a pipeline to the Go server");
        let request = |k: u64| AppendEntriesRequest {
            header: header.clone(),
            term: 4,
            prev_log_entry: k - 1,
            prev_log_term: 4,
            entries: vec![Log::command(k, 4, Bytes::from(format!("pipelined {k:08}")))],
            leader_commit_index: k - 1,
            leader: Bytes::new(),
        };
        let sender = async {
            for k in 1..=PIPELINED {
                pipeline.append(&request(k)).await.expect("append");
            }
        };
        let receiver = async {
            let mut responses = Vec::new();
            for _ in 1..=PIPELINED {
                let (_, response) = pipeline.next().await.expect("a completion per append");
                responses.push(response.expect("a pipelined append failed"));
            }
            responses
        };
        let ((), responses) = futures_lite::future::zip(sender, receiver).await;
        for (k, response) in (1..=PIPELINED).zip(responses) {
            assert_eq!(response.last_log, k, "completions out of order");
            let ours = canon::exchange(
                &RaftRequest::AppendEntries(request(k)),
                "",
                &RaftResponse::AppendEntries(response),
            );
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same("pipelined append", &ours, &theirs);
        }
    });
}

#[test]
fn interop_rust_client_to_go_server_message_limits() {
    if !go_available("interop_rust_client_to_go_server_message_limits") {
        return;
    }
    let (mut server, addr) = start_go_server();
    let header = RpcHeader::new(3, "rust-client", "127.0.0.1:9");
    let oversized = AppendEntriesRequest {
        header: header.clone(),
        term: 1,
        entries: vec![Log::command(1, 1, Bytes::from(vec![1u8; 5 << 20]))],
        ..Default::default()
    };
    block_on(async {
        // Our client refuses to send beyond its own 4 MiB limit…
        let client = GrpcTransport::builder("127.0.0.1:9", Config::default()).build();
        let err = client
            .append_entries(&addr, oversized.clone())
            .await
            .expect_err("a 5 MiB message is over the limit");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // …and with the limit raised, grpc-go's 4 MiB receive limit answers
        // RESOURCE_EXHAUSTED, and the Go server goes on serving.
        let config = Config::default().with_max_send_message_len(8 << 20);
        let client = GrpcTransport::builder("127.0.0.1:9", config).build();
        let err = client
            .append_entries(&addr, oversized)
            .await
            .expect_err("the Go server refuses 5 MiB");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        let heartbeat = AppendEntriesRequest {
            header: header.clone(),
            term: 1,
            ..Default::default()
        };
        let response = client
            .append_entries(&addr, heartbeat.clone())
            .await
            .expect("the Go server still serves");
        let ours = canon::exchange(
            &RaftRequest::AppendEntries(heartbeat),
            "",
            &RaftResponse::AppendEntries(response),
        );
        assert_same("after the refusal", &ours, &server.line().unwrap());
    });
}

/// Serves with our transport, answering the reference way and recording a
/// transcript line per RPC.
fn start_rust_server() -> (GrpcTransport, async_channel::Receiver<String>) {
    start_rust_server_with(GrpcTransport::builder("127.0.0.1:0", Config::default()))
}

/// The Rust server `builder` binds (TLS, say), recording every exchange.
fn start_rust_server_with(
    builder: raft_grpc_transport_smol::Builder,
) -> (GrpcTransport, async_channel::Receiver<String>) {
    let server = block_on(builder.bind()).expect("bind");
    let transcript = record_exchanges(&server);
    (server, transcript)
}

/// A Rust server with no listener of its own, its Raft service mounted on
/// a tonic server (`raft-grpc-transport-tower` under hyper, on a tokio
/// runtime of its own) while its consumer runs on smol, recording every
/// exchange.
fn start_rust_server_mounted_on_tonic() -> (GrpcTransport, async_channel::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = GrpcTransport::builder(addr, Config::default()).build();
    let transcript = record_exchanges(&server);
    let raft = raft_grpc_transport_tower::RaftService::new(&server);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let closed = raft.closed();
            tonic::transport::Server::builder()
                .add_service(raft)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    closed,
                )
                .await
                .unwrap();
        });
    });
    (server, transcript)
}

/// Answers `server`'s RPCs the reference way and records each exchange as
/// a canonical line.
fn record_exchanges(server: &GrpcTransport) -> async_channel::Receiver<String> {
    let header = RpcHeader::new(3, "rust-server", server.local_addr().to_owned());
    let consumer = server.consumer();
    let (lines, transcript) = async_channel::unbounded();
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            let Rpc {
                request,
                responder,
                snapshot,
                ..
            } = rpc;
            let mut data = String::new();
            let mut received = None;
            if let Some(mut reader) = snapshot {
                let (mut len, mut crc) = (0u64, 0u32);
                received = loop {
                    match reader.chunk().await {
                        Ok(Some(chunk)) => {
                            crc = crc32c::crc32c_append(crc, &chunk);
                            len += chunk.len() as u64;
                        }
                        Ok(None) => break Some(len),
                        Err(_) => break None,
                    }
                };
                data = canon::data(len, crc);
            }
            let response = reference::response(&request, header.clone(), received);
            let line = canon::exchange(&request, &data, &response);
            responder.respond(Ok(response));
            let _ = lines.send(line).await;
        }
    })
    .detach();
    transcript
}

/// Up to `n` lines of the server's transcript: each waited for up to 10 s.
fn server_lines(transcript: &async_channel::Receiver<String>, n: usize) -> Vec<String> {
    block_on(async {
        let mut lines = Vec::new();
        while lines.len() < n {
            let next = futures_lite::future::or(async { transcript.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_secs(10)).await;
                None
            });
            match next.await {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        lines
    })
}

#[test]
fn interop_go_client_to_rust_server_every_rpc_and_field() {
    if !go_available("interop_go_client_to_rust_server_every_rpc_and_field") {
        return;
    }
    let (server, transcript) = start_rust_server();
    go_client_to_rust_server(&server, &transcript, &[]);
}

#[test]
fn interop_go_client_to_rust_server_mounted_on_tonic_every_rpc_and_field() {
    if !go_available("interop_go_client_to_rust_server_mounted_on_tonic_every_rpc_and_field") {
        return;
    }
    let (server, transcript) = start_rust_server_mounted_on_tonic();
    go_client_to_rust_server(&server, &transcript, &[]);
    block_on(server.close());
}

#[test]
fn interop_go_client_to_rust_server_mounted_on_tonic_oversized_message() {
    if !go_available("interop_go_client_to_rust_server_mounted_on_tonic_oversized_message") {
        return;
    }
    let (server, transcript) = start_rust_server_mounted_on_tonic();
    go_client_oversized(&server, &transcript);
    block_on(server.close());
}

/// `peer call … EXTRA…` against `server`: every RPC kind, the snapshot and
/// the pipeline, each exchange compared with the server's transcript.
fn go_client_to_rust_server(
    server: &GrpcTransport,
    transcript: &async_channel::Receiver<String>,
    extra: &[&str],
) {
    let peer = build_go_program("peer");
    let client = Program::spawn(
        Command::new(peer)
            .args([
                "call",
                "--target",
                server.local_addr(),
                "--snapshot-size",
                &SNAPSHOT_SIZE.to_string(),
                "--pipeline",
                &PIPELINED.to_string(),
            ])
            .args(extra),
    );
    let (theirs, ok) = client.finish();
    let ours = server_lines(transcript, theirs.len());
    for (n, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        assert_same(&format!("exchange {n}"), ours, theirs);
    }
    assert!(ok, "the Go client reported a failed call");
    // 6 exchanges before the pipeline: 2 AppendEntries, RequestVote,
    // RequestPreVote, TimeoutNow, InstallSnapshot.
    assert_eq!(theirs.len() as u64, 6 + PIPELINED, "Go client lines");
    assert_eq!(ours.len(), theirs.len(), "exchanges seen by the server");
    assert!(theirs[5].contains(r#""rpc":"install_snapshot""#));
}

#[test]
fn interop_go_client_to_rust_server_oversized_message() {
    if !go_available("interop_go_client_to_rust_server_oversized_message") {
        return;
    }
    let (server, transcript) = start_rust_server();
    go_client_oversized(&server, &transcript);
}

/// `peer call --oversized` against `server`: a 5 MiB AppendEntries is
/// refused with `RESOURCE_EXHAUSTED` before the consumer sees it, and the
/// next call is served.
fn go_client_oversized(server: &GrpcTransport, transcript: &async_channel::Receiver<String>) {
    let peer = build_go_program("peer");
    let client = Program::spawn(Command::new(peer).args([
        "call",
        "--target",
        server.local_addr(),
        "--oversized",
    ]));
    let (theirs, ok) = client.finish();
    assert!(ok, "the Go client: {theirs:?}");
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert!(
        theirs[0].contains("code = ResourceExhausted"),
        "the 5 MiB AppendEntries: {}",
        theirs[0]
    );
    // The server refused that one before the consumer saw it, and served
    // the next.
    let ours = server_lines(transcript, 2);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_same("after the refusal", &ours[0], &theirs[1]);
}

/// PEM files for mutual TLS: a CA, a server certificate for 127.0.0.1 and
/// a client certificate, both signed by the CA.
struct TlsFiles {
    dir: std::path::PathBuf,
}

impl TlsFiles {
    fn new(name: &str) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("go-interop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (leaf, name) in [("server", "127.0.0.1"), ("client", "rust-or-go-client")] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.join(format!("{leaf}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{leaf}.key")), key.serialize_pem()).unwrap();
        }
        TlsFiles { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn interop_rust_client_to_go_server_over_mutual_tls() {
    if !go_available("interop_rust_client_to_go_server_over_mutual_tls") {
        return;
    }
    use raft_grpc_transport_smol::tls::TlsClient;
    let tls = TlsFiles::new("rust-client");
    let (ca, cert, key) = (
        tls.path("ca.pem"),
        tls.path("server.pem"),
        tls.path("server.key"),
    );
    let (server, addr) = start_go_server_with(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    let client_tls = TlsClient::from_pem_roots(&tls.read("ca.pem"))
        .unwrap()
        .with_client_cert_pem(&tls.read("client.pem"), &tls.read("client.key"))
        .unwrap();
    let client = GrpcTransport::builder("127.0.0.1:9", Config::default())
        .tls_client(client_tls)
        .build();
    rust_client_to_go_server(&client, server, &addr);

    // grpc-go refuses a client without a certificate: UNAVAILABLE, with
    // the TLS alert in the message.
    let (_server, addr) = start_go_server_with(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    let anonymous = GrpcTransport::builder("127.0.0.1:9", Config::default())
        .tls_client(TlsClient::from_pem_roots(&tls.read("ca.pem")).unwrap())
        .build();
    let err = block_on(anonymous.request_vote(&addr, RequestVoteRequest::default())).unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("alert"), "{err}");
}

#[test]
fn interop_go_client_to_rust_server_over_mutual_tls() {
    if !go_available("interop_go_client_to_rust_server_over_mutual_tls") {
        return;
    }
    use raft_grpc_transport_smol::tls::TlsServer;
    let tls = TlsFiles::new("go-client");
    let server_tls = TlsServer::mutual_from_pem(
        &tls.read("server.pem"),
        &tls.read("server.key"),
        &tls.read("ca.pem"),
    )
    .unwrap();
    let (server, transcript) = start_rust_server_with(
        GrpcTransport::builder("127.0.0.1:0", Config::default()).tls_server(server_tls),
    );
    let (ca, cert, key) = (
        tls.path("ca.pem"),
        tls.path("client.pem"),
        tls.path("client.key"),
    );
    go_client_to_rust_server(
        &server,
        &transcript,
        &["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key],
    );
}
