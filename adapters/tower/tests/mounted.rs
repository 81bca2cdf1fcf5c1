//! The Raft service mounted on a tonic server: called by the smol
//! adapter's client, beside tonic's health service on one port, behind
//! tower layers, and fed bad input that must get the statuses the
//! transport's own port gives.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use raft_grpc_transport::message::*;
use raft_grpc_transport::{Code, TransportError};
use raft_grpc_transport_api::reference;
use raft_grpc_transport_tokio::{Config, GrpcTransport};
use raft_grpc_transport_tower::{RaftService, SERVICE_NAME};

/// Answers the consumer's RPCs the reference way.
fn serve_reference(transport: &GrpcTransport) {
    let header = RpcHeader::new(3, "server", transport.local_addr().to_owned());
    let consumer = transport.consumer();
    tokio::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            tokio::spawn(reference::answer(rpc, header.clone()));
        }
    });
}

/// A transport whose Raft service (and tonic's health service) a tonic
/// server on a fresh port hosts, behind `layer`; it stops when the
/// transport closes.
async fn mounted<L>(layer: L) -> GrpcTransport
where
    L: tower::Layer<tonic::service::Routes> + Clone + Send + 'static,
    L::Service: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let transport = GrpcTransport::builder(addr, Config::default()).build();
    serve_reference(&transport);
    let raft = RaftService::new(&transport);
    let closed = raft.closed();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(raft)
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, closed)
            .await
            .unwrap();
    });
    transport
}

fn header() -> RpcHeader {
    RpcHeader::new(3, "client", "client")
}

fn vote(term: u64) -> RequestVoteRequest {
    RequestVoteRequest {
        header: header(),
        term,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smol_client_runs_every_rpc_kind_a_64_mib_snapshot_and_10000_appends() {
    let server = mounted(tower::layer::util::Identity::new()).await;
    let target = server.local_addr().to_owned();
    let client_side = tokio::task::spawn_blocking(move || {
        smol::block_on(async move {
            type SmolTransport = raft_grpc_transport_smol::GrpcTransport;
            let client = SmolTransport::builder("client", Config::default()).build();
            let r = client
                .append_entries(
                    &target,
                    AppendEntriesRequest {
                        header: header(),
                        term: 3,
                        prev_log_entry: 9,
                        entries: vec![Log::command(10, 3, Bytes::from(vec![1u8; 100_000]))],
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert!(r.success && (r.term, r.last_log) == (3, 10));
            assert_eq!(r.header.id, Bytes::from_static(b"server"));
            let v = client.request_vote(&target, vote(4)).await.unwrap();
            assert!(v.granted && v.term == 4);
            let p = client
                .request_pre_vote(
                    &target,
                    RequestPreVoteRequest {
                        header: header(),
                        term: 5,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert!(p.granted && p.term == 5);
            client
                .timeout_now(&target, TimeoutNowRequest { header: header() })
                .await
                .unwrap();

            let size = 64 << 20;
            let s = client
                .install_snapshot(
                    &target,
                    InstallSnapshotRequest {
                        header: header(),
                        term: 6,
                        size,
                        ..Default::default()
                    },
                    futures_lite::io::Cursor::new(vec![7u8; size as usize]),
                )
                .await
                .unwrap();
            assert!(s.success && s.term == 6, "the snapshot arrived whole");

            let pipeline = client.append_entries_pipeline(&target).await.unwrap();
            let appends = async {
                for i in 1..=10_000u64 {
                    pipeline
                        .append(&AppendEntriesRequest {
                            header: header(),
                            term: 3,
                            prev_log_entry: i - 1,
                            entries: vec![Log::command(i, 3, Bytes::from_static(b"entry"))],
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            };
            let completions = async {
                for i in 0..10_000u64 {
                    let (seq, result) = pipeline.next().await.unwrap();
                    assert_eq!(seq, i);
                    assert_eq!(result.unwrap().last_log, i + 1, "in order");
                }
            };
            futures_lite::future::zip(appends, completions).await;
            pipeline.close();
            client.close().await;
        })
    });
    client_side.await.unwrap();
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_raft_share_one_port() {
    let server = mounted(tower::layer::util::Identity::new()).await;
    let addr = server.local_addr().to_owned();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: SERVICE_NAME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let client = GrpcTransport::builder("client", Config::default()).build();
    assert!(client.request_vote(&addr, vote(7)).await.unwrap().granted);
    client.close().await;
    server.close().await;
}

/// A layer that answers `UNAUTHENTICATED` to a call without the token.
#[derive(Clone)]
struct RequireToken;

impl<S> tower::Layer<S> for RequireToken {
    type Service = TokenCheck<S>;
    fn layer(&self, inner: S) -> TokenCheck<S> {
        TokenCheck(inner)
    }
}

#[derive(Clone)]
struct TokenCheck<S>(S);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for TokenCheck<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let token = request.headers().get("authorization");
        if token.is_some_and(|t| t == "Bearer raft-secret") {
            return Box::pin(self.0.call(request));
        }
        let status = tonic::Status::unauthenticated("a bearer token is required");
        Box::pin(async move { Ok(status.into_http()) })
    }
}

/// A layer that counts every call by path and by the grpc-status of its
/// answer's head (Trailers-Only answers; others count as `streamed`).
#[derive(Clone, Default)]
struct CountCalls(Arc<Mutex<Vec<(String, String)>>>);

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted(inner, self.0.clone())
    }
}

#[derive(Clone)]
struct Counted<S>(S, Arc<Mutex<Vec<(String, String)>>>);

impl<S> tower::Service<http::Request<tonic::body::Body>> for Counted<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let seen = self.1.clone();
        let answer = self.0.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let status = response
                .headers()
                .get("grpc-status")
                .map_or("streamed".to_owned(), |s| s.to_str().unwrap().to_owned());
            seen.lock().unwrap().push((path, status));
            Ok(response)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layers_see_every_raft_call_and_an_auth_layer_refuses_one_without_a_token() {
    let counted = CountCalls::default();
    let layers = tower::ServiceBuilder::new()
        .layer(counted.clone())
        .layer(RequireToken)
        .into_inner();
    let server = mounted(layers).await;
    let addr = server.local_addr().to_owned();

    let stranger = GrpcTransport::builder("stranger", Config::default()).build();
    match stranger.request_vote(&addr, vote(2)).await {
        Err(TransportError::Status(status)) => {
            assert_eq!(status.code(), Code::Unauthenticated);
            assert!(status.message().contains("bearer token"), "{status}");
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }

    let member = GrpcTransport::builder("member", Config::default()).build();
    let mut metadata = http::HeaderMap::new();
    metadata.insert("authorization", "Bearer raft-secret".parse().unwrap());
    member.set_request_metadata(metadata).unwrap();
    assert!(member.request_vote(&addr, vote(3)).await.unwrap().granted);
    let pipeline = member.append_entries_pipeline(&addr).await.unwrap();
    for i in 1..=3u64 {
        pipeline
            .append(&AppendEntriesRequest {
                header: header(),
                term: 3,
                entries: vec![Log::command(i, 3, Bytes::from_static(b"x"))],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for _ in 0..3 {
        pipeline.next().await.unwrap().1.unwrap();
    }
    pipeline.close();
    let snapshot = member
        .install_snapshot(
            &addr,
            InstallSnapshotRequest {
                header: header(),
                term: 3,
                size: 3 << 20,
                ..Default::default()
            },
            futures_lite::io::Cursor::new(vec![1u8; 3 << 20]),
        )
        .await
        .unwrap();
    assert!(snapshot.success);

    let method = |m: &str| format!("/{SERVICE_NAME}/{m}");
    let seen = counted.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (method("RequestVote"), "16".to_owned()),
            (method("RequestVote"), "streamed".to_owned()),
            (method("AppendEntriesPipeline"), "streamed".to_owned()),
            (method("InstallSnapshot"), "streamed".to_owned()),
        ],
        "every Raft call crossed the layers once, the refused one with UNAUTHENTICATED"
    );
    stranger.close().await;
    member.close().await;
    server.close().await;
}

/// One gRPC call made by hand over h2: the grpc-status of the answer
/// (from its head when Trailers-Only, else from its trailers).
async fn raw_call(addr: &str, path: &str, body: Bytes) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (answer, mut send) = client.send_request(request, false).unwrap();
    send.send_data(body, true).unwrap();
    let response = answer.await.unwrap();
    let status = |h: &http::HeaderMap| h.get("grpc-status").map(|s| s.to_str().unwrap().to_owned());
    if let Some(code) = status(response.headers()) {
        return Some(code);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let _ = data;
    }
    body.trailers()
        .await
        .ok()
        .flatten()
        .as_ref()
        .and_then(status)
}

/// A gRPC length-prefixed message frame.
fn frame(length: u32, payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_statuses_of_the_transports_own_port() {
    let mounted = mounted(tower::layer::util::Identity::new()).await;
    let own = GrpcTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    serve_reference(&own);
    let vote = format!("/{SERVICE_NAME}/RequestVote");
    let cases = [
        (
            "garbage protobuf",
            vote.clone(),
            frame(4, &[0xff, 0xff, 0xff, 0xff]),
            Code::Internal,
        ),
        (
            "a message over the size limit",
            vote.clone(),
            frame(64 << 20, &[0; 16]),
            Code::ResourceExhausted,
        ),
        (
            "a method the Raft service lacks",
            format!("/{SERVICE_NAME}/Nope"),
            frame(0, &[]),
            Code::Unimplemented,
        ),
        (
            "a truncated message",
            vote.clone(),
            frame(100, &[0; 10]),
            Code::Internal,
        ),
    ];
    for (what, path, body, expected) in cases {
        let on_own = raw_call(own.local_addr(), &path, body.clone()).await;
        let on_mounted = raw_call(mounted.local_addr(), &path, body).await;
        assert_eq!(
            on_own,
            Some(expected.as_i32().to_string()),
            "{what} on the transport's own port"
        );
        assert_eq!(
            on_mounted, on_own,
            "{what}: the mounted service answers alike"
        );
    }
    // Still serving after all that.
    let client = GrpcTransport::builder("client", Config::default()).build();
    assert!(
        client
            .request_vote(mounted.local_addr(), vote_request())
            .await
            .unwrap()
            .granted
    );
    client.close().await;
    own.close().await;
    mounted.close().await;
}

fn vote_request() -> RequestVoteRequest {
    vote(9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_complete_and_closing_the_transport_stops_the_mount() {
    let server = mounted(tower::layer::util::Identity::new()).await;
    let addr = server.local_addr().to_owned();
    let client = GrpcTransport::builder("client", Config::default()).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for term in 0..16 {
        let (client, addr, calls) = (client.clone(), addr.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            assert!(
                client
                    .request_vote(&addr, vote(term))
                    .await
                    .unwrap()
                    .granted
            );
            calls.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 16);
    let raft = RaftService::new(&server);
    let closed = raft.closed();
    server.close().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), closed)
        .await
        .expect("closed fires once the transport closes");
    match client.request_vote(&addr, vote(1)).await {
        Err(TransportError::Status(status)) => assert_eq!(status.code(), Code::Unavailable),
        other => panic!("a closed transport's mount must refuse, got {other:?}"),
    }
    client.close().await;
}
