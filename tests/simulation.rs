//! Deterministic simulation of Raft nodes on virtual time: the core's
//! client and server endpoints wired through an in-memory HTTP/2
//! model with latency, bandwidth, flow control, resets, GOAWAY, refused
//! connects and lost connections (see `sim/mod.rs`).
//!
//! Checked: every call completes exactly once; pipeline completions come in
//! send order, exactly once; snapshot bytes arrive intact or the install
//! fails; a heartbeat never shares a connection with a snapshot; reconnect
//! backoff follows its schedule; and all of it under random schedules of
//! calls and faults (quickcheck).

mod sim;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use raft_grpc_transport::client::{CallId, ClientConfig, OutgoingRpc};
use raft_grpc_transport::message::*;
use raft_grpc_transport::pool::{Backoff, PoolConfig};
use raft_grpc_transport::{Code, Status};
use sim::{Sim, SimConfig, addr};

fn header(node: usize) -> RpcHeader {
    RpcHeader::new(3, format!("id{node}"), addr(node))
}

fn heartbeat(from: usize, term: u64) -> OutgoingRpc {
    OutgoingRpc::AppendEntries(AppendEntriesRequest {
        header: header(from),
        term,
        ..Default::default()
    })
}

fn append(from: usize, index: u64, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(from),
        term: 3,
        prev_log_entry: index - 1,
        prev_log_term: 3,
        entries: vec![Log::command(index, 3, vec![index as u8; size])],
        leader_commit_index: index - 1,
        ..Default::default()
    }
}

fn snapshot_data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn snapshot_meta(from: usize, size: usize) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: header(from),
        snapshot_version: 1,
        term: 3,
        last_log_index: 100,
        last_log_term: 3,
        configuration: Bytes::from_static(b"config"),
        configuration_index: 90,
        size: size as u64,
        ..Default::default()
    }
}

/// Every started call completed exactly once.
fn assert_completed_once(sim: &Sim, node: usize, started: &[CallId]) {
    let mut counts: HashMap<CallId, usize> = HashMap::new();
    for (call, _, _) in &sim.nodes[node].log.completed {
        *counts.entry(*call).or_default() += 1;
    }
    for call in started {
        assert_eq!(
            counts.get(call),
            Some(&1),
            "call {call:?} completed {:?} times",
            counts.get(call)
        );
    }
    assert_eq!(counts.len(), started.len(), "unexpected completions");
}

fn result_of(sim: &Sim, node: usize, call: CallId) -> &Result<RaftResponse, Status> {
    &sim.nodes[node]
        .log
        .completed
        .iter()
        .find(|(c, _, _)| *c == call)
        .expect("completed")
        .1
}

/// Pipeline completions per pipeline: in send order, each exactly once.
fn assert_pipeline_order(sim: &Sim, node: usize, pipeline: CallId, sent: u64) {
    let seqs: Vec<u64> = sim.nodes[node]
        .log
        .appended
        .iter()
        .filter(|(p, _, _)| *p == pipeline)
        .map(|(_, seq, _)| *seq)
        .collect();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>(), "pipeline {pipeline:?}");
}

#[test]
fn every_rpc_kind_round_trips() {
    let mut sim = Sim::new(2, SimConfig::default());
    let mut started = Vec::new();
    let ae = sim.rpc(0, 1, OutgoingRpc::AppendEntries(append(0, 5, 100)));
    let hb = sim.rpc(0, 1, heartbeat(0, 3));
    let vote = sim.rpc(
        0,
        1,
        OutgoingRpc::RequestVote(RequestVoteRequest {
            header: header(0),
            term: 4,
            ..Default::default()
        }),
    );
    let pre = sim.rpc(
        0,
        1,
        OutgoingRpc::RequestPreVote(RequestPreVoteRequest {
            header: header(0),
            term: 5,
            ..Default::default()
        }),
    );
    let tn = sim.rpc(
        0,
        1,
        OutgoingRpc::TimeoutNow(TimeoutNowRequest { header: header(0) }),
    );
    let data = snapshot_data(3 << 20, 1);
    let snap = sim.snapshot(0, 1, snapshot_meta(0, data.len()), data.clone(), 100_000);
    started.extend([ae, hb, vote, pre, tn, snap]);
    let pipe = sim.pipeline(0, 1);
    let mut sent = 0;
    for i in 1..=200u64 {
        while sim.append(0, pipe, &append(0, i, 64)).is_none() {
            sim.run_for(Duration::from_millis(1));
        }
        sent += 1;
    }
    sim.run_until_quiet(Duration::from_secs(30));

    assert_completed_once(&sim, 0, &started);
    assert!(
        matches!(result_of(&sim, 0, ae), Ok(RaftResponse::AppendEntries(r)) if r.success && r.term == 3 && r.last_log == 5)
    );
    assert!(matches!(result_of(&sim, 0, hb), Ok(RaftResponse::AppendEntries(r)) if r.success));
    assert!(
        matches!(result_of(&sim, 0, vote), Ok(RaftResponse::RequestVote(r)) if r.granted && r.term == 4)
    );
    assert!(
        matches!(result_of(&sim, 0, pre), Ok(RaftResponse::RequestPreVote(r)) if r.granted && r.term == 5)
    );
    assert!(matches!(
        result_of(&sim, 0, tn),
        Ok(RaftResponse::TimeoutNow(_))
    ));
    assert!(matches!(result_of(&sim, 0, snap), Ok(RaftResponse::InstallSnapshot(r)) if r.success));
    let installs = &sim.nodes[1].log.installs;
    assert_eq!(installs.len(), 1);
    assert_eq!(installs[0].0, snapshot_meta(0, data.len()));
    assert!(installs[0].1 == data[..], "snapshot bytes differ");
    assert_eq!(sim.nodes[1].log.heartbeats_answered, 1);
    let progress: Vec<u64> = sim.nodes[0]
        .log
        .progress
        .iter()
        .filter(|(c, _, _)| *c == snap)
        .map(|(_, b, _)| *b)
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress only grows"
    );
    assert_eq!(progress.last(), Some(&(data.len() as u64)));

    assert_pipeline_order(&sim, 0, pipe, sent);
    for (_, seq, result) in &sim.nodes[0].log.appended {
        let response = result.as_ref().expect("pipeline append succeeds");
        assert_eq!(response.last_log, seq + 1);
    }
}

#[test]
fn heartbeats_never_share_a_connection_with_a_snapshot() {
    let config = SimConfig {
        latency: Duration::from_millis(1),
        bandwidth: 50e6,
        snapshot_read_rate: Some(20e6),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    let data = snapshot_data(16 << 20, 7);
    let snap = sim.snapshot(0, 1, snapshot_meta(0, data.len()), data.clone(), 256 * 1024);
    let mut heartbeats = Vec::new();
    for _ in 0..100 {
        heartbeats.push(sim.rpc(0, 1, heartbeat(0, 3)));
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_until_quiet(Duration::from_secs(60));

    let mut all = heartbeats.clone();
    all.push(snap);
    assert_completed_once(&sim, 0, &all);
    assert!(matches!(result_of(&sim, 0, snap), Ok(RaftResponse::InstallSnapshot(r)) if r.success));
    assert!(sim.nodes[1].log.installs[0].1 == data[..]);

    let log = &sim.nodes[0].log;
    let conn_of: HashMap<CallId, _> = log
        .opened
        .iter()
        .map(|(c, conn, t)| (*c, (*conn, *t)))
        .collect();
    let snapshot_conn = conn_of[&snap].0;
    let started_at: HashMap<CallId, Duration> =
        log.opened.iter().map(|(c, _, t)| (*c, *t)).collect();
    let mut worst = Duration::ZERO;
    for hb in &heartbeats {
        assert_ne!(
            conn_of[hb].0, snapshot_conn,
            "a heartbeat rode on the snapshot's connection"
        );
        let done = log.completed.iter().find(|(c, _, _)| c == hb).unwrap().2;
        worst = worst.max(done - started_at[hb]);
    }
    // The snapshot takes about a second; a heartbeat a round trip.
    assert!(
        worst < Duration::from_millis(5),
        "worst heartbeat latency {worst:?}"
    );
}

#[test]
fn backoff_follows_its_schedule_and_calls_fail_fast() {
    let backoff = Backoff::default();
    let config = SimConfig {
        latency: Duration::from_micros(100),
        client: ClientConfig::default().with_pool(PoolConfig::default().with_slots_per_peer(1)),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    sim.refuse_until.insert(1, Duration::from_secs(3));
    let mut calls = Vec::new();
    let step = Duration::from_millis(5);
    while sim.now < Duration::from_secs(4) {
        calls.push(sim.rpc(
            0,
            1,
            OutgoingRpc::RequestVote(RequestVoteRequest::default()),
        ));
        sim.run_for(step);
    }
    sim.run_until_quiet(Duration::from_secs(15));
    assert_completed_once(&sim, 0, &calls);

    let connects: Vec<Duration> = sim.nodes[0].log.connects.iter().map(|(t, _)| *t).collect();
    // Failures until 3 s, then one success.
    let failures = connects
        .iter()
        .filter(|t| **t < Duration::from_secs(3))
        .count();
    assert!(failures >= 5, "{connects:?}");
    for (i, pair) in connects.windows(2).take(failures - 1).enumerate() {
        let gap = pair[1] - pair[0];
        let base = backoff.base_delay(i as u32 + 1);
        let slack = step + Duration::from_micros(200);
        assert!(
            gap >= base.mul_f64(0.8),
            "gap {i}: {gap:?} < 0.8 × {base:?}"
        );
        assert!(
            gap <= base.mul_f64(1.2) + slack,
            "gap {i}: {gap:?} > 1.2 × {base:?}"
        );
    }
    // Calls made during a backoff failed at once with UNAVAILABLE.
    let log = &sim.nodes[0].log;
    let fast_failures = log
        .completed
        .iter()
        .filter(|(_, r, t)| {
            matches!(r, Err(s) if s.code() == Code::Unavailable) && *t < Duration::from_secs(3)
        })
        .count();
    assert!(fast_failures > 400, "{fast_failures} calls failed fast");
    assert!(
        log.completed.iter().any(|(_, r, _)| r.is_ok()),
        "calls succeed once the peer is back"
    );
}

#[test]
fn peer_restart_mid_pipeline_and_mid_snapshot() {
    let config = SimConfig {
        latency: Duration::from_millis(1),
        bandwidth: 100e6,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    let data = snapshot_data(8 << 20, 3);
    let snap = sim.snapshot(0, 1, snapshot_meta(0, data.len()), data.clone(), 64 * 1024);
    let pipe = sim.pipeline(0, 1);
    let mut sent = 0;
    for i in 1..=50u64 {
        if sim.append(0, pipe, &append(0, i, 1024)).is_some() {
            sent += 1;
        }
    }
    sim.run_for(Duration::from_millis(20));
    // The peer restarts: connections die, and it refuses for a moment.
    sim.kill_connections(0, 1);
    sim.refuse_until
        .insert(1, sim.now + Duration::from_millis(50));
    sim.run_until_quiet(Duration::from_secs(30));

    assert_completed_once(&sim, 0, &[snap]);
    match result_of(&sim, 0, snap) {
        Ok(RaftResponse::InstallSnapshot(r)) => {
            assert!(r.success);
            assert!(sim.nodes[1].log.installs[0].1 == data[..]);
        }
        Ok(other) => panic!("{other:?}"),
        Err(status) => assert_eq!(status.code(), Code::Unavailable),
    }
    assert!(
        sim.nodes[1]
            .log
            .installs
            .iter()
            .all(|(_, bytes, ok)| !ok || bytes[..] == data[..])
    );
    assert_pipeline_order(&sim, 0, pipe, sent);
    assert_eq!(sim.nodes[0].log.pipelines_closed.len(), 1);

    // The next call reconnects.
    sim.run_for(Duration::from_millis(100));
    let call = sim.rpc(0, 1, heartbeat(0, 4));
    sim.run_until_quiet(Duration::from_secs(5));
    assert!(result_of(&sim, 0, call).is_ok());
}

#[test]
fn goaway_refuses_new_streams_and_the_next_call_reconnects() {
    let mut sim = Sim::new(2, SimConfig::default());
    let first = sim.rpc(0, 1, heartbeat(0, 1));
    sim.run_until_quiet(Duration::from_secs(1));
    assert!(result_of(&sim, 0, first).is_ok());
    sim.goaway(0, 1);
    // Sent before the GOAWAY arrives: refused, UNAVAILABLE.
    let racing = sim.rpc(0, 1, heartbeat(0, 2));
    sim.run_until_quiet(Duration::from_secs(1));
    let after = sim.rpc(0, 1, heartbeat(0, 3));
    sim.run_until_quiet(Duration::from_secs(1));
    assert_completed_once(&sim, 0, &[first, racing, after]);
    assert!(matches!(result_of(&sim, 0, racing), Err(s) if s.code() == Code::Unavailable));
    assert!(result_of(&sim, 0, after).is_ok());
    assert_eq!(
        sim.nodes[0].log.connects.len(),
        2,
        "a new connection after GOAWAY"
    );
}

#[test]
fn deadline_exceeded_on_both_sides() {
    let config = SimConfig {
        consumer_delay: Duration::from_secs(60),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    let blocker = sim.rpc(
        0,
        1,
        OutgoingRpc::RequestVote(RequestVoteRequest::default()),
    );
    let waiting = sim.rpc(
        0,
        1,
        OutgoingRpc::RequestVote(RequestVoteRequest::default()),
    );
    sim.run_until_quiet(Duration::from_secs(120));
    assert_completed_once(&sim, 0, &[blocker, waiting]);
    let (_, result, at) = sim.nodes[0]
        .log
        .completed
        .iter()
        .find(|(c, _, _)| *c == waiting)
        .unwrap();
    assert!(
        matches!(result, Err(s) if s.code() == Code::DeadlineExceeded),
        "{result:?}"
    );
    assert!(
        *at >= Duration::from_secs(10) && *at < Duration::from_millis(10_100),
        "{at:?}"
    );
    // The server learns it too (from the client's reset, or its own copy
    // of the deadline) while the request still waits in the consumer
    // queue: it is dropped there, never delivered late.
    assert_eq!(sim.nodes[1].log.delivered.len(), 1, "only the blocker");
    assert_eq!(sim.nodes[1].server.queued_rpcs(), 0);
}

#[test]
fn slow_receiver_bounds_what_is_buffered() {
    let config = SimConfig {
        snapshot_read_rate: Some(4e6),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    let data = snapshot_data(4 << 20, 9);
    let snap = sim.snapshot(0, 1, snapshot_meta(0, data.len()), data.clone(), 1 << 20);
    let mut worst_queued = 0;
    while sim.now < Duration::from_secs(5) {
        worst_queued = worst_queued.max(sim.nodes[0].client.send_wanted(snap));
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_until_quiet(Duration::from_secs(30));
    assert!(matches!(result_of(&sim, 0, snap), Ok(RaftResponse::InstallSnapshot(r)) if r.success));
    assert!(sim.nodes[1].log.installs[0].1 == data[..]);
    // The sender never holds more than two chunks (1 MiB each) plus a read.
    assert!(worst_queued <= 3 << 20, "{worst_queued} bytes queued");
}

#[test]
fn oversized_request_fails_without_a_stream() {
    let mut sim = Sim::new(2, SimConfig::default());
    let call = sim.rpc(0, 1, OutgoingRpc::AppendEntries(append(0, 1, 5 << 20)));
    sim.run_until_quiet(Duration::from_secs(1));
    assert!(matches!(result_of(&sim, 0, call), Err(s) if s.code() == Code::ResourceExhausted));
    assert!(sim.nodes[0].log.opened.is_empty());
}

#[test]
fn close_fails_everything_once() {
    let config = SimConfig {
        consumer_delay: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(2, config);
    let calls: Vec<CallId> = (0..5)
        .map(|_| sim.rpc(0, 1, OutgoingRpc::TimeoutNow(TimeoutNowRequest::default())))
        .collect();
    let pipe = sim.pipeline(0, 1);
    let sent = (1..=10u64)
        .filter(|i| sim.append(0, pipe, &append(0, *i, 10)).is_some())
        .count() as u64;
    sim.run_for(Duration::from_millis(5));
    let now = sim.instant();
    sim.nodes[0].client.close(now);
    sim.nodes[0].client.close(now);
    let late = sim.rpc(0, 1, heartbeat(0, 1));
    sim.run_until_quiet(Duration::from_secs(5));
    let mut all = calls.clone();
    all.push(late);
    assert_completed_once(&sim, 0, &all);
    assert_pipeline_order(&sim, 0, pipe, sent);
    for call in all {
        assert!(matches!(result_of(&sim, 0, call), Err(s) if s.code() == Code::Unavailable));
    }
}

// ---- random schedules ----

#[derive(Debug, Clone)]
enum Op {
    Rpc { from: usize, to: usize, kind: u8 },
    Snapshot { from: usize, to: usize, len: usize },
    Append { from: usize, to: usize, count: u8 },
    ClosePipeline { from: usize, to: usize },
    Kill { a: usize, b: usize },
    GoAway { client: usize, server: usize },
    Reset { client: usize, server: usize },
    Refuse { node: usize, ms: u16 },
    Wait { ms: u16 },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let node = |g: &mut Gen| usize::arbitrary(g) % 3;
        let pair = |g: &mut Gen| {
            let a = node(g);
            (a, (a + 1 + usize::arbitrary(g) % 2) % 3)
        };
        match u8::arbitrary(g) % 12 {
            0..=2 => {
                let (from, to) = pair(g);
                Op::Rpc {
                    from,
                    to,
                    kind: u8::arbitrary(g),
                }
            }
            3 => {
                let (from, to) = pair(g);
                Op::Snapshot {
                    from,
                    to,
                    len: usize::arbitrary(g) % 300_000,
                }
            }
            4 | 5 => {
                let (from, to) = pair(g);
                Op::Append {
                    from,
                    to,
                    count: u8::arbitrary(g) % 20,
                }
            }
            6 => {
                let (from, to) = pair(g);
                Op::ClosePipeline { from, to }
            }
            7 => {
                let (a, b) = pair(g);
                Op::Kill { a, b }
            }
            8 => {
                let (client, server) = pair(g);
                Op::GoAway { client, server }
            }
            9 => {
                let (client, server) = pair(g);
                Op::Reset { client, server }
            }
            10 => Op::Refuse {
                node: node(g),
                ms: u16::arbitrary(g) % 500,
            },
            _ => Op::Wait {
                ms: u16::arbitrary(g) % 50,
            },
        }
    }
}

fn random_schedule(ops: Vec<Op>, seed: u64) -> TestResult {
    let config = SimConfig {
        latency: Duration::from_micros(300),
        bandwidth: 200e6,
        client: ClientConfig::default()
            .with_pool(PoolConfig::default().with_seed(seed))
            .with_rpc_timeout(Duration::from_secs(2)),
        consumer_delay: Duration::from_micros(200),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(3, config);
    let mut started: Vec<Vec<CallId>> = vec![Vec::new(); 3];
    let mut snapshots: Vec<(usize, CallId, Bytes)> = Vec::new();
    let mut pipelines: HashMap<(usize, usize), CallId> = HashMap::new();
    let mut sent: BTreeMap<(usize, CallId), u64> = BTreeMap::new();
    let mut next_index = 1u64;
    for op in ops {
        match op {
            Op::Rpc { from, to, kind } => {
                let rpc = match kind % 5 {
                    0 => heartbeat(from, 2),
                    1 => OutgoingRpc::AppendEntries(append(from, 7, usize::from(kind) * 100)),
                    2 => OutgoingRpc::RequestVote(RequestVoteRequest {
                        term: 2,
                        ..Default::default()
                    }),
                    3 => OutgoingRpc::RequestPreVote(RequestPreVoteRequest {
                        term: 2,
                        ..Default::default()
                    }),
                    _ => OutgoingRpc::TimeoutNow(TimeoutNowRequest::default()),
                };
                started[from].push(sim.rpc(from, to, rpc));
            }
            Op::Snapshot { from, to, len } => {
                let data = snapshot_data(len, len as u8);
                let call = sim.snapshot(from, to, snapshot_meta(from, len), data.clone(), 40_000);
                started[from].push(call);
                snapshots.push((from, call, data));
            }
            Op::Append { from, to, count } => {
                let pipe = *pipelines
                    .entry((from, to))
                    .or_insert_with(|| sim.pipeline(from, to));
                for _ in 0..count {
                    if sim
                        .append(from, pipe, &append(from, next_index, 200))
                        .is_some()
                    {
                        *sent.entry((from, pipe)).or_default() += 1;
                    }
                    next_index += 1;
                }
            }
            Op::ClosePipeline { from, to } => {
                if let Some(pipe) = pipelines.remove(&(from, to)) {
                    let now = sim.instant();
                    sim.nodes[from].client.close_pipeline(pipe, now);
                    sim.run_for(Duration::ZERO);
                }
            }
            Op::Kill { a, b } => sim.kill_connections(a, b),
            Op::GoAway { client, server } => sim.goaway(client, server),
            Op::Reset { client, server } => sim.reset_streams(client, server, 0x2),
            Op::Refuse { node, ms } => {
                let until = sim.now + Duration::from_millis(u64::from(ms));
                sim.refuse_until.insert(node, until);
            }
            Op::Wait { ms } => sim.run_for(Duration::from_millis(u64::from(ms))),
        }
    }
    for (from, pipe) in pipelines
        .values()
        .zip(pipelines.keys())
        .map(|(p, (f, _))| (*f, *p))
        .collect::<Vec<_>>()
    {
        let now = sim.instant();
        sim.nodes[from].client.close_pipeline(pipe, now);
    }
    // Everything must be over by the largest deadline (snapshots scale it).
    sim.run_until_quiet(Duration::from_secs(60));

    for (node, calls) in started.iter().enumerate() {
        let mut counts: HashMap<CallId, usize> = HashMap::new();
        for (call, _, _) in &sim.nodes[node].log.completed {
            *counts.entry(*call).or_default() += 1;
        }
        for call in calls {
            if counts.get(call) != Some(&1) {
                return TestResult::error(format!(
                    "node {node}: call {call:?} completed {:?} times",
                    counts.get(call)
                ));
            }
        }
    }
    for ((node, pipe), n) in &sent {
        let seqs: Vec<u64> = sim.nodes[*node]
            .log
            .appended
            .iter()
            .filter(|(p, _, _)| p == pipe)
            .map(|(_, s, _)| *s)
            .collect();
        if seqs != (0..*n).collect::<Vec<_>>() {
            return TestResult::error(format!(
                "pipeline {pipe:?} of node {node}: {seqs:?}, sent {n}"
            ));
        }
    }
    for (from, call, data) in &snapshots {
        if let Some((_, Ok(RaftResponse::InstallSnapshot(r)), _)) = sim.nodes[*from]
            .log
            .completed
            .iter()
            .find(|(c, _, _)| c == call)
        {
            if r.success {
                let intact = sim.nodes.iter().any(|n| {
                    n.log.installs.iter().any(|(m, bytes, ok)| {
                        *ok && m.size == data.len() as u64 && bytes[..] == data[..]
                    })
                });
                if !intact {
                    return TestResult::error(format!(
                        "snapshot {call:?} reported success without intact bytes"
                    ));
                }
            }
        }
    }
    // No server handed the same request to its application twice.
    for (i, node) in sim.nodes.iter().enumerate() {
        let unique: HashSet<_> = node.log.delivered.iter().collect();
        if unique.len() != node.log.delivered.len() {
            return TestResult::error(format!("node {i} delivered a request twice"));
        }
    }
    // No server ever accepted a snapshot whose bytes differ from a source.
    let sources: HashSet<Vec<u8>> = snapshots.iter().map(|(_, _, d)| d.to_vec()).collect();
    for node in &sim.nodes {
        for (_, bytes, ok) in &node.log.installs {
            if *ok && !sources.contains(bytes) {
                return TestResult::error("a server installed bytes no source sent");
            }
        }
    }
    TestResult::passed()
}

/// `SIM_CASES=N` runs N schedules instead of 60 (5,000 pass in about 8 s
/// with `--release`).
#[test]
fn random_schedules_keep_every_promise() {
    QuickCheck::new()
        .tests(
            std::env::var("SIM_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60),
        )
        .max_tests(10_000)
        .quickcheck(random_schedule as fn(Vec<Op>, u64) -> TestResult);
}

/// Seconds a 64 MiB snapshot takes over a 20 ms round trip with a 1 MiB
/// initial stream window, and the window it ends with.
fn snapshot_over_a_long_link(max_window: u32) -> (f64, usize) {
    let mut config = SimConfig {
        latency: Duration::from_millis(10),
        bandwidth: 1e9,
        stream_window: 1 << 20,
        ..SimConfig::default()
    };
    config.server.windows.max_stream = max_window;
    let mut sim = Sim::new(2, config);
    let data = snapshot_data(64 << 20, 5);
    let snap = sim.snapshot(0, 1, snapshot_meta(0, data.len()), data.clone(), 1 << 20);
    sim.run_until_quiet(Duration::from_secs(120));
    let (_, result, at) = sim.nodes[0]
        .log
        .completed
        .iter()
        .find(|(c, _, _)| *c == snap)
        .unwrap();
    assert!(
        matches!(result, Ok(RaftResponse::InstallSnapshot(r)) if r.success),
        "{result:?}"
    );
    assert!(sim.nodes[1].log.installs[0].1 == data[..]);
    (at.as_secs_f64(), sim.window_of(0, 1))
}

#[test]
fn receive_windows_grow_with_the_bandwidth_delay_product() {
    let (fixed, fixed_window) = snapshot_over_a_long_link(1 << 20);
    let (tuned, tuned_window) = snapshot_over_a_long_link(32 << 20);
    println!(
        "64 MiB over 20 ms: {fixed:.2} s with fixed 1 MiB windows, {tuned:.2} s tuned (window {tuned_window})"
    );
    assert_eq!(fixed_window, 1 << 20);
    assert!(tuned_window > 8 << 20, "the window grew to {tuned_window}");
    assert!(tuned_window <= 32 << 20, "the cap holds");
    // One window per round trip is ~50 MB/s: 64 MiB takes > 1.3 s; grown
    // windows carry it in a fraction of that.
    assert!(fixed > 1.2, "{fixed} s with fixed windows");
    assert!(tuned * 4.0 < fixed, "{tuned} s tuned, {fixed} s fixed");
}
