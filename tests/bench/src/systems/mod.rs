//! The systems under test: their names, which scenarios each takes part in,
//! the requests every client sends, and the `serve` / `client` entry points
//! of the Rust ones (the Go ones live in `go/main.go`).
//!
//! Every server behaves like a Raft follower: one consumer handles RPCs one
//! at a time (as hashicorp/raft's main loop does) and answers AppendEntries
//! with success; heartbeats take the transport's fast path where it has one;
//! an InstallSnapshot's data is read to its end and discarded, counting
//! bytes, and the answer is a success only when exactly `size` bytes came.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_grpc_transport::message::{AppendEntriesRequest, InstallSnapshotRequest, Log, RpcHeader};

use crate::protocol::{ClientArgs, ClientReport, Scenario};

pub mod rust_blocking;
pub mod rust_smol;
pub mod rust_tokio;
pub mod rust_tower;
pub mod tcp_floor;
pub mod tonic_grpc;

/// Every system, in report order: ours first, then the peers, the floor
/// last. The `-tls` systems are the same over TLS (see [`tls`]).
pub const SYSTEMS: [&str; 10] = [
    "rust-smol",
    "rust-blocking",
    "rust-tokio",
    "rust-tower",
    "rust-smol-tls",
    "tonic",
    "tonic-tls",
    "go-grpc",
    "go-net",
    "tcp-floor",
];

/// The certificates of the `-tls` systems: a CA and a server certificate
/// for 127.0.0.1 it signed (ECDSA P-256, valid for 100 years; made with
/// openssl for this benchmark, test material only). Servers present the
/// certificate, clients trust the CA; no client certificate.
pub mod tls {
    /// The CA every client trusts.
    pub const CA: &str = include_str!("../../tls/ca.pem");
    /// The server's certificate, for IP 127.0.0.1 and `localhost`.
    pub const SERVER_CERT: &str = include_str!("../../tls/server.pem");
    /// Its private key.
    pub const SERVER_KEY: &str = include_str!("../../tls/server.key");
}

/// The system the ratio column compares every row with.
pub const OURS: &str = "rust-smol";

/// Appends in flight on every pipeline: the Go library's fixed limit (its
/// pipeline's `inflight` channel holds 64), set on ours, tonic's,
/// hashicorp's (`MaxRPCsInFlight`) and the TCP floor's.
pub const WINDOW: u64 = 64;

/// Whether `system` runs from the Go program.
pub fn is_go(system: &str) -> bool {
    system.starts_with("go-")
}

/// Whether `system` takes part in `scenario`. Every system runs unary and
/// pipeline; snapshots and heartbeats compare ours (every adapter) with the
/// Go library, and with hashicorp's NetworkTransport as a reference point.
/// Over TLS, ours and tonic run unary and pipeline, and ours the
/// snapshot.
pub fn runs(system: &str, scenario: Scenario) -> bool {
    match scenario {
        Scenario::Unary | Scenario::Pipeline => true,
        Scenario::Snapshot => matches!(
            system,
            "rust-smol"
                | "rust-blocking"
                | "rust-tokio"
                | "rust-tower"
                | "rust-smol-tls"
                | "go-grpc"
                | "go-net"
        ),
        Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot => matches!(
            system,
            "rust-smol" | "rust-blocking" | "rust-tokio" | "go-grpc" | "go-net"
        ),
    }
}

/// The header of the benchmark client's requests.
pub fn client_header() -> RpcHeader {
    RpcHeader::new(3, "bench-client", "127.0.0.1:1")
}

/// The header of the benchmark servers' responses.
pub fn server_header(addr: &str) -> RpcHeader {
    RpcHeader::new(3, "bench-server", addr.to_owned())
}

/// An AppendEntries with one entry of `payload` bytes (never a heartbeat).
pub fn append_request(payload: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: client_header(),
        term: 1,
        prev_log_entry: 1,
        prev_log_term: 1,
        entries: vec![Log::command(
            2,
            1,
            Bytes::from(vec![0x5a; payload as usize]),
        )],
        leader_commit_index: 1,
        ..Default::default()
    }
}

/// A heartbeat: a term and the leader's address, nothing else.
pub fn heartbeat_request() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: client_header(),
        term: 1,
        ..Default::default()
    }
}

/// The metadata of a snapshot of `size` bytes.
pub fn snapshot_meta(size: u64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: client_header(),
        snapshot_version: 1,
        term: 1,
        last_log_index: 1,
        last_log_term: 1,
        size,
        ..Default::default()
    }
}

/// Runs the server of a Rust system until stdin closes.
pub fn serve(system: &str, listen: &str) -> Result<(), String> {
    match system {
        "rust-smol" => rust_smol::serve(listen, false),
        "rust-smol-tls" => rust_smol::serve(listen, true),
        "rust-blocking" => rust_blocking::serve(listen),
        "rust-tokio" => rust_tokio::serve(listen),
        "rust-tower" => rust_tower::serve(listen),
        "tonic" => tonic_grpc::serve(listen, false),
        "tonic-tls" => tonic_grpc::serve(listen, true),
        "tcp-floor" => tcp_floor::serve(listen),
        other => Err(format!("serve: no Rust system called {other}")),
    }
}

/// Runs the client of a Rust system.
pub fn client(args: &ClientArgs) -> Result<ClientReport, String> {
    let mut report = match args.system.as_str() {
        "rust-smol" => rust_smol::client(args, false),
        "rust-smol-tls" => rust_smol::client(args, true),
        "rust-blocking" => rust_blocking::client(args),
        "rust-tokio" => rust_tokio::client(args),
        // Our smol client, against the service mounted on tonic.
        "rust-tower" => rust_smol::client(args, false),
        "tonic" => tonic_grpc::client(args, false),
        "tonic-tls" => tonic_grpc::client(args, true),
        "tcp-floor" => tcp_floor::client(args),
        other => Err(format!("client: no Rust system called {other}")),
    }?;
    report.peak_rss_kib = crate::protocol::peak_rss_kib("self").unwrap_or(0);
    Ok(report)
}

/// Tells the orchestrator where the server listens: the first line on
/// stdout.
pub fn announce(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{addr}");
    let _ = out.flush();
}

/// Blocks until stdin closes: the orchestrator closes it (or dies) when the
/// server is no longer needed.
pub fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

/// The nanoseconds of `d`, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Open-loop heartbeat schedule: the send times `start + k × interval`.
pub struct Ticks {
    start: Instant,
    interval: Duration,
    next: u64,
}

impl Ticks {
    /// Ticks every `interval_us` from now.
    pub fn new(interval_us: u64) -> Ticks {
        Ticks {
            start: Instant::now(),
            interval: Duration::from_micros(interval_us.max(1)),
            next: 0,
        }
    }

    /// The next send time.
    pub fn next_deadline(&mut self) -> Instant {
        let at = self.start + self.interval * u32::try_from(self.next).unwrap_or(u32::MAX);
        self.next += 1;
        at
    }
}

/// A report of latencies, with `elapsed` and `bytes` for the measured part.
pub fn latency_report(latencies_ns: Vec<u64>, elapsed: Duration, bytes: u64) -> ClientReport {
    ClientReport {
        ops: latencies_ns.len() as u64,
        latencies_ns,
        elapsed_ns: nanos(elapsed),
        bytes,
        peak_rss_kib: 0,
    }
}
