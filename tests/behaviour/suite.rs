// The behaviour suite: one set of loopback tests, run against every
// runtime backend. A backend's test file defines `Rt` (its runtime),
// `block_on` and `bind_server` (how a serving transport comes up on an
// address: on its own listener, or mounted on another HTTP/2 server), then
// includes this file, so that every backend runs the same tests (see this
// package's crate docs).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::AsyncReadExt;
use raft_grpc_transport::message::*;
use raft_grpc_transport_driver::{Config, Runtime};

type GrpcTransport = raft_grpc_transport_driver::GrpcTransport<Rt>;

/// Runs `future` in the background on the backend.
fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    Rt::default().spawn(future);
}

/// Runs `future` in the background; its output comes back when awaited.
fn spawn_task<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    let (tx, rx) = async_channel::bounded(1);
    spawn(async move {
        let _ = tx.send(future.await).await;
    });
    async move { rx.recv().await.expect("the task ran to its end") }
}

/// Waits `duration` on the backend's timers.
async fn sleep(duration: Duration) {
    Rt::default().sleep_until(Instant::now() + duration).await;
}

async fn serve(transport: &GrpcTransport) {
    let consumer = transport.consumer();
    let header = RpcHeader::new(3, "server", transport.local_addr().to_owned());
    spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    });
}

#[test]
fn every_rpc_kind() {
    block_on(async {
        let server = bind_server("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        serve(&server).await;
        let client = bind_server("127.0.0.1:0", Config::default())
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

fn header(name: &str) -> RpcHeader {
    RpcHeader::new(3, name.to_owned(), "127.0.0.1:0")
}

fn append(index: u64, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header("client"),
        term: 3,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, 3, Bytes::from(vec![index as u8; size]))],
        ..Default::default()
    }
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
        term: 3,
        ..Default::default()
    }
}

async fn served(config: Config) -> GrpcTransport {
    let server = bind_server("127.0.0.1:0", config).await.unwrap();
    serve(&server).await;
    server
}

fn client(config: Config) -> GrpcTransport {
    GrpcTransport::builder("client", config).build()
}

#[test]
fn ten_thousand_pipelined_appends_complete_in_order() {
    block_on(async {
        let server = served(Config::default()).await;
        let client = client(Config::default());
        let pipeline = client
            .append_entries_pipeline(server.local_addr())
            .await
            .unwrap();
        let sender = async {
            for i in 1..=10_000u64 {
                assert_eq!(pipeline.append(&append(i, 64)).await.unwrap(), i - 1);
            }
        };
        let receiver = async {
            for i in 0..10_000u64 {
                let (seq, result) = pipeline.next().await.unwrap();
                assert_eq!(seq, i);
                assert_eq!(result.unwrap().last_log, i + 1);
            }
        };
        futures_lite::future::zip(sender, receiver).await;
        pipeline.close();
        assert!(pipeline.next().await.is_none(), "nothing after close");
        client.close().await;
        server.close().await;
    });
}

#[test]
fn concurrent_callers_spread_over_the_replication_slots() {
    block_on(async {
        // Count the connections the server accepts.
        let listener = Rt::default().bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = Rt::local_addr(&listener).unwrap().to_string();
        let server = GrpcTransport::builder(addr.clone(), Config::default()).build();
        serve(&server).await;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, a) = (server.clone(), accepted.clone());
        spawn(async move {
            let runtime = Rt::default();
            loop {
                let Ok((stream, _)) = runtime.accept(&listener).await else {
                    return;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                s.serve_connection(stream);
            }
        });

        let config = Config::default().with_pool_size(5);
        let client = client(config);
        let calls: Vec<_> = (1..=60u64)
            .map(|i| client.append_entries(&addr, append(i, 1000)))
            .collect();
        for call in calls {
            assert!(call.await.unwrap().success);
        }
        client.append_entries(&addr, heartbeat()).await.unwrap();
        // Replication uses slots 1, 2 and 3; heartbeats slot 0.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        client.close().await;
        server.close().await;
    });
}

#[test]
fn heartbeat_handler_answers_while_the_consumer_installs_a_snapshot() {
    block_on(async {
        let server = bind_server("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        // The handler answers, and notes whom each heartbeat came from.
        let senders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = senders.clone();
        server.set_heartbeat_handler(Some(std::sync::Arc::new(
            move |request: &AppendEntriesRequest, peer: &raft_grpc_transport_driver::PeerInfo| {
                seen.lock().unwrap().push(peer.remote_addr);
                Ok(AppendEntriesResponse {
                    term: request.term,
                    success: true,
                    ..Default::default()
                })
            },
        )));
        // A consumer that reads the snapshot slowly: 8 MiB at 1 MiB per 100 ms.
        let consumer = server.consumer();
        spawn(async move {
            while let Some(mut rpc) = consumer.recv().await {
                let mut reader = rpc.snapshot.take().unwrap();
                let mut received = 0u64;
                while let Some(chunk) = reader.chunk().await.unwrap() {
                    received += chunk.len() as u64;
                    sleep(Duration::from_millis(100) * (chunk.len() as u32) / (1 << 20)).await;
                }
                rpc.respond(Ok(RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                    success: received == 8 << 20,
                    ..Default::default()
                })));
            }
        });
        let client = client(Config::default());
        let target = server.local_addr().to_owned();
        let snapshot = client.install_snapshot(
            &target,
            InstallSnapshotRequest {
                term: 3,
                size: 8 << 20,
                ..Default::default()
            },
            futures_lite::io::Cursor::new(vec![1u8; 8 << 20]),
        );
        let heartbeats = async {
            sleep(Duration::from_millis(100)).await;
            let mut worst = Duration::ZERO;
            for _ in 0..20 {
                let start = std::time::Instant::now();
                assert!(
                    client
                        .append_entries(&target, heartbeat())
                        .await
                        .unwrap()
                        .success
                );
                worst = worst.max(start.elapsed());
                sleep(Duration::from_millis(20)).await;
            }
            worst
        };
        let (snapshot, worst) = futures_lite::future::zip(snapshot, heartbeats).await;
        assert!(snapshot.unwrap().success);
        // The snapshot takes about 800 ms; a heartbeat waits for none of it.
        assert!(
            worst < Duration::from_millis(100),
            "worst heartbeat {worst:?}"
        );
        let senders = senders.lock().unwrap().clone();
        assert_eq!(senders.len(), 20, "every heartbeat went to the handler");
        assert!(
            senders
                .iter()
                .all(|addr| addr.is_some_and(|a| a.ip().is_loopback())),
            "the handler sees each heartbeat's sender: {senders:?}"
        );
        client.close().await;
        server.close().await;
    });
}

#[test]
fn deadline_exceeded_and_the_server_keeps_serving() {
    block_on(async {
        let server = bind_server("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let consumer = server.consumer();
        // Holds every request without answering, except TimeoutNow.
        spawn(async move {
            let mut held = Vec::new();
            while let Some(rpc) = consumer.recv().await {
                if let RaftRequest::TimeoutNow(_) = rpc.request {
                    rpc.respond(Ok(RaftResponse::TimeoutNow(TimeoutNowResponse::default())));
                } else {
                    held.push(rpc);
                }
            }
        });
        let config = Config::default().with_rpc_timeout(Duration::from_millis(300));
        let client = client(config);
        let start = std::time::Instant::now();
        let err = client
            .request_vote(server.local_addr(), RequestVoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), raft_grpc_transport::Code::DeadlineExceeded);
        assert!(
            start.elapsed() >= Duration::from_millis(300)
                && start.elapsed() < Duration::from_secs(2)
        );
        client
            .timeout_now(server.local_addr(), TimeoutNowRequest::default())
            .await
            .unwrap();
        client.close().await;
        server.close().await;
    });
}

#[test]
fn oversized_messages_are_resource_exhausted() {
    block_on(async {
        let server = served(Config::default()).await;
        // Refused locally: over our own send limit.
        let client = client(Config::default());
        let err = client
            .append_entries(server.local_addr(), append(1, 5 << 20))
            .await
            .unwrap_err();
        assert_eq!(err.code(), raft_grpc_transport::Code::ResourceExhausted);
        // Refused by the peer: over its receive limit.
        let big = client_with_send_limit(16 << 20);
        let err = big
            .append_entries(server.local_addr(), append(1, 5 << 20))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            raft_grpc_transport::Code::ResourceExhausted,
            "{err}"
        );
        // Both keep working.
        assert!(
            client
                .append_entries(server.local_addr(), append(1, 10))
                .await
                .unwrap()
                .success
        );
        assert!(
            big.append_entries(server.local_addr(), append(1, 10))
                .await
                .unwrap()
                .success
        );
        client.close().await;
        big.close().await;
        server.close().await;
    });
}

fn client_with_send_limit(limit: usize) -> GrpcTransport {
    client(Config::default().with_max_send_message_len(limit))
}

#[test]
fn garbage_on_the_port_drops_that_connection_only() {
    use std::io::{Read, Write};
    block_on(async {
        let server = served(Config::default()).await;
        let addr = server.local_addr().to_owned();
        let garbage = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not HTTP/2 at all");
            let mut buf = [0u8; 1024];
            // The server closes the connection (EOF or reset), not hang.
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        });
        let client = client(Config::default());
        assert!(
            client
                .append_entries(server.local_addr(), append(1, 10))
                .await
                .unwrap()
                .success
        );
        garbage.join().unwrap();
        assert!(
            client
                .append_entries(server.local_addr(), append(2, 10))
                .await
                .unwrap()
                .success
        );
        client.close().await;
        server.close().await;
    });
}

#[test]
fn server_closed_while_calls_are_pending() {
    block_on(async {
        let server = bind_server("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let consumer = server.consumer();
        // Never answers.
        spawn(async move {
            let mut held = Vec::new();
            while let Some(rpc) = consumer.recv().await {
                held.push(rpc);
            }
        });
        let client = client(Config::default());
        let target = server.local_addr().to_owned();
        let pending = async {
            let a = client.request_vote(&target, RequestVoteRequest::default());
            let b = client.append_entries(&target, append(1, 10));
            futures_lite::future::zip(a, b).await
        };
        let closer = async {
            sleep(Duration::from_millis(200)).await;
            server.close().await;
        };
        let start = std::time::Instant::now();
        let ((a, b), ()) = futures_lite::future::zip(pending, closer).await;
        assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "calls failed in {:?}",
            start.elapsed()
        );
        client.close().await;
    });
}

#[test]
fn closed_transport_fails_calls_at_once() {
    block_on(async {
        let server = served(Config::default()).await;
        let client = client(Config::default());
        assert!(
            client
                .append_entries(server.local_addr(), append(1, 10))
                .await
                .is_ok()
        );
        client.close().await;
        client.close().await;
        let err = client
            .append_entries(server.local_addr(), append(2, 10))
            .await
            .unwrap_err();
        assert_eq!(err, raft_grpc_transport_api::TransportError::Shutdown);
        let err = client
            .append_entries_pipeline(server.local_addr())
            .await
            .unwrap_err();
        assert_eq!(err, raft_grpc_transport_api::TransportError::Shutdown);
        server.close().await;
        assert!(
            server.consumer().recv().await.is_none(),
            "the consumer ends"
        );
    });
}

#[test]
fn peer_restart_mid_pipeline_and_mid_snapshot() {
    block_on(async {
        let server = served(Config::default()).await;
        let addr = server.local_addr().to_owned();
        let client = client(Config::default());
        let pipeline = client.append_entries_pipeline(&addr).await.unwrap();
        for i in 1..=20u64 {
            pipeline.append(&append(i, 1000)).await.unwrap();
        }
        // A snapshot whose source stalls after 1 MiB, so the restart hits it
        // mid-stream.
        let source = futures_lite::io::Cursor::new(vec![2u8; 1 << 20]).chain(SlowTail);
        let snapshot = client.install_snapshot(
            &addr,
            InstallSnapshotRequest {
                term: 3,
                size: 4 << 20,
                ..Default::default()
            },
            source,
        );
        let restart = async {
            sleep(Duration::from_millis(200)).await;
            server.close().await;
            let again = bind_server(&addr, Config::default()).await.unwrap();
            serve(&again).await;
            again
        };
        let (snapshot, again) = futures_lite::future::zip(snapshot, restart).await;
        assert!(snapshot.is_err(), "the snapshot fails: {snapshot:?}");
        // Every append completes exactly once, in order, and the pipeline ends.
        let mut seqs = Vec::new();
        while let Some((seq, _)) = pipeline.next().await {
            seqs.push(seq);
        }
        assert_eq!(seqs, (0..20).collect::<Vec<_>>());
        // The next call reconnects.
        let mut ok = false;
        for _ in 0..50 {
            if client.append_entries(&addr, append(21, 10)).await.is_ok() {
                ok = true;
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "a call after the restart succeeds");
        client.close().await;
        again.close().await;
    });
}

/// A source that never ends: each read waits 10 s.
struct SlowTail;

impl futures_io::AsyncRead for SlowTail {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Pending
    }
}

#[test]
fn a_peer_that_never_speaks_http2_fails_the_connect() {
    block_on(async {
        // Accepts TCP, then says nothing.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let held = std::thread::spawn(move || {
            let conn = silent.accept();
            std::thread::sleep(Duration::from_millis(600));
            drop(conn);
        });
        let config = Config::default().with_connect_timeout(Duration::from_millis(300));
        let client = client(config);
        let start = std::time::Instant::now();
        let err = client
            .request_vote(&addr, RequestVoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), raft_grpc_transport::Code::Unavailable, "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "failed after {:?}",
            start.elapsed()
        );
        client.close().await;
        held.join().unwrap();
    });
}

/// Code written against the runtime-free trait runs on this transport.
async fn leader_round<T: raft_grpc_transport_api::Transport>(leader: &T, target: &str) -> u64 {
    use raft_grpc_transport_api::AppendPipeline;
    let vote = leader
        .request_vote(
            target,
            RequestVoteRequest {
                term: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(vote.granted);
    let snapshot = leader
        .install_snapshot(
            target,
            InstallSnapshotRequest {
                term: 9,
                size: 3000,
                ..Default::default()
            },
            futures_lite::io::Cursor::new(vec![1u8; 3000]),
        )
        .await
        .unwrap();
    assert!(snapshot.success);
    let pipeline = leader.append_entries_pipeline(target).await.unwrap();
    for i in 1..=5 {
        pipeline.append(&append(i, 8)).await.unwrap();
    }
    let mut last = 0;
    for _ in 0..5 {
        last = pipeline.next().await.unwrap().1.unwrap().last_log;
    }
    AppendPipeline::close(&pipeline);
    assert_eq!(
        leader.decode_peer(&leader.encode_peer("id", "10.0.0.1:7000")),
        "10.0.0.1:7000"
    );
    last
}

#[test]
fn works_through_the_transport_trait() {
    block_on(async {
        let server = served(Config::default()).await;
        let leader = client(Config::default());
        assert_eq!(leader_round(&leader, server.local_addr()).await, 5);
        raft_grpc_transport_api::Transport::close(&leader).await;
        let err = raft_grpc_transport_api::Transport::request_vote(
            &leader,
            server.local_addr(),
            RequestVoteRequest::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err, raft_grpc_transport_api::TransportError::Shutdown);
        server.close().await;
    });
}

#[test]
fn a_custom_connector_opens_every_connection() {
    block_on(async {
        let server = served(Config::default()).await;
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = opened.clone();
        let tcp = raft_grpc_transport_driver::tcp_connector(Rt::default());
        let connector: raft_grpc_transport_driver::Connector<<Rt as Runtime>::Io> =
            std::sync::Arc::new(move |peer: String| {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tcp(peer)
            });
        let client = GrpcTransport::builder("client", Config::default())
            .connector(connector)
            .build();
        client
            .append_entries(server.local_addr(), heartbeat())
            .await
            .unwrap();
        client
            .append_entries(server.local_addr(), append(1, 10))
            .await
            .unwrap();
        // Two lanes, two connections, both through the connector.
        assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 2);
        client.close().await;
        server.close().await;
    });
}

#[test]
fn a_call_given_up_while_the_consumer_queue_is_full_is_never_delivered() {
    block_on(async {
        // A queue of one, and a consumer that starts reading late.
        let server = bind_server("127.0.0.1:0", Config::default().with_consumer_queue(1))
            .await
            .unwrap();
        let client = client(Config::default().with_rpc_timeout(Duration::from_millis(300)));
        let target = server.local_addr().to_owned();
        let first = client.request_vote(
            &target,
            RequestVoteRequest {
                term: 1,
                ..Default::default()
            },
        );
        let second = async {
            sleep(Duration::from_millis(50)).await;
            client
                .request_vote(
                    &target,
                    RequestVoteRequest {
                        term: 2,
                        ..Default::default()
                    },
                )
                .await
        };
        let (first, second) = futures_lite::future::zip(first, second).await;
        assert_eq!(
            first.unwrap_err().code(),
            raft_grpc_transport::Code::DeadlineExceeded
        );
        assert_eq!(
            second.unwrap_err().code(),
            raft_grpc_transport::Code::DeadlineExceeded
        );
        // The first sat in the queue and the second waited for room; both
        // callers gave up (their deadlines passed on the server too): the
        // consumer must see neither.
        sleep(Duration::from_millis(200)).await;
        let consumer = server.consumer();
        let next =
            futures_lite::future::or(async { consumer.recv().await.map(|r| r.request) }, async {
                sleep(Duration::from_millis(300)).await;
                None
            })
            .await;
        assert_eq!(
            next, None,
            "a request whose caller gave up was delivered late"
        );
        // The queue still serves the next caller.
        let answering = spawn_task(async move {
            let rpc = consumer.recv().await.unwrap();
            raft_grpc_transport_api::reference::answer(rpc, RpcHeader::default()).await
        });
        let third = client
            .request_vote(
                &target,
                RequestVoteRequest {
                    term: 3,
                    ..Default::default()
                },
            )
            .await;
        assert!(third.unwrap().granted);
        assert!(answering.await);
        client.close().await;
        server.close().await;
    });
}

/// A TCP proxy in front of `target` that counts the connections open
/// through it (until both directions ended).
fn counting_proxy(target: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = open.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = std::net::TcpStream::connect(&target) else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            let counted = counted.clone();
            std::thread::spawn(move || {
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
                counted.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

#[test]
fn dropping_the_last_handle_closes_the_connections() {
    block_on(async {
        let server = served(Config::default()).await;
        let (addr, open) = counting_proxy(server.local_addr().to_owned());
        let client = client(Config::default());
        client.append_entries(&addr, heartbeat()).await.unwrap();
        client.append_entries(&addr, append(1, 10)).await.unwrap();
        assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(client);
        let start = Instant::now();
        while open.load(std::sync::atomic::Ordering::SeqCst) > 0
            && start.elapsed() < Duration::from_secs(5)
        {
            sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            open.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the dropped client's connections closed"
        );
        server.close().await;
    });
}

/// Waits until `open` reads `n` (at most 5 s); returns what it last read.
async fn wait_for_open(open: &std::sync::atomic::AtomicUsize, n: usize) -> usize {
    let start = Instant::now();
    loop {
        let now_open = open.load(std::sync::atomic::Ordering::SeqCst);
        if now_open == n || start.elapsed() > Duration::from_secs(5) {
            return now_open;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn removing_a_peer_closes_its_connections_once_their_calls_are_done() {
    block_on(async {
        let server = bind_server("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        // Votes are held until released; everything else is answered.
        let (release, released) = async_channel::bounded::<()>(1);
        let consumer = server.consumer();
        let header = RpcHeader::new(3, "server", server.local_addr().to_owned());
        spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                if matches!(rpc.request, RaftRequest::RequestVote(_)) {
                    let _ = released.recv().await;
                }
                raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
            }
        });
        let (addr, open) = counting_proxy(server.local_addr().to_owned());
        let client = client(Config::default());
        // A replication connection, idle once its call is answered, and
        // the control connection, busy with a held vote.
        client.append_entries(&addr, append(1, 10)).await.unwrap();
        let vote = spawn_task({
            let (client, addr) = (client.clone(), addr.clone());
            async move {
                let vote = RequestVoteRequest {
                    term: 4,
                    ..Default::default()
                };
                client.request_vote(&addr, vote).await
            }
        });
        assert_eq!(wait_for_open(&open, 2).await, 2);
        sleep(Duration::from_millis(100)).await;

        client.remove_peer(&addr);
        assert_eq!(wait_for_open(&open, 1).await, 1, "the idle connection closed");
        sleep(Duration::from_millis(200)).await;
        assert_eq!(
            open.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the vote's connection stays while the vote runs"
        );
        release.send(()).await.unwrap();
        assert!(vote.await.unwrap().granted, "the call in flight finished");
        assert_eq!(wait_for_open(&open, 0).await, 0, "then its connection closed");

        // A later call connects afresh.
        client.append_entries(&addr, heartbeat()).await.unwrap();
        assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 1);
        client.close().await;
        server.close().await;
    });
}

#[test]
fn idle_outgoing_connections_close_after_the_idle_timeout() {
    block_on(async {
        let server = served(Config::default()).await;
        let (addr, open) = counting_proxy(server.local_addr().to_owned());
        let idle = Duration::from_millis(300);
        let client = client(Config::default().with_outgoing_idle_timeout(Some(idle)));
        client.append_entries(&addr, heartbeat()).await.unwrap();
        client.append_entries(&addr, append(1, 10)).await.unwrap();
        let idle_from = Instant::now();
        assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(wait_for_open(&open, 0).await, 0, "both idle connections closed");
        assert!(idle_from.elapsed() >= idle - Duration::from_millis(50));
        // The next call reconnects.
        client.append_entries(&addr, heartbeat()).await.unwrap();
        assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 1);
        client.close().await;
        server.close().await;
    });
}

#[test]
fn stats_show_each_peers_connections_traffic_and_errors() {
    block_on(async {
        let server = served(Config::default()).await;
        let target = server.local_addr().to_owned();
        let client = client(Config::default());
        assert!(client.stats().is_empty());
        client.append_entries(&target, heartbeat()).await.unwrap();
        client
            .append_entries(&target, append(1, 100_000))
            .await
            .unwrap();
        let stats = client.stats();
        let [peer] = &stats[..] else {
            panic!("{stats:?}")
        };
        assert_eq!(peer.peer, target);
        assert!(peer.bytes_sent > 100_000, "{peer:?}");
        assert!(peer.bytes_received > 0 && peer.bytes_received < 1_000, "{peer:?}");
        assert_eq!(peer.calls_in_flight, 0);
        let ready = peer
            .connections
            .slots
            .iter()
            .filter(|s| matches!(s, raft_grpc_transport::pool::SlotState::Ready { .. }))
            .count();
        assert_eq!(ready, 2, "control and one replication connection: {peer:?}");

        // A peer that refuses connections.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        assert!(client.append_entries(&closed, heartbeat()).await.is_err());
        let stats = client.stats();
        let refused = stats.iter().find(|p| p.peer == closed).expect("listed");
        assert_eq!(refused.connections.failures, 1, "{refused:?}");
        assert!(refused.connections.last_error.is_some(), "{refused:?}");
        assert_eq!((refused.bytes_sent, refused.bytes_received), (0, 0));

        // Removed, the peer is forgotten once its connections closed.
        client.remove_peer(&closed);
        assert!(client.stats().iter().all(|p| p.peer != closed));
        client.close().await;
        server.close().await;
    });
}
