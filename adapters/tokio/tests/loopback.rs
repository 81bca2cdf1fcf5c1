//! What is particular to the tokio backend, over real loopback sockets on
//! both kinds of tokio runtime: futures awaited from outside the runtime,
//! the runtime used with no runtime context, explicit handles, listeners
//! and streams of its own. The behaviour every backend shares is the suite
//! in `tests/behaviour`, which runs on both tokio flavours too.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use raft_grpc_transport::message::*;
use raft_grpc_transport_api::reference;
use raft_grpc_transport_driver::Runtime;
use raft_grpc_transport_tokio::{
    Config, Connector, GrpcTransport, TokioIo, TokioRuntime, TransportError,
};

/// A server answering the reference way: heartbeats on the fast path,
/// everything else through the consumer.
async fn served() -> GrpcTransport {
    let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    server.set_heartbeat_handler(Some(reference::heartbeat_handler(server_header())));
    tokio::spawn(answer_all(server.consumer()));
    server
}

fn client() -> GrpcTransport {
    GrpcTransport::builder("client", Config::default()).build()
}

/// A snapshot source that gives `ready` bytes, then never ends.
struct Stalled {
    ready: usize,
}

impl futures_lite::AsyncRead for Stalled {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.ready == 0 {
            return std::task::Poll::Pending;
        }
        let n = buf.len().min(self.ready);
        buf[..n].fill(5);
        self.ready -= n;
        std::task::Poll::Ready(Ok(n))
    }
}

/// Calls of every kind reach a server that holds them; closing the client
/// then fails each with `Shutdown` (pipelined appends with
/// `PipelineShutdown`), and later calls too.
async fn run_close_fails_pending_calls() {
    let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let consumer = server.consumer();
    let (held_tx, held_rx) = smol::channel::unbounded();
    tokio::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            if held_tx.send(rpc).await.is_err() {
                return;
            }
        }
    });
    let client = client();
    let target = server.local_addr().to_owned();

    let (c, t) = (client.clone(), target.clone());
    let vote = tokio::spawn(async move {
        c.request_vote(&t, RequestVoteRequest::default())
            .await
            .map(drop)
    });
    let (c, t) = (client.clone(), target.clone());
    let pre_vote = tokio::spawn(async move {
        c.request_pre_vote(&t, RequestPreVoteRequest::default())
            .await
            .map(drop)
    });
    let (c, t) = (client.clone(), target.clone());
    let append_call =
        tokio::spawn(async move { c.append_entries(&t, append(1, 10)).await.map(drop) });
    let (c, t) = (client.clone(), target.clone());
    let timeout_now = tokio::spawn(async move {
        c.timeout_now(&t, TimeoutNowRequest::default())
            .await
            .map(drop)
    });
    let (c, t) = (client.clone(), target.clone());
    let snapshot = tokio::spawn(async move {
        let meta = InstallSnapshotRequest {
            term: 3,
            size: 4 << 20,
            ..Default::default()
        };
        c.install_snapshot(&t, meta, Stalled { ready: 1 << 20 })
            .await
            .map(drop)
    });
    let pipeline = client.append_entries_pipeline(&target).await.unwrap();
    pipeline.append(&append(1, 10)).await.unwrap();

    // All six reached the server, which holds them unanswered.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(held_rx.recv().await.unwrap());
    }
    client.close().await;

    for (name, call) in [
        ("RequestVote", vote),
        ("RequestPreVote", pre_vote),
        ("AppendEntries", append_call),
        ("TimeoutNow", timeout_now),
        ("InstallSnapshot", snapshot),
    ] {
        assert_eq!(
            call.await.unwrap(),
            Err(TransportError::Shutdown),
            "a pending {name}"
        );
    }
    let (seq, result) = pipeline.next().await.unwrap();
    assert_eq!((seq, result), (0, Err(TransportError::PipelineShutdown)));
    assert!(pipeline.next().await.is_none());
    assert_eq!(
        client
            .request_vote(&target, RequestVoteRequest::default())
            .await
            .unwrap_err(),
        TransportError::Shutdown,
        "a call after close"
    );
    drop(held);
    server.close().await;
}

#[tokio::test]
async fn close_fails_pending_calls_on_a_current_thread_runtime() {
    run_close_fails_pending_calls().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_fails_pending_calls_on_a_multi_thread_runtime() {
    run_close_fails_pending_calls().await;
}

#[test]
fn futures_are_awaited_from_outside_the_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = runtime.block_on(async { (served().await, client()) });
    let target = server.local_addr().to_owned();

    // A thread that is no part of any runtime.
    let (c, t) = (client.clone(), target.clone());
    std::thread::spawn(move || futures_lite::future::block_on(every_rpc_kind(&c, &t)))
        .join()
        .unwrap();
    // smol's executor, on this thread.
    smol::block_on(async {
        assert!(
            client
                .request_vote(&target, RequestVoteRequest::default())
                .await
                .unwrap()
                .granted
        );
    });
    // Another tokio runtime: the transport's sockets and timers stay on its
    // own.
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        let mut tasks = Vec::new();
        for i in 1..=8u64 {
            let (client, target) = (client.clone(), target.clone());
            tasks.push(tokio::spawn(async move {
                client.append_entries(&target, append(i, 100)).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().success);
        }
    });
    drop(other);

    futures_lite::future::block_on(async {
        client.close().await;
        server.close().await;
    });
}

#[test]
fn the_runtime_works_outside_any_runtime_context() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tokio = TokioRuntime::new(runtime.handle().clone());
    assert!(TokioRuntime::try_current().is_none());
    // This thread has no runtime context: every future enters the handle.
    futures_lite::future::block_on(async {
        let resolved = tokio.resolve("localhost:7000".to_owned()).await.unwrap();
        assert!(resolved.ip().is_loopback() && resolved.port() == 7000);
        assert!(tokio.resolve("127.0.0.1:7001".to_owned()).await.is_ok());

        let listener = tokio.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = TokioRuntime::local_addr(&listener).unwrap();
        // Accepting enters the handle too: the accepted socket registers
        // with the transport's reactor.
        let accepting = async { tokio.accept(&listener).await };
        let connecting = async { tokio.connect(addr).await };
        let (accepted, connected) = futures_lite::future::zip(accepting, connecting).await;
        let ((accepted, remote), connected) = (accepted.unwrap(), connected.unwrap());
        assert!(remote.ip().is_loopback() && remote.port() != addr.port());
        // HTTP/2 gets vectored writes through the box.
        let mut h2 = TokioRuntime::into_h2(connected);
        assert!(tokio::io::AsyncWrite::is_write_vectored(&h2));
        let mut peer = TokioRuntime::into_h2(accepted);
        futures_lite::future::poll_fn(|cx| {
            tokio::io::AsyncWrite::poll_write_vectored(
                std::pin::Pin::new(&mut h2),
                cx,
                &[std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"c")],
            )
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let mut buf = [0u8; 8];
            let mut read = tokio::io::ReadBuf::new(&mut buf);
            futures_lite::future::poll_fn(|cx| {
                tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut peer), cx, &mut read)
            })
            .await
            .unwrap();
            assert!(!read.filled().is_empty(), "the stream ended early");
            got.extend_from_slice(read.filled());
        }
        assert_eq!(got, b"abc");

        let start = Instant::now();
        tokio.sleep_until(start + Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        // A deadline that passed completes at once.
        tokio.sleep_until(start).await;
    });
    // A spawned task runs on the runtime.
    let (tx, rx) = std::sync::mpsc::channel();
    tokio.spawn(async move {
        tx.send(TokioRuntime::try_current().is_some()).unwrap();
    });
    assert!(rx.recv().unwrap());
}

#[test]
fn a_transport_made_outside_the_runtime_on_its_handle() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tokio = TokioRuntime::new(runtime.handle().clone());
    let (server, client) = {
        // The driver's constructors take `TokioRuntime::default()` before
        // `runtime(...)` replaces it: enter the handle while they run.
        let _entered = runtime.enter();
        let server = futures_lite::future::block_on(GrpcTransport::bind_on(
            tokio.clone(),
            "127.0.0.1:0",
            Config::default(),
        ))
        .unwrap();
        let client = GrpcTransport::builder("client", Config::default())
            .runtime(tokio.clone())
            .build();
        (server, client)
    };
    runtime.spawn(answer_all(server.consumer()));
    futures_lite::future::block_on(async {
        let vote = client
            .request_vote(server.local_addr(), RequestVoteRequest::default())
            .await
            .unwrap();
        assert!(vote.granted);
        client.close().await;
        server.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_connections_and_a_custom_connector() {
    // Connections accepted by the application, served by the transport.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = GrpcTransport::builder(addr.clone(), Config::default()).build();
    tokio::spawn(answer_all(server.consumer()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (s, a) = (server.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            s.serve_connection(stream);
        }
    });

    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    let tcp = raft_grpc_transport_tokio::tcp_connector();
    let connector: Connector = Arc::new(move |peer: String| {
        count.fetch_add(1, Ordering::SeqCst);
        tcp(peer)
    });
    let client = GrpcTransport::builder("client", Config::default())
        .connector(connector)
        .build();
    assert!(
        client
            .append_entries(&addr, heartbeat())
            .await
            .unwrap()
            .success
    );
    assert!(
        client
            .append_entries(&addr, append(1, 10))
            .await
            .unwrap()
            .success
    );
    // Two lanes, two connections, both through the connector.
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn serves_on_a_listener_of_its_own_and_any_tokio_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = GrpcTransport::from_listener(listener, Config::default()).unwrap();
    tokio::spawn(answer_all(server.consumer()));
    let client = client();
    assert!(
        client
            .request_pre_vote(server.local_addr(), RequestPreVoteRequest::default())
            .await
            .unwrap()
            .granted
    );

    // A connector of in-memory pipes: any tokio stream converts.
    let s = server.clone();
    let connector: Connector = Arc::new(move |_peer: String| {
        let (near, far) = tokio::io::duplex(64 << 10);
        s.serve_connection(far);
        Box::pin(async move { Ok(TokioIo::from(near)) })
    });
    let piped = GrpcTransport::builder("piped", Config::default())
        .connector(connector)
        .build();
    let response = piped
        .install_snapshot(
            "anywhere",
            InstallSnapshotRequest {
                term: 3,
                size: 1 << 20,
                ..Default::default()
            },
            snapshot_data(1 << 20),
        )
        .await
        .unwrap();
    assert!(response.success);
    piped.close().await;
    client.close().await;
    server.close().await;
}
