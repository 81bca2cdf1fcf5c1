//! `raft-grpc-bench`: our transport side by side with its peers, in one run.
//!
//! ```sh
//! cargo run --release -p raft-grpc-bench -- --json tests/bench/results/latest.json
//! cargo run --release -p raft-grpc-bench -- --quick --json /tmp/bench-quick.json   # smoke run, < 3 min
//! ```
//!
//! Options: `--json FILE` (the rows), `--svg FILE` (the plot; default: the
//! JSON path with `.svg`), `--quick`, and for exploring `--runs N`,
//! `--systems a,b`, `--scenarios x,y`, `--snapshot-bytes N`. The table of
//! medians and ratios goes to stdout, progress to stderr. The exit status
//! is 1 when any measurement failed (the other rows are still written).
//!
//! # What is measured
//!
//! Wall time between **two processes on loopback**: every measurement
//! starts a server process and a client process (this binary re-executed
//! as `serve` / `client`, or the Go program in `go/`), and the client times
//! its calls with a monotonic clock. Threads sleep in the kernel between
//! events; nothing spins. On the 2-vCPU VMs this project runs on, waking a
//! sleeping vCPU costs ~45 µs, so a small round trip is ~55 µs at best
//! (DESIGN §7): the `tcp-floor` rows show that floor in the same run.
//!
//! # Systems
//!
//! * `rust-smol` — our async adapter, `GrpcTransport` (defaults; window 64).
//!   "ours" in every ratio.
//! * `rust-blocking` — our blocking adapter, `BlockingTransport`, from plain
//!   threads.
//! * `tonic` — the same service on tonic 0.14 / tokio, a current_thread
//!   runtime per process, our HTTP/2 settings (1 MiB frames and stream
//!   window, 16 MiB connection window), code generated from our `.proto`.
//! * `go-grpc` — the Go library `github.com/dhiaayachi/raft-grpc-transport`
//!   at **v0.1.0**, the only version the Go module proxy serves (newer ones
//!   answer 403). v0.1.0 numbers some AppendEntries and InstallSnapshot
//!   fields differently from v0.2.0+, so it cannot talk to our transport,
//!   but Go client → Go server it is the library's real code and
//!   performance (grpc-go defaults; 32 KiB snapshot chunks; no heartbeat
//!   fast path, so heartbeats queue behind the consumer).
//! * `go-net` — hashicorp/raft v1.7.3's `NetworkTransport` over TCP
//!   (`NewTCPTransportWithConfig`, `MaxPool` 3, `MaxRPCsInFlight` 64,
//!   heartbeat handler set), msgpack on a plain socket.
//! * `tcp-floor` — a plain TCP socket: the payload with a length prefix one
//!   way, a 16-byte reply back (see `systems::tcp_floor` for why the reply
//!   is not an echo of the payload).
//!
//! Every server is Raft-shaped: one consumer handles RPCs one at a time, as
//! hashicorp/raft's main loop does, answering AppendEntries with success;
//! heartbeats take the transport's fast path where it has one (ours:
//! `HeartbeatHandler`; hashicorp: `SetHeartbeatHandler`; tonic: a check in
//! the handler; the Go library has none); InstallSnapshot data is read to
//! its end and discarded, counting bytes.
//!
//! # Rows
//!
//! Each row's numbers are the **median across runs** (5 in a full run) of
//! per-run values; systems are interleaved within each run.
//!
//! * `unary` (all systems; entry of 1, 10, 100, 1000 KiB) — sequential
//!   AppendEntries calls with one entry, each call timed; per run p50, p99
//!   (nearest rank) and mean over 3000 / 2000 / 1000 / 300 calls after a
//!   10 % warm-up.
//! * `pipeline` (all systems) — 30000 / 15000 / 3000 / 500 appends through
//!   the transport's AppendEntries pipeline with **64 in flight** (the Go
//!   library's fixed window, set on every system), after a 10 % warm-up:
//!   ops/s and MB/s of entry data (MB = 10^6 bytes).
//! * `snapshot` (`rust-smol`, `rust-blocking`, `go-grpc`, `go-net`) — one
//!   InstallSnapshot of 1 GiB (payload_bytes 1073741824) generated in
//!   memory by the sender: MB/s from the call to its answer, and the peak
//!   RSS (VmHWM) of the sender (client) and receiver (server) processes,
//!   whole-process figures including the runtime; `peak_rss_mib` is the
//!   larger.
//! * `heartbeat_idle` (same systems) — 500 heartbeats (term and leader
//!   address only), one sent every 2 ms whatever the previous one is doing
//!   (open loop), nothing else on the wire: p50, p99, mean.
//! * `heartbeat_under_snapshot` (same systems) — heartbeats every 2 ms to
//!   the peer that is receiving a 1 GiB snapshot from the same client, for
//!   as long as the snapshot streams: p50, p99, mean. Where heartbeats
//!   queue behind the snapshot (the Go library), their latency is the rest
//!   of the snapshot's duration.
//!
//! Every row carries `ours_over_peer`: rust-smol's main metric divided by
//! the row's (p50 for latencies: < 1 means ours is faster; ops/s and MB/s:
//! > 1 means ours is faster); the table also gives it for p99.
//!
//! `--quick` runs 2 runs with a tenth of the operations and a 64 MiB
//! snapshot (its rows say `payload_bytes` 67108864: the real size), in
//! under 3 minutes including the Go build; it is a smoke test, its timings
//! are not asserted. Go missing: the Go rows are skipped with a note,
//! unless `RAFT_GRPC_BENCH_REQUIRE_GO=1`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod go;
mod orchestrate;
mod protocol;
mod report;
mod stats;
mod systems;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use protocol::{ClientArgs, Scenario};

/// Parses `--name value` pairs (and bare `--name` switches, as an empty
/// value).
pub fn flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let name = args[i]
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {:?}", args[i]))?;
        match args.get(i + 1) {
            Some(value) if !value.starts_with("--") => {
                flags.insert(name.to_owned(), value.clone());
                i += 2;
            }
            _ => {
                flags.insert(name.to_owned(), String::new());
                i += 1;
            }
        }
    }
    Ok(flags)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("client") => client(&args[1..]),
        _ => bench(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raft-grpc-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(args)?;
    let system = flags.get("system").ok_or("serve: missing --system")?;
    let listen = flags.get("listen").map_or("127.0.0.1:0", String::as_str);
    systems::serve(system, listen)?;
    Ok(ExitCode::SUCCESS)
}

fn client(args: &[String]) -> Result<ExitCode, String> {
    let args = ClientArgs::parse(args)?;
    let report = systems::client(&args)?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

fn bench(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(args)?;
    for name in flags.keys() {
        if !matches!(
            name.as_str(),
            "quick" | "json" | "svg" | "runs" | "systems" | "scenarios" | "snapshot-bytes"
        ) {
            return Err(format!("unknown option --{name}"));
        }
    }
    let mut settings = orchestrate::Settings::new(flags.contains_key("quick"));
    if let Some(runs) = flags.get("runs") {
        settings.runs = runs.parse().map_err(|e| format!("--runs: {e}"))?;
    }
    if let Some(list) = flags.get("systems") {
        settings.systems = list.split(',').map(str::to_owned).collect();
        if let Some(bad) = settings
            .systems
            .iter()
            .find(|s| !systems::SYSTEMS.contains(&s.as_str()))
        {
            return Err(format!("--systems: unknown system {bad}"));
        }
    }
    if let Some(list) = flags.get("scenarios") {
        settings.scenarios = list
            .split(',')
            .map(|s| Scenario::parse(s).ok_or(format!("--scenarios: unknown scenario {s}")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(bytes) = flags.get("snapshot-bytes") {
        settings.snapshot_bytes = bytes
            .parse()
            .map_err(|e| format!("--snapshot-bytes: {e}"))?;
    }
    let json = flags.get("json").map(PathBuf::from);
    let svg = flags
        .get("svg")
        .map(PathBuf::from)
        .or_else(|| json.as_ref().map(|j| j.with_extension("svg")));

    let rust = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut skipped = Vec::new();
    let go = if settings.systems.iter().any(|s| systems::is_go(s)) {
        match go::build(&rust)? {
            Ok(path) => Some(path),
            Err(reason) => {
                eprintln!("{reason}");
                skipped.push(reason);
                None
            }
        }
    } else {
        None
    };
    let programs = orchestrate::Programs { rust, go };
    let report = orchestrate::run(&settings, &programs, skipped);

    print!("{}", report::table(&report));
    if let Some(path) = &json {
        let text = report::to_json(&report);
        report::validate(&text).map_err(|e| format!("the JSON breaks its own schema: {e}"))?;
        write(path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &svg {
        write(path, &report::svg(&report))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if report.meta.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
