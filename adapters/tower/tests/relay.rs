//! The `relay` example as a process: a Rust client calls through it to Rust
//! servers in this process that record what reaches them.
//!
//! Checked: every RPC kind passes with every field of request and response
//! intact (headers included), on two routes of one relay; a pipeline of
//! 1,000 appends arrives in order on one pipeline stream and its answers
//! come back in order; a 64 MiB snapshot arrives intact, metadata
//! unchanged, without growing the relay's memory by its size; a heartbeat
//! passes while a snapshot is stuck at the target; RPCs run concurrently;
//! a target that is down gives UNAVAILABLE at once for every kind; an error
//! status of the target reaches the caller with its code and message; and
//! usage errors exit 2. The first four and the error status run a second
//! time with the relay's listening side mounted on tonic (`--mount tonic`).
//!
//! The test builds the example itself (once, with the cargo that runs it),
//! because `cargo test --test relay` does not build examples.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_io::Timer;
use bytes::Bytes;
use futures_lite::future::{self, block_on};
use raft_grpc_transport::message::*;
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_smol::{Config, GrpcTransport, Rpc, TransportError};

// ------------------------------------------------------------ the process

mod common;

/// The `relay` example, built once for this test binary.
fn relay_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::build_example("relay"))
}

/// A running relay; killed when the test ends, passing or not.
struct RelayProcess {
    child: Child,
    /// The address of each route, in the order given.
    listen: Vec<String>,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    /// Starts `relay --route 127.0.0.1:0=TARGET …` with `extra` options and
    /// reads its `relay LISTEN -> TARGET` lines.
    fn start(targets: &[&str], extra: &[&str]) -> RelayProcess {
        let mut command = Command::new(relay_binary());
        for target in targets {
            command.args(["--route", &format!("127.0.0.1:0={target}")]);
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start `relay`");
        let mut relay = RelayProcess {
            child,
            listen: Vec::new(),
        };
        let mut stdout = BufReader::new(relay.child.stdout.take().expect("piped stdout"));
        for target in targets {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read `relay`'s output");
            let (listen, to) = line
                .trim_end()
                .strip_prefix("relay ")
                .and_then(|rest| rest.split_once(" -> "))
                .unwrap_or_else(|| panic!("`relay` printed {line:?}"));
            assert_eq!(to, *target, "{line:?}");
            assert!(
                listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
                "port 0 not resolved: {line:?}"
            );
            relay.listen.push(listen.to_owned());
        }
        relay
    }

    /// The relay's peak resident set size so far, in bytes (Linux).
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }
}

// ------------------------------------------------------------- the target

/// What a target does with the RPCs it gets.
#[derive(Clone)]
enum Behaviour {
    /// Answers with [`response_to`].
    Answer,
    /// Fails every RPC with this code and a message naming the RPC.
    Fail(Code),
    /// Answers, but holds a snapshot after its first chunk until the
    /// sender of this channel is dropped.
    HoldSnapshots(async_channel::Receiver<()>),
    /// Answers after a pause.
    Slow(Duration),
}

/// What reached a target.
#[derive(Default)]
struct Seen {
    /// Requests from the consumer queue (unary calls), in arrival order.
    unary: Vec<RaftRequest>,
    /// Each snapshot: its metadata, the bytes received, and whether they
    /// matched [`pattern`].
    snapshots: Vec<(InstallSnapshotRequest, u64, bool)>,
    /// The appends of each pipeline stream, in arrival order.
    pipelines: Vec<Vec<AppendEntriesRequest>>,
}

struct Target {
    transport: GrpcTransport,
    header: RpcHeader,
    seen: Arc<Mutex<Seen>>,
}

impl Target {
    async fn start(id: &str, behaviour: Behaviour) -> Target {
        let transport = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let header = RpcHeader::new(3, id.to_owned(), transport.local_addr().to_owned());
        let seen = Arc::new(Mutex::new(Seen::default()));

        let consumer = transport.consumer();
        let (h, s, b) = (header.clone(), seen.clone(), behaviour.clone());
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                let (h, s, b) = (h.clone(), s.clone(), b.clone());
                smol::spawn(async move { answer(rpc, &h, &s, &b).await }).detach();
            }
        })
        .detach();

        let (h, s, b) = (header.clone(), seen.clone(), behaviour);
        transport.set_pipeline_handler(Some(Arc::new(move |incoming| {
            let (h, s, b) = (h.clone(), s.clone(), b.clone());
            smol::spawn(async move {
                let stream = {
                    let mut seen = s.lock().unwrap();
                    seen.pipelines.push(Vec::new());
                    seen.pipelines.len() - 1
                };
                while let Some(rpc) = incoming.recv().await {
                    if let RaftRequest::AppendEntries(r) = &rpc.request {
                        s.lock().unwrap().pipelines[stream].push(r.clone());
                    }
                    let result = match &b {
                        Behaviour::Fail(code) => Err(failure(*code, &rpc.request)),
                        _ => Ok(response_to(&rpc.request, &h)),
                    };
                    rpc.respond(result);
                }
            })
            .detach();
        })));
        Target {
            transport,
            header,
            seen,
        }
    }

    fn addr(&self) -> &str {
        self.transport.local_addr()
    }
}

/// The status a failing target answers `request` with.
fn failure(code: Code, request: &RaftRequest) -> Status {
    Status::new(code, format!("target refuses {}", kind(request)))
}

fn kind(request: &RaftRequest) -> &'static str {
    match request {
        RaftRequest::AppendEntries(_) => "AppendEntries",
        RaftRequest::RequestVote(_) => "RequestVote",
        RaftRequest::RequestPreVote(_) => "RequestPreVote",
        RaftRequest::TimeoutNow(_) => "TimeoutNow",
        RaftRequest::InstallSnapshot(_) => "InstallSnapshot",
    }
}

async fn answer(rpc: Rpc, header: &RpcHeader, seen: &Mutex<Seen>, behaviour: &Behaviour) {
    let Rpc {
        request,
        responder,
        snapshot,
        ..
    } = rpc;
    if let Behaviour::Fail(code) = behaviour {
        responder.respond(Err(failure(*code, &request)));
        return;
    }
    if let Behaviour::Slow(pause) = behaviour {
        Timer::after(*pause).await;
    }
    let mut response = response_to(&request, header);
    match (&request, snapshot) {
        (RaftRequest::InstallSnapshot(meta), Some(mut data)) => {
            let mut received = 0u64;
            let mut intact = true;
            let mut held = false;
            loop {
                match data.chunk().await {
                    Ok(Some(chunk)) => {
                        intact &= chunk
                            .iter()
                            .zip(received..)
                            .all(|(byte, i)| *byte == pattern(i));
                        received += chunk.len() as u64;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        intact = false;
                        break;
                    }
                }
                if let (Behaviour::HoldSnapshots(gate), false) = (behaviour, held) {
                    held = true;
                    let _ = gate.recv().await;
                }
            }
            let success = intact && received == meta.size;
            seen.lock()
                .unwrap()
                .snapshots
                .push((meta.clone(), received, success));
            if let RaftResponse::InstallSnapshot(r) = &mut response {
                r.success = success;
            }
        }
        _ => seen.lock().unwrap().unary.push(request),
    }
    responder.respond(Ok(response));
}

/// The answer of a target: every field set, none equal to its default, and
/// derived from the request so that a mixed-up answer shows.
fn response_to(request: &RaftRequest, header: &RpcHeader) -> RaftResponse {
    let header = header.clone();
    match request {
        RaftRequest::AppendEntries(r) => RaftResponse::AppendEntries(AppendEntriesResponse {
            header,
            term: r.term + 100,
            last_log: r.entries.last().map_or(r.prev_log_entry, |e| e.index),
            success: true,
            no_retry_backoff: true,
        }),
        RaftRequest::RequestVote(r) => RaftResponse::RequestVote(RequestVoteResponse {
            header,
            term: r.term + 100,
            peers: Bytes::from(format!("peers of {}", r.last_log_index)),
            granted: true,
        }),
        RaftRequest::RequestPreVote(r) => RaftResponse::RequestPreVote(RequestPreVoteResponse {
            header,
            term: r.term + 100,
            granted: true,
        }),
        RaftRequest::TimeoutNow(_) => RaftResponse::TimeoutNow(TimeoutNowResponse { header }),
        RaftRequest::InstallSnapshot(meta) => {
            RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                header,
                term: meta.term + 100,
                success: true,
            })
        }
    }
}

// ------------------------------------------------------------- the client

fn client() -> GrpcTransport {
    GrpcTransport::builder("client", Config::default()).build()
}

/// The caller's header: the leader's own ID and address, which must reach
/// the target unchanged (hashicorp/raft takes the leader from it).
fn leader_header() -> RpcHeader {
    RpcHeader::new(3, "leader-7", "10.1.2.3:7000")
}

/// An AppendEntries with every field set.
fn full_append(index: u64) -> AppendEntriesRequest {
    let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + index);
    AppendEntriesRequest {
        header: leader_header(),
        term: 7,
        prev_log_entry: index - 1,
        prev_log_term: 6,
        entries: vec![Log {
            index,
            term: 7,
            log_type: LogType::Configuration,
            data: Bytes::from(format!("entry {index}")),
            extensions: Bytes::from_static(b"ext"),
            appended_at: Some(at),
        }],
        leader_commit_index: index.saturating_sub(2),
        leader: Bytes::from_static(b"10.1.2.3:7000"),
    }
}

/// A heartbeat, as hashicorp/raft sends it.
fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: leader_header(),
        term: 7,
        ..Default::default()
    }
}

fn full_vote() -> RequestVoteRequest {
    RequestVoteRequest {
        header: leader_header(),
        term: 8,
        last_log_index: 41,
        last_log_term: 7,
        leadership_transfer: true,
        candidate: Bytes::from_static(b"10.1.2.3:7000"),
    }
}

fn full_pre_vote() -> RequestPreVoteRequest {
    RequestPreVoteRequest {
        header: leader_header(),
        term: 9,
        last_log_index: 42,
        last_log_term: 8,
    }
}

fn full_snapshot_meta(size: u64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: leader_header(),
        snapshot_version: 1,
        term: 10,
        leader: Bytes::from_static(b"10.1.2.3:7000"),
        last_log_index: 500,
        last_log_term: 9,
        peers: Bytes::from_static(b"legacy peers"),
        configuration: Bytes::from_static(b"\x0a\x05voter"),
        configuration_index: 450,
        size,
    }
}

/// Byte `i` of every snapshot: position-dependent, so that a lost,
/// repeated or reordered chunk shows.
fn pattern(i: u64) -> u8 {
    let x = (i / 8 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> ((i % 8) * 8)) as u8 ^ (x >> 56) as u8
}

/// `size` bytes of [`pattern`], generated as they are read.
struct PatternReader {
    next: u64,
    size: u64,
}

impl futures_lite::AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min((self.size - self.next) as usize);
        for (byte, i) in buf[..n].iter_mut().zip(self.next..) {
            *byte = pattern(i);
        }
        self.next += n as u64;
        Poll::Ready(Ok(n))
    }
}

fn snapshot_data(size: u64) -> PatternReader {
    PatternReader { next: 0, size }
}

/// Fails the test if `f` takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    let late = async {
        Timer::after(limit).await;
        None
    };
    future::or(async { Some(f.await) }, late)
        .await
        .unwrap_or_else(|| panic!("{what} took longer than {limit:?}"))
}

// ------------------------------------------------------------------ tests

#[test]
fn every_rpc_kind_passes_with_every_field_intact_on_two_routes() {
    every_rpc_kind_passes_with_every_field_intact_on_two_routes_with(&[]);
}

#[test]
fn every_rpc_kind_passes_with_every_field_intact_on_two_routes_mounted_on_tonic() {
    every_rpc_kind_passes_with_every_field_intact_on_two_routes_with(&["--mount", "tonic"]);
}

fn every_rpc_kind_passes_with_every_field_intact_on_two_routes_with(mount: &[&str]) {
    block_on(async {
        let a = Target::start("target-a", Behaviour::Answer).await;
        let b = Target::start("target-b", Behaviour::Answer).await;
        let relay = RelayProcess::start(&[a.addr(), b.addr()], mount);
        let client = client();

        for (target, via) in [(&a, &relay.listen[0]), (&b, &relay.listen[1])] {
            let append = full_append(42);
            let got = client.append_entries(via, append.clone()).await.unwrap();
            let expected = response_to(&RaftRequest::AppendEntries(append.clone()), &target.header);
            assert_eq!(RaftResponse::AppendEntries(got), expected);

            let got = client.append_entries(via, heartbeat()).await.unwrap();
            let hb = RaftRequest::AppendEntries(heartbeat());
            assert_eq!(
                RaftResponse::AppendEntries(got),
                response_to(&hb, &target.header)
            );

            let vote = full_vote();
            let got = client.request_vote(via, vote.clone()).await.unwrap();
            let expected = response_to(&RaftRequest::RequestVote(vote.clone()), &target.header);
            assert_eq!(RaftResponse::RequestVote(got), expected);

            let pre = full_pre_vote();
            let got = client.request_pre_vote(via, pre.clone()).await.unwrap();
            let expected = response_to(&RaftRequest::RequestPreVote(pre.clone()), &target.header);
            assert_eq!(RaftResponse::RequestPreVote(got), expected);

            let now = TimeoutNowRequest {
                header: leader_header(),
            };
            let got = client.timeout_now(via, now.clone()).await.unwrap();
            assert_eq!(got.header, target.header);

            let size = 3 << 20;
            let meta = full_snapshot_meta(size);
            let got = client
                .install_snapshot(via, meta.clone(), snapshot_data(size))
                .await
                .unwrap();
            let expected = response_to(&RaftRequest::InstallSnapshot(meta.clone()), &target.header);
            assert_eq!(RaftResponse::InstallSnapshot(got), expected);

            let pipeline = client.append_entries_pipeline(via).await.unwrap();
            pipeline.append(&full_append(43)).await.unwrap();
            let (_, got) = pipeline.next().await.unwrap();
            let expected =
                response_to(&RaftRequest::AppendEntries(full_append(43)), &target.header);
            assert_eq!(RaftResponse::AppendEntries(got.unwrap()), expected);
            drop(pipeline);

            // What reached the target is what the client sent, header and
            // all, and nothing else.
            let seen = target.seen.lock().unwrap();
            assert_eq!(
                seen.unary,
                [
                    RaftRequest::AppendEntries(append),
                    hb,
                    RaftRequest::RequestVote(vote),
                    RaftRequest::RequestPreVote(pre),
                    RaftRequest::TimeoutNow(now),
                ]
            );
            assert_eq!(seen.snapshots, [(meta, size, true)]);
            assert_eq!(seen.pipelines, [vec![full_append(43)]]);
        }
        client.close().await;
        a.transport.close().await;
        b.transport.close().await;
    });
}

#[test]
fn a_pipeline_of_1000_appends_arrives_in_order_on_one_stream() {
    a_pipeline_of_1000_appends_arrives_in_order_on_one_stream_with(&[]);
}

#[test]
fn a_pipeline_of_1000_appends_arrives_in_order_on_one_stream_mounted_on_tonic() {
    a_pipeline_of_1000_appends_arrives_in_order_on_one_stream_with(&["--mount", "tonic"]);
}

fn a_pipeline_of_1000_appends_arrives_in_order_on_one_stream_with(mount: &[&str]) {
    block_on(async {
        let target = Target::start("target", Behaviour::Answer).await;
        let relay = RelayProcess::start(&[target.addr()], mount);
        let client = client();
        let pipeline = client
            .append_entries_pipeline(&relay.listen[0])
            .await
            .unwrap();
        let count = 1000u64;
        let send = async {
            for i in 1..=count {
                pipeline.append(&full_append(i)).await.unwrap();
            }
        };
        let receive = async {
            for i in 0..count {
                let (seq, result) = pipeline.next().await.unwrap();
                assert_eq!(seq, i);
                let response = result.unwrap();
                assert_eq!(response.last_log, i + 1, "answers out of order");
                assert_eq!(response.header, target.header);
            }
        };
        within(
            Duration::from_secs(60),
            "1,000 appends",
            future::zip(send, receive),
        )
        .await;
        {
            let seen = target.seen.lock().unwrap();
            assert!(seen.unary.is_empty(), "appends left the pipeline");
            assert_eq!(seen.pipelines.len(), 1, "one stream in, one stream out");
            let expected: Vec<_> = (1..=count).map(full_append).collect();
            assert!(seen.pipelines[0] == expected, "appends out of order");
        }
        client.close().await;
        target.transport.close().await;
    });
}

#[test]
fn a_64_mib_snapshot_streams_through_intact_in_bounded_memory() {
    a_64_mib_snapshot_streams_through_intact_in_bounded_memory_with(&[]);
}

#[test]
fn a_64_mib_snapshot_streams_through_intact_in_bounded_memory_mounted_on_tonic() {
    a_64_mib_snapshot_streams_through_intact_in_bounded_memory_with(&["--mount", "tonic"]);
}

fn a_64_mib_snapshot_streams_through_intact_in_bounded_memory_with(mount: &[&str]) {
    block_on(async {
        let target = Target::start("target", Behaviour::Answer).await;
        let relay = RelayProcess::start(&[target.addr()], mount);
        let client = client();
        let via = &relay.listen[0];
        // Warm up the connections, so that the baseline includes them.
        let small = full_snapshot_meta(1 << 20);
        let r = client
            .install_snapshot(via, small, snapshot_data(1 << 20))
            .await
            .unwrap();
        assert!(r.success);

        let before = relay.peak_rss();
        let size = 64 << 20;
        let meta = full_snapshot_meta(size);
        let response = within(
            Duration::from_secs(120),
            "a 64 MiB snapshot",
            client.install_snapshot(via, meta.clone(), snapshot_data(size)),
        )
        .await
        .unwrap();
        assert!(response.success, "the target found the data damaged");
        assert_eq!(response.header, target.header);
        assert_eq!(
            target.seen.lock().unwrap().snapshots.last(),
            Some(&(meta, size, true))
        );
        if let (Some(before), Some(after)) = (before, relay.peak_rss()) {
            let grown = after.saturating_sub(before);
            println!("the relay's peak RSS grew by {} MiB", grown >> 20);
            assert!(grown < 32 << 20, "relay grew by {} MiB", grown >> 20);
        }
        client.close().await;
        target.transport.close().await;
    });
}

#[test]
fn heartbeats_pass_while_a_snapshot_is_stuck_at_the_target() {
    heartbeats_pass_while_a_snapshot_is_stuck_at_the_target_with(&[]);
}

#[test]
fn heartbeats_pass_while_a_snapshot_is_stuck_at_the_target_mounted_on_tonic() {
    heartbeats_pass_while_a_snapshot_is_stuck_at_the_target_with(&["--mount", "tonic"]);
}

fn heartbeats_pass_while_a_snapshot_is_stuck_at_the_target_with(mount: &[&str]) {
    block_on(async {
        let (release, gate) = async_channel::bounded::<()>(1);
        let target = Target::start("target", Behaviour::HoldSnapshots(gate)).await;
        let relay = RelayProcess::start(&[target.addr()], mount);
        let client = client();
        let via = relay.listen[0].clone();
        let size = 32 << 20;
        let snapshot = {
            let client = client.clone();
            let via = via.clone();
            smol::spawn(async move {
                client
                    .install_snapshot(&via, full_snapshot_meta(size), snapshot_data(size))
                    .await
            })
        };
        // Let the snapshot fill every buffer on its way.
        Timer::after(Duration::from_millis(500)).await;
        for _ in 0..5 {
            let r = within(
                Duration::from_secs(2),
                "a heartbeat behind a stuck snapshot",
                client.append_entries(&via, heartbeat()),
            )
            .await
            .unwrap();
            assert_eq!(r.header, target.header);
        }
        assert!(!snapshot.is_finished(), "the snapshot was not held");
        drop(release);
        let r = within(Duration::from_secs(60), "the released snapshot", snapshot)
            .await
            .unwrap();
        assert!(r.success);
        client.close().await;
        target.transport.close().await;
    });
}

#[test]
fn rpcs_are_forwarded_concurrently() {
    block_on(async {
        let pause = Duration::from_millis(300);
        let target = Target::start("target", Behaviour::Slow(pause)).await;
        let relay = RelayProcess::start(&[target.addr()], &[]);
        let client = client();
        let via = &relay.listen[0];
        // Warm up.
        client.request_vote(via, full_vote()).await.unwrap();
        let start = Instant::now();
        let calls = (0..100).map(|_| {
            let client = client.clone();
            let via = via.clone();
            smol::spawn(async move { client.request_vote(&via, full_vote()).await })
        });
        let calls: Vec<_> = calls.collect();
        for call in calls {
            assert!(call.await.unwrap().granted);
        }
        // One at a time would take 30 s.
        let elapsed = start.elapsed();
        assert!(elapsed < pause * 10, "100 votes took {elapsed:?}");
        client.close().await;
        target.transport.close().await;
    });
}

#[test]
fn a_target_that_is_down_gives_unavailable_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = format!("127.0.0.1:{port}");
    let relay = RelayProcess::start(&[&down], &[]);
    block_on(async {
        let client = client();
        let via = &relay.listen[0];
        let check = |what: &str, result: Result<(), TransportError>| {
            let status = result.expect_err(what).status();
            assert_eq!(status.code(), Code::Unavailable, "{what}: {status}");
            assert!(
                status.message().contains(&port.to_string()),
                "{what}: the message does not name the target: {status}"
            );
        };
        let limit = Duration::from_secs(3);
        for _ in 0..2 {
            let r = within(
                limit,
                "AppendEntries",
                client.append_entries(via, full_append(1)),
            )
            .await;
            check("AppendEntries", r.map(drop));
            let r = within(limit, "heartbeat", client.append_entries(via, heartbeat())).await;
            check("heartbeat", r.map(drop));
            let r = within(limit, "RequestVote", client.request_vote(via, full_vote())).await;
            check("RequestVote", r.map(drop));
            let r = within(
                limit,
                "pre-vote",
                client.request_pre_vote(via, full_pre_vote()),
            )
            .await;
            check("RequestPreVote", r.map(drop));
            let now = TimeoutNowRequest {
                header: leader_header(),
            };
            let r = within(limit, "TimeoutNow", client.timeout_now(via, now)).await;
            check("TimeoutNow", r.map(drop));
            let size = 8 << 20;
            let snapshot =
                client.install_snapshot(via, full_snapshot_meta(size), snapshot_data(size));
            let r = within(limit, "InstallSnapshot", snapshot).await;
            check("InstallSnapshot", r.map(drop));
            let pipeline = client.append_entries_pipeline(via).await.unwrap();
            pipeline.append(&full_append(1)).await.unwrap();
            let (_, r) = within(limit, "a pipelined append", pipeline.next())
                .await
                .unwrap();
            check("pipelined AppendEntries", r.map(drop));
        }
        client.close().await;
    });
}

#[test]
fn an_error_status_of_the_target_reaches_the_caller() {
    an_error_status_of_the_target_reaches_the_caller_with(&[]);
}

#[test]
fn an_error_status_of_the_target_reaches_the_caller_mounted_on_tonic() {
    an_error_status_of_the_target_reaches_the_caller_with(&["--mount", "tonic"]);
}

fn an_error_status_of_the_target_reaches_the_caller_with(mount: &[&str]) {
    block_on(async {
        let code = Code::FailedPrecondition;
        let target = Target::start("target", Behaviour::Fail(code)).await;
        let relay = RelayProcess::start(&[target.addr()], mount);
        let client = client();
        let via = &relay.listen[0];
        let check = |what: &str, result: Result<(), TransportError>| {
            let status = result.expect_err(what).status();
            assert_eq!(
                (status.code(), status.message()),
                (code, format!("target refuses {what}").as_str())
            );
        };
        check(
            "AppendEntries",
            client.append_entries(via, full_append(1)).await.map(drop),
        );
        check(
            "RequestVote",
            client.request_vote(via, full_vote()).await.map(drop),
        );
        check(
            "RequestPreVote",
            client
                .request_pre_vote(via, full_pre_vote())
                .await
                .map(drop),
        );
        let now = TimeoutNowRequest {
            header: leader_header(),
        };
        check("TimeoutNow", client.timeout_now(via, now).await.map(drop));
        let size = 4 << 20;
        let snapshot = client.install_snapshot(via, full_snapshot_meta(size), snapshot_data(size));
        check("InstallSnapshot", snapshot.await.map(drop));
        let pipeline = client.append_entries_pipeline(via).await.unwrap();
        pipeline.append(&full_append(1)).await.unwrap();
        let (_, r) = pipeline.next().await.unwrap();
        check("AppendEntries", r.map(drop));
        client.close().await;
        target.transport.close().await;
    });
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--route"],
        &["--route", "127.0.0.1:0"],
        &["--route", "=127.0.0.1:1"],
        &[
            "--route",
            "127.0.0.1:0=127.0.0.1:1",
            "--rpc-timeout",
            "soon",
        ],
        &["--route", "127.0.0.1:0=127.0.0.1:1", "--bogus", "1"],
        &["--route", "127.0.0.1:0=127.0.0.1:1", "--mount", "hyper"],
    ] {
        let output = Command::new(relay_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run `relay`");
        assert_eq!(output.status.code(), Some(2), "relay {}", args.join(" "));
        assert!(output.stdout.is_empty(), "relay {}", args.join(" "));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("usage:"),
            "relay {}",
            args.join(" ")
        );
    }
}
