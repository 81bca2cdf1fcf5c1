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
//! The control test: with the Go side leaving out the fields the Go
//! library lacks (`-legacy-fields`), the same run must fail at the
//! membership check, which shows the check can see a lost
//! `snapshot_version`.
//!
//! The v0.1 test runs the scenario on the Go library itself: every node on
//! `github.com/dhiaayachi/raft-grpc-transport` v0.1.0, its real code from
//! the module proxy (`-library v0.1.0`; the program checks the linked
//! module is that version, unreplaced, and prints its checksum), through a
//! relay started with `--wire-profile v0.1` (v0.1.0's field numbering on
//! both its sides), with snapshots padded past 1 MiB so that the snapshot
//! crosses in many of the library's 32 KiB chunks. The steps keep their
//! names; what changes (the program's file doc has the details): v0.1.0 has
//! no RequestPreVote, so `pre_vote` checks that pre-vote was *not* used and
//! the elections ran on RequestVote; it carries no `snapshot_version`, so
//! `join` checks the legacy outcome, n4's servers rebuilt from `peers` with
//! IDs equal to the relay addresses (checked here too), and `transfer`
//! targets one of n1..n3 explicitly; the library dials by itself, so
//! instead of a dialer guard `rpcs` checks that every RPC target was a
//! relay address and that every connection each node accepted came from
//! another process (the relay), and that every heartbeat reached raft
//! through the consumer (v0.1.0 has no heartbeat fast path).

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
/// ended and the relay's route addresses, in the nodes' order.
fn run_cluster(relay_extra: &[&str], extra: &[&str]) -> (Finished, Vec<String>) {
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
    (finished, routes)
}

/// The JSON line of `step`, if printed. Go's encoder sorts keys and
/// escapes nothing here, so plain substrings identify fields.
fn step_line<'a>(finished: &'a Finished, step: &str) -> Option<&'a str> {
    let key = format!("\"step\":\"{step}\"");
    finished.stdout.lines().find(|line| line.contains(&key))
}

/// The program exited 0 and printed every step of [`STEPS`] with
/// `"ok":true`.
fn assert_every_step_passed(finished: &Finished) {
    assert!(
        finished.success(),
        "the cluster scenario failed: {}",
        explain(finished)
    );
    for step in STEPS {
        let line = step_line(finished, step)
            .unwrap_or_else(|| panic!("no line for step {step}: {}", explain(finished)));
        assert!(
            line.contains("\"ok\":true"),
            "step {step} failed: {line}\n{}",
            explain(finished)
        );
    }
}

/// The unsigned integer field `key` of a JSON line (Go prints numbers
/// plainly), if there is one.
fn number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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
    let (finished, _) = run_cluster(relay_extra, &[]);
    assert_every_step_passed(&finished);
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
    let (finished, _) = run_cluster(&[], &["-legacy-fields"]);
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

/// Bytes of padding in every FSM snapshot of the v0.1 run: past 1 MiB, and
/// not a multiple of the library's 32 KiB chunks.
const V0_1_SNAPSHOT_PADDING: u64 = (1 << 20) + 123;

#[test]
fn interop_v0_1_cluster_of_go_library_nodes_through_the_relay() {
    if !go_available("interop_v0_1_cluster_of_go_library_nodes_through_the_relay") {
        return;
    }
    let padding = V0_1_SNAPSHOT_PADDING.to_string();
    let (finished, routes) = run_cluster(
        &["--wire-profile", "v0.1"],
        &["-library", "v0.1.0", "-snapshot-padding", &padding],
    );
    assert_every_step_passed(&finished);
    let line = |step| step_line(&finished, step).unwrap_or_default();

    // The nodes ran the real library, and advertised the relay.
    let config = line("config");
    assert!(
        config.contains("\"mode\":\"relay\"")
            && config.contains("\"library\":\"v0.1.0\"")
            && config.contains(
                "\"library_module\":\"github.com/dhiaayachi/raft-grpc-transport@v0.1.0 h1:"
            ),
        "not the Go library v0.1.0 behind relay addresses: {config}"
    );

    // n4's membership is the legacy outcome: the snapshot's peers field,
    // every server's ID its relay address; and the snapshot arrived whole,
    // past the padding, so in many 32 KiB chunks.
    let join = line("join");
    assert!(
        join.contains("\"membership_from\":\"legacy peers\""),
        "n4's membership did not come from the peers field: {join}"
    );
    for route in &routes {
        assert!(
            join.contains(&format!("\"{route}={route}/Voter\"")),
            "n4's configuration lacks {route} with its address as ID: {join}"
        );
    }
    let snapshot = number(join, "snapshot_bytes").unwrap_or_default();
    assert!(
        snapshot > V0_1_SNAPSHOT_PADDING,
        "n4's snapshot is {snapshot} bytes, not past the {V0_1_SNAPSHOT_PADDING} of padding: {join}"
    );
    assert!(
        number(join, "install_snapshot_received").unwrap_or_default() >= 1,
        "n4 received no InstallSnapshot: {join}"
    );

    // Leadership went to one of n1..n3, by TimeoutNow.
    let transfer = line("transfer");
    assert!(
        ["n1", "n2", "n3"]
            .iter()
            .any(|n| transfer.contains(&format!("\"to\":\"{n}\"")))
            && number(transfer, "timeout_now_received").unwrap_or_default() >= 1,
        "leadership did not move to one of n1..n3 by TimeoutNow: {transfer}"
    );

    // No pre-vote at all; the elections ran on granted RequestVotes.
    let pre_vote = line("pre_vote");
    assert!(
        pre_vote.contains("\"observed\":false")
            && number(pre_vote, "sent") == Some(0)
            && number(pre_vote, "received") == Some(0)
            && number(pre_vote, "votes_granted").unwrap_or_default() > 0,
        "pre-vote should be unused and RequestVote granted: {pre_vote}"
    );

    // Heartbeats came through the consumer; every node accepted the
    // relay's connections, none from the program's own sockets.
    let rpcs = line("rpcs");
    assert!(
        number(rpcs, "heartbeats_through_consumer").unwrap_or_default() > 0
            && number(rpcs, "from_other_process").unwrap_or_default() > 0
            && rpcs.matches("\"from_this_process\":0").count() == 4,
        "heartbeats or connection origins are off: {rpcs}"
    );
}
