//! The blocking transport over real loopback sockets, driven from plain
//! threads: the smol adapter's matrix, and blocking and smol nodes talking
//! to each other.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_grpc_transport::Code;
use raft_grpc_transport::message::*;
use raft_grpc_transport_api::TransportError;
use raft_grpc_transport_blocking::{BlockingTransport, Config, PeerInfo};
use raft_grpc_transport_smol::GrpcTransport as SmolTransport;

fn header() -> RpcHeader {
    RpcHeader::new(3, "blocking", "127.0.0.1:0")
}

fn append(index: u64, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(),
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

/// A blocking node answering like `node serve`, on its own thread.
fn serve(config: Config) -> BlockingTransport {
    let server = BlockingTransport::bind("127.0.0.1:0", config).unwrap();
    let consumer = server.consumer();
    let me = RpcHeader::new(3, "server", server.local_addr().to_owned());
    thread::spawn(move || {
        for rpc in consumer {
            rpc.answer_reference(me.clone());
        }
    });
    server
}

fn client(config: Config) -> BlockingTransport {
    BlockingTransport::unbound("client", config, None)
}

#[test]
fn every_rpc_kind() {
    let server = serve(Config::default());
    let client = client(Config::default());
    let target = server.local_addr();
    let r = client.append_entries(target, append(10, 50_000)).unwrap();
    assert!(r.success && r.last_log == 10 && r.header.id == Bytes::from_static(b"server"));
    assert!(
        client
            .request_vote(
                target,
                RequestVoteRequest {
                    term: 4,
                    ..Default::default()
                }
            )
            .unwrap()
            .granted
    );
    assert!(
        client
            .request_pre_vote(
                target,
                RequestPreVoteRequest {
                    term: 5,
                    ..Default::default()
                }
            )
            .unwrap()
            .granted
    );
    client
        .timeout_now(target, TimeoutNowRequest::default())
        .unwrap();
    let size = 5 << 20;
    let snapshot = client
        .install_snapshot(
            target,
            InstallSnapshotRequest {
                term: 6,
                size,
                ..Default::default()
            },
            std::io::repeat(3).take(size),
        )
        .unwrap();
    assert!(snapshot.success && snapshot.term == 6);
    assert_eq!(
        client.decode_peer(&client.encode_peer("x", "10.0.0.9:1")),
        "10.0.0.9:1"
    );
    client.close();
    server.close();
}

#[test]
fn ten_thousand_pipelined_appends_from_two_threads() {
    let server = serve(Config::default());
    let client = client(Config::default());
    let pipeline = Arc::new(client.append_entries_pipeline(server.local_addr()).unwrap());
    let sender = {
        let pipeline = pipeline.clone();
        thread::spawn(move || {
            for i in 1..=10_000u64 {
                assert_eq!(pipeline.append(&append(i, 32)).unwrap(), i - 1);
            }
        })
    };
    for (i, (seq, result)) in pipeline.completions().take(10_000).enumerate() {
        assert_eq!(seq, i as u64);
        assert_eq!(result.unwrap().last_log, i as u64 + 1);
    }
    sender.join().unwrap();
    pipeline.close();
    assert!(pipeline.next_completion().is_none());
    client.close();
    server.close();
}

#[test]
fn blocking_and_smol_nodes_talk_both_ways() {
    // A blocking server, an async client.
    let blocking_server = serve(Config::default());
    let answer = futures_lite::future::block_on(async {
        let client = SmolTransport::builder("async", Config::default()).build();
        let vote = client
            .request_vote(
                blocking_server.local_addr(),
                RequestVoteRequest {
                    term: 8,
                    ..Default::default()
                },
            )
            .await;
        client.close().await;
        vote
    });
    assert!(answer.unwrap().granted);

    // An async server, a blocking client.
    let async_server =
        futures_lite::future::block_on(SmolTransport::bind("127.0.0.1:0", Config::default()))
            .unwrap();
    let consumer = async_server.consumer();
    let me = RpcHeader::new(3, "async-server", async_server.local_addr().to_owned());
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, me.clone()).await;
        }
    })
    .detach();
    let client = client(Config::default());
    let r = client
        .append_entries(async_server.local_addr(), append(4, 100))
        .unwrap();
    assert_eq!(
        (r.last_log, r.header.id.clone()),
        (4, Bytes::from_static(b"async-server"))
    );
    let s = client
        .install_snapshot(
            async_server.local_addr(),
            InstallSnapshotRequest {
                term: 2,
                size: 3 << 20,
                ..Default::default()
            },
            std::io::repeat(1).take(3 << 20),
        )
        .unwrap();
    assert!(s.success);
    client.close();
    blocking_server.close();
    futures_lite::future::block_on(async_server.close());
}

#[test]
fn concurrent_callers_from_many_threads() {
    let server = serve(Config::default());
    let client = client(Config::default().with_pool_size(5));
    let threads: Vec<_> = (1..=16u64)
        .map(|i| {
            let (client, target) = (client.clone(), server.local_addr().to_owned());
            thread::spawn(move || {
                for j in 0..20 {
                    assert!(
                        client
                            .append_entries(&target, append(i * 100 + j, 500))
                            .unwrap()
                            .success
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    client.close();
    server.close();
}

#[test]
fn heartbeat_handler_answers_while_the_consumer_reads_a_slow_snapshot() {
    let server = BlockingTransport::bind("127.0.0.1:0", Config::default()).unwrap();
    server.set_heartbeat_handler(Some(Arc::new(|r: &AppendEntriesRequest, _: &PeerInfo| {
        Ok(AppendEntriesResponse {
            term: r.term,
            success: true,
            ..Default::default()
        })
    })));
    let consumer = server.consumer();
    thread::spawn(move || {
        for mut rpc in consumer {
            let mut reader = rpc.snapshot.take().unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
                thread::sleep(Duration::from_millis(25)); // about 10 MB/s
            }
            assert_eq!(reader.bytes_read(), total);
            rpc.respond(Ok(RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                success: total == reader.size(),
                ..Default::default()
            })));
        }
    });
    let client = client(Config::default());
    let target = server.local_addr().to_owned();
    let snapshot = {
        let (client, target) = (client.clone(), target.clone());
        thread::spawn(move || {
            client.install_snapshot(
                &target,
                InstallSnapshotRequest {
                    size: 8 << 20,
                    ..Default::default()
                },
                std::io::repeat(9).take(8 << 20),
            )
        })
    };
    thread::sleep(Duration::from_millis(100));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        assert!(client.append_entries(&target, heartbeat()).unwrap().success);
        worst = worst.max(start.elapsed());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(snapshot.join().unwrap().unwrap().success);
    assert!(
        worst < Duration::from_millis(100),
        "worst heartbeat {worst:?}"
    );
    client.close();
    server.close();
}

#[test]
fn deadline_oversized_and_closed_server() {
    let server = BlockingTransport::bind("127.0.0.1:0", Config::default()).unwrap();
    let consumer = server.consumer();
    // Holds every RPC without answering.
    let holder = thread::spawn(move || consumer.iter().collect::<Vec<_>>());
    let client = client(Config::default().with_rpc_timeout(Duration::from_millis(300)));
    let target = server.local_addr().to_owned();

    let err = client
        .request_vote(&target, RequestVoteRequest::default())
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let err = client
        .append_entries(&target, append(1, 5 << 20))
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    let pending = {
        let (client, target) = (client.clone(), target.clone());
        thread::spawn(move || client.timeout_now(&target, TimeoutNowRequest::default()))
    };
    thread::sleep(Duration::from_millis(100));
    server.close();
    assert!(pending.join().unwrap().is_err());
    assert!(
        holder.join().unwrap().len() >= 2,
        "the consumer ends when the server closes"
    );
    client.close();
}

#[test]
fn consumer_behaves_like_an_mpsc_receiver() {
    let server = BlockingTransport::bind("127.0.0.1:0", Config::default()).unwrap();
    let consumer = server.consumer();
    assert_eq!(consumer.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(
        consumer
            .recv_timeout(Duration::from_millis(50))
            .unwrap_err(),
        RecvTimeoutError::Timeout
    );
    let client = client(Config::default());
    let target = server.local_addr().to_owned();
    let call = thread::spawn(move || client.timeout_now(&target, TimeoutNowRequest::default()));
    let rpc = consumer.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(rpc.request, RaftRequest::TimeoutNow(_)));
    assert!(rpc.respond(Ok(RaftResponse::TimeoutNow(TimeoutNowResponse::default()))));
    call.join().unwrap().unwrap();
    server.close();
    assert!(consumer.recv().is_err());
    assert_eq!(consumer.try_recv().unwrap_err(), TryRecvError::Disconnected);
    assert_eq!(
        consumer
            .recv_timeout(Duration::from_millis(10))
            .unwrap_err(),
        RecvTimeoutError::Disconnected
    );
}

#[test]
fn garbage_on_the_port_and_a_closed_client() {
    let server = serve(Config::default());
    let mut raw = std::net::TcpStream::connect(server.local_addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = raw.write_all(b"\x16\x03\x01 this is a TLS hello, not HTTP/2");
    let mut buf = [0u8; 64];
    while let Ok(n) = raw.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let client = client(Config::default());
    assert!(
        client
            .append_entries(server.local_addr(), append(1, 10))
            .unwrap()
            .success
    );
    client.close();
    client.close();
    assert_eq!(
        client
            .append_entries(server.local_addr(), append(2, 10))
            .unwrap_err(),
        TransportError::Shutdown
    );
    server.close();
}

#[test]
fn peer_restart_mid_pipeline() {
    let server = serve(Config::default());
    let addr = server.local_addr().to_owned();
    let client = client(Config::default());
    let pipeline = client.append_entries_pipeline(&addr).unwrap();
    for i in 1..=30 {
        pipeline.append(&append(i, 100)).unwrap();
    }
    server.close();
    let seqs: Vec<u64> = pipeline.completions().map(|(seq, _)| seq).collect();
    assert_eq!(
        seqs,
        (0..30).collect::<Vec<_>>(),
        "every append completes once, in order"
    );
    let listener = std::net::TcpListener::bind(&addr).unwrap();
    let again = BlockingTransport::from_listener(listener, Config::default()).unwrap();
    let consumer = again.consumer();
    thread::spawn(move || {
        for rpc in consumer {
            rpc.answer_reference(RpcHeader::default());
        }
    });
    let mut ok = false;
    for _ in 0..50 {
        if client.append_entries(&addr, append(31, 10)).is_ok() {
            ok = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the next call reconnects");
    client.close();
    again.close();
}
