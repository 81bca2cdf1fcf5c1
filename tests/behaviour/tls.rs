// TLS and mutual TLS on every backend: the behaviour suite's TLS tests,
// included by each backend's test file after `suite.rs` (whose helpers
// they use). Certificates are made here with rcgen: a CA, and leaves it
// signs for 127.0.0.1 and `localhost`.

use std::sync::Arc;

use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_driver::tls::{CertificateNames, TlsClient, TlsServer};
use raft_grpc_transport_driver::{AuthorizationRequest, PeerInfo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A certificate authority that signs leaves.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now unless
    /// `expired`.
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn tls_server(ca: &Ca, client_roots: Option<&Ca>) -> TlsServer {
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], false);
    match client_roots {
        Some(roots) => TlsServer::mutual_from_pem(
            leaf.cert.as_bytes(),
            leaf.key.as_bytes(),
            roots.pem().as_bytes(),
        )
        .unwrap(),
        None => TlsServer::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap(),
    }
}

fn tls_client(roots: &Ca) -> TlsClient {
    TlsClient::from_pem_roots(roots.pem().as_bytes()).unwrap()
}

fn with_client_cert(client: TlsClient, ca: &Ca) -> TlsClient {
    let leaf = ca.leaf(&["raft-client"], false);
    client
        .with_client_cert_pem(leaf.cert.as_bytes(), leaf.key.as_bytes())
        .unwrap()
}

/// A TLS server on loopback answering with the reference responder.
async fn tls_server_transport(tls: TlsServer) -> GrpcTransport {
    let server = GrpcTransport::builder("127.0.0.1:0", Config::default())
        .tls_server(tls)
        .bind()
        .await
        .unwrap();
    serve(&server).await;
    server
}

fn client_transport(tls: Option<TlsClient>) -> GrpcTransport {
    let config = Config::default().with_connect_timeout(Duration::from_secs(2));
    let builder = GrpcTransport::builder("client", config);
    match tls {
        Some(tls) => builder.tls_client(tls).build(),
        None => builder.build(),
    }
}

#[test]
fn every_rpc_kind_and_a_64_mib_snapshot_over_mutual_tls() {
    block_on(async {
        let ca = Ca::new("raft-ca");
        let server = tls_server_transport(tls_server(&ca, Some(&ca))).await;
        let client = client_transport(Some(with_client_cert(tls_client(&ca), &ca)));
        let target = server.local_addr().to_owned();
        let header = RpcHeader::new(3, "client", "client");

        let r = client
            .append_entries(
                &target,
                AppendEntriesRequest {
                    header: header.clone(),
                    term: 3,
                    entries: vec![Log::command(1, 3, Bytes::from(vec![1u8; 100_000]))],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(r.success && r.last_log == 1);
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
        assert!(p.granted);
        client
            .timeout_now(
                &target,
                TimeoutNowRequest {
                    header: header.clone(),
                },
            )
            .await
            .unwrap();

        let pipeline = client.append_entries_pipeline(&target).await.unwrap();
        for i in 1..=100u64 {
            pipeline
                .append(&AppendEntriesRequest {
                    header: header.clone(),
                    term: 3,
                    prev_log_entry: i - 1,
                    entries: vec![Log::command(i, 3, Bytes::from_static(b"cmd"))],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for i in 1..=100u64 {
            let (seq, result) = pipeline.next().await.unwrap();
            assert_eq!(result.unwrap().last_log, i, "append {seq}");
        }
        pipeline.close();

        let size = 64 << 20;
        let data = vec![5u8; size];
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
        assert!(s.success);
        client.close().await;
        server.close().await;
    });
}

/// A call from `client` to `target` fails with UNAVAILABLE within the
/// connect timeout, and its message contains `expected`.
async fn fails_fast(client: &GrpcTransport, target: &str, expected: &str) {
    let start = Instant::now();
    let err = client
        .request_vote(target, RequestVoteRequest::default())
        .await
        .expect_err("the call must fail");
    assert_eq!(
        err.code(),
        raft_grpc_transport::Code::Unavailable,
        "{expected}: {err}"
    );
    assert!(
        err.to_string().contains(expected),
        "the error says {expected:?}: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{expected}: failed after {:?}",
        start.elapsed()
    );
    client.close().await;
}

#[test]
fn tls_failures_fail_the_connect_and_the_server_serves_on() {
    block_on(async {
        let ca = Ca::new("raft-ca");
        let mutual = tls_server_transport(tls_server(&ca, Some(&ca))).await;
        let plain = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        serve(&plain).await;
        let target = mutual.local_addr().to_owned();

        // The client does not trust the server's CA.
        let stranger = Ca::new("another-ca");
        let client = client_transport(Some(with_client_cert(tls_client(&stranger), &ca)));
        fails_fast(&client, &target, "UnknownIssuer").await;

        // The server's certificate is not for the name verified.
        let client = client_transport(Some(with_client_cert(
            tls_client(&ca).with_server_name("node-9.raft").unwrap(),
            &ca,
        )));
        fails_fast(&client, &target, "not valid for name").await;

        // No client certificate under mutual TLS.
        let client = client_transport(Some(tls_client(&ca)));
        fails_fast(&client, &target, "CertificateRequired").await;

        // A plaintext client on the TLS port.
        let client = client_transport(None);
        fails_fast(&client, &target, "unreachable").await;

        // A TLS client on a plaintext port.
        let client = client_transport(Some(tls_client(&ca)));
        fails_fast(&client, plain.local_addr(), "TLS handshake").await;

        // The server's certificate has expired.
        let expired = ca.leaf(&["127.0.0.1"], true);
        let stale = tls_server_transport(
            TlsServer::from_pem(expired.cert.as_bytes(), expired.key.as_bytes()).unwrap(),
        )
        .await;
        let client = client_transport(Some(tls_client(&ca)));
        fails_fast(&client, stale.local_addr(), "certificate expired").await;

        // Through all of it, the TLS server answered a good client.
        let client = client_transport(Some(with_client_cert(tls_client(&ca), &ca)));
        let vote = client
            .request_vote(
                &target,
                RequestVoteRequest {
                    term: 9,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(vote.granted && vote.term == 9);
        let vote = client_transport(None)
            .request_vote(plain.local_addr(), RequestVoteRequest::default())
            .await
            .unwrap();
        assert!(vote.granted);
        client.close().await;
        for server in [mutual, plain, stale] {
            server.close().await;
        }
    });
}

/// Serves the reference answers, and sends the peer of every RPC to the
/// returned channel.
fn serve_recording_peers(transport: &GrpcTransport) -> async_channel::Receiver<Arc<PeerInfo>> {
    let consumer = transport.consumer();
    let header = RpcHeader::new(3, "server", transport.local_addr().to_owned());
    let (peers, seen) = async_channel::unbounded();
    spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            let _ = peers.send(rpc.peer.clone()).await;
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    });
    seen
}

#[test]
fn the_authorizer_sees_the_client_certificate_and_token_and_refuses_one_method() {
    block_on(async {
        let ca = Ca::new("raft-ca");
        let server = GrpcTransport::builder("127.0.0.1:0", Config::default())
            .tls_server(tls_server(&ca, Some(&ca)))
            .bind()
            .await
            .unwrap();
        server.set_authorizer(Some(Arc::new(|request: &AuthorizationRequest<'_>| {
            let names = CertificateNames::of_peer(request.peer)
                .ok_or_else(|| Status::new(Code::Unauthenticated, "no client certificate"))?
                .map_err(|e| Status::new(Code::Unauthenticated, e.to_string()))?;
            if !names.dns_names.iter().any(|name| name == "raft-client") {
                return Err(Status::new(Code::PermissionDenied, "not a Raft node"));
            }
            if request.metadata.get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer raft") {
                return Err(Status::new(Code::Unauthenticated, "missing token"));
            }
            if request.method == RpcMethod::TimeoutNow {
                return Err(Status::new(
                    Code::PermissionDenied,
                    "no leadership transfers",
                ));
            }
            Ok(())
        })));
        let peers = serve_recording_peers(&server);
        let target = server.local_addr().to_owned();
        let client = client_transport(Some(with_client_cert(tls_client(&ca), &ca)));

        // No token yet.
        let err = client
            .request_vote(&target, RequestVoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        assert!(err.to_string().contains("missing token"), "{err}");

        let mut metadata = http::HeaderMap::new();
        metadata.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer raft"),
        );
        client.set_request_metadata(metadata).unwrap();
        let mut reserved = http::HeaderMap::new();
        reserved.insert("grpc-timeout", http::HeaderValue::from_static("1S"));
        assert!(client.set_request_metadata(reserved).is_err());

        let vote = client
            .request_vote(
                &target,
                RequestVoteRequest {
                    term: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(vote.granted);
        let err = client
            .timeout_now(&target, TimeoutNowRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert!(err.to_string().contains("no leadership transfers"), "{err}");

        // Only the allowed call reached the consumer, with its peer: the
        // client's address and the certificate chain TLS verified.
        let peer = peers.recv().await.unwrap();
        assert!(
            peers.try_recv().is_err(),
            "refused calls never reach the consumer"
        );
        assert!(peer.remote_addr.unwrap().ip().is_loopback());
        assert_eq!(peer.certificates.len(), 1, "the client sent its leaf");
        let names = CertificateNames::of_peer(&peer).unwrap().unwrap();
        assert_eq!(names.dns_names, ["raft-client"]);

        // Without TLS, the peer is its address alone.
        let plain = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let plain_peers = serve_recording_peers(&plain);
        client_transport(None)
            .request_vote(plain.local_addr(), RequestVoteRequest::default())
            .await
            .unwrap();
        let peer = plain_peers.recv().await.unwrap();
        assert!(peer.remote_addr.unwrap().ip().is_loopback());
        assert!(peer.certificates.is_empty());
        client.close().await;
        server.close().await;
        plain.close().await;
    });
}
