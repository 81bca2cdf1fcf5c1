//! A real hashicorp/raft cluster whose every RPC crosses our Rust relay
//! (`adapters/tower/examples/relay.rs`: our gRPC server in, our gRPC client
//! out).
//!
//! The Go program `go/cmd/cluster` runs four hashicorp/raft nodes on the
//! grpc-go interop transport (`go/transport`). Node i listens on its own
//! port P_i and advertises the relay's route R_i → P_i, and its dialer
//! refuses every address but the R_i, so nodes reach each other only through
//! the relay. The program plays the scenario and checks it (see its file
//! doc): election with pre-vote, 10,000 commands with identical FSMs, a
//! fourth voter caught up by InstallSnapshot whose membership comes from the
//! snapshot's configuration (so `snapshot_version` must cross the relay),
//! leadership transfer by TimeoutNow, and a follower restart. This test
//! builds both programs, starts the relay, runs the cluster and checks each
//! step's JSON line.
//!
//! A second run hosts the relay's listening side on tonic's server (the
//! relay's `--mount tonic`: our Raft service mounted through
//! `raft-grpc-transport-tower`), the rest the same.
//!
//! The last test is the control: with the Go side leaving out the fields
//! the Go library lacks (`-legacy-fields`), the same run must fail at the
//! membership check, which shows the check can see a lost
//! `snapshot_version`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raft_grpc_interop::{
    Finished, Program, build_example, build_go_program, free_loopback_addrs, go_available,
    run_with_deadline,
};

/// The cluster program's own overall deadline, and ours (a bit later: the
/// program reports its timeout itself).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(90);
const KILL_AFTER: Duration = Duration::from_secs(110);

/// The steps `go/cmd/cluster` prints, in order, on a successful run.
const STEPS: [&str; 10] = [
    "config", "elect", "apply", "compact", "join", "transfer", "restart", "pre_vote", "rpcs",
    "done",
];

/// Both tests load the machine (two vCPUs in CI): one cluster at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The relay and the cluster program, built once per test process.
fn binaries() -> (PathBuf, PathBuf) {
    static BUILT: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .get_or_insert_with(|| {
            let start = Instant::now();
            let relay = build_example("raft-grpc-transport-tower", "relay");
            let cluster = build_go_program("cluster");
            eprintln!("built relay and cluster in {:?}", start.elapsed());
            (relay, cluster)
        })
        .clone()
}

/// Starts the relay with one route per node, `127.0.0.1:0 → node`, and
/// `relay_extra` options; returns it with the bound route addresses, in the
/// nodes' order.
fn start_relay(
    relay: &PathBuf,
    nodes: &[SocketAddr],
    relay_extra: &[&str],
) -> (Program, Vec<String>) {
    let mut command = Command::new(relay);
    for node in nodes {
        command.arg("--route").arg(format!("127.0.0.1:0={node}"));
    }
    command.args(relay_extra);
    // Forwarded calls give up no later than the Go transport's 5 s.
    command.args(["--rpc-timeout", "5"]);
    let mut program = Program::spawn(&mut command);
    let mut routes = vec![String::new(); nodes.len()];
    for _ in nodes {
        let line = program
            .line()
            .expect("the relay ended before printing its routes");
        // "relay LISTEN -> TARGET"
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.len() == 4 && parts[0] == "relay" && parts[2] == "->",
            "unexpected relay line {line:?}"
        );
        let index = nodes
            .iter()
            .position(|node| node.to_string() == parts[3])
            .unwrap_or_else(|| panic!("relay line {line:?} names no node's address"));
        routes[index] = parts[1].to_owned();
    }
    (program, routes)
}

/// Builds everything, starts a relay for four nodes (with `relay_extra`
/// options) and runs the cluster program with `extra` flags; returns how it
/// ended.
fn run_cluster(relay_extra: &[&str], extra: &[&str]) -> Finished {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (relay, cluster) = binaries();
    let nodes = free_loopback_addrs(4);
    let (_relay, routes) = start_relay(&relay, &nodes, relay_extra);
    let listen: Vec<String> = nodes.iter().map(SocketAddr::to_string).collect();
    let finished = run_with_deadline(
        Command::new(&cluster)
            .arg("-listen")
            .arg(listen.join(","))
            .arg("-advertise")
            .arg(routes.join(","))
            .arg("-timeout")
            .arg(format!("{}s", CLUSTER_TIMEOUT.as_secs()))
            .args(extra),
        KILL_AFTER,
    );
    eprintln!(
        "cluster {} through relay routes {routes:?} -> {listen:?}: {:?} after {:?}\n{}",
        extra.join(" "),
        finished.status,
        finished.elapsed,
        finished.stdout
    );
    finished
}

/// The JSON line of `step`, if printed. Go's encoder sorts keys and
/// escapes nothing here, so plain substrings identify fields.
fn step_line<'a>(finished: &'a Finished, step: &str) -> Option<&'a str> {
    let key = format!("\"step\":\"{step}\"");
    finished.stdout.lines().find(|line| line.contains(&key))
}

fn explain(finished: &Finished) -> String {
    format!(
        "status {:?} after {:?}\n--- stdout\n{}--- stderr (last 60 lines)\n{}",
        finished.status,
        finished.elapsed,
        finished.stdout,
        tail(&finished.stderr, 60)
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn interop_hashicorp_cluster_through_rust_relay() {
    if !go_available("interop_hashicorp_cluster_through_rust_relay") {
        return;
    }
    cluster_passes_every_step(&[]);
}

#[test]
fn interop_hashicorp_cluster_through_rust_relay_mounted_on_tonic() {
    if !go_available("interop_hashicorp_cluster_through_rust_relay_mounted_on_tonic") {
        return;
    }
    cluster_passes_every_step(&["--mount", "tonic"]);
}

/// The whole scenario through a relay started with `relay_extra`: every
/// step passes, the nodes advertise the relay, pre-vote is seen.
fn cluster_passes_every_step(relay_extra: &[&str]) {
    let finished = run_cluster(relay_extra, &[]);
    assert!(
        finished.success(),
        "the cluster scenario failed: {}",
        explain(&finished)
    );
    for step in STEPS {
        let line = step_line(&finished, step)
            .unwrap_or_else(|| panic!("no line for step {step}: {}", explain(&finished)));
        assert!(
            line.contains("\"ok\":true"),
            "step {step} failed: {line}\n{}",
            explain(&finished)
        );
    }
    let config = step_line(&finished, "config").unwrap_or_default();
    assert!(
        config.contains("\"mode\":\"relay\""),
        "the nodes did not advertise relay addresses: {config}"
    );
    let pre_vote = step_line(&finished, "pre_vote").unwrap_or_default();
    assert!(
        pre_vote.contains("\"observed\":true"),
        "pre-vote was not observed: {pre_vote}"
    );
}

#[test]
fn interop_hashicorp_cluster_through_rust_relay_control_without_snapshot_version() {
    if !go_available(
        "interop_hashicorp_cluster_through_rust_relay_control_without_snapshot_version",
    ) {
        return;
    }
    let finished = run_cluster(&[], &["-legacy-fields"]);
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(1),
        "without snapshot_version the run must fail a step (exit 1): {}",
        explain(&finished)
    );
    for step in ["elect", "apply", "compact"] {
        let line = step_line(&finished, step).unwrap_or_default();
        assert!(
            line.contains("\"ok\":true"),
            "step {step} should pass without the added fields: {line}\n{}",
            explain(&finished)
        );
    }
    let join = step_line(&finished, "join").unwrap_or_default();
    assert!(
        join.contains("\"ok\":false") && join.contains("snapshot_version did not arrive"),
        "the join step should fail on n4's membership: {join}\n{}",
        explain(&finished)
    );
}
