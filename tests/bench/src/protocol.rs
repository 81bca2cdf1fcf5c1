//! What the orchestrator asks of a client process, and what the client
//! answers: the contract shared by the Rust clients and the Go program
//! (`go/main.go`), which parse the same flags and print the same JSON.
//!
//! A client is started as
//! `client --system S --target ADDR --scenario SC --payload N --ops N
//! --warmup N --window N --snapshot-bytes N --interval-us N [--marks 1]`
//! and prints one line of JSON, a [`ClientReport`], on stdout. It exits
//! non-zero (with the reason on stderr) when any RPC fails or a response is
//! not a success.
//!
//! With `--marks 1` the client also marks its measured phase, so that the
//! orchestrator can read both processes' CPU time at its edges: right
//! before the phase (after connecting and warming up) it prints the line
//! [`MARK_START`] and waits for a line on stdin, and right after the phase
//! it prints [`MARK_END`] and waits again. The orchestrator reads the CPU
//! time of the server and of the client while the client waits, then
//! answers. Without `--marks` (a client started by hand) nothing is
//! printed and nothing is awaited.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// The line a client prints right before its measured phase.
pub const MARK_START: &str = "mark start";
/// The line a client prints right after its measured phase.
pub const MARK_END: &str = "mark end";

/// The scenarios, as they appear in the JSON rows and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Sequential AppendEntries calls with one entry of `payload` bytes:
    /// every call's wall time.
    Unary,
    /// `ops` AppendEntries with one entry of `payload` bytes through the
    /// transport's pipeline, `window` in flight: total wall time.
    Pipeline,
    /// One InstallSnapshot of `snapshot_bytes` bytes: wall time, and the
    /// peak RSS of both processes.
    Snapshot,
    /// `ops` heartbeats, one every `interval_us`, nothing else on the wire.
    HeartbeatIdle,
    /// Heartbeats every `interval_us` to the peer that receives a snapshot
    /// of `snapshot_bytes` bytes at the same time, for as long as it takes.
    HeartbeatUnderSnapshot,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Unary,
        Scenario::Pipeline,
        Scenario::Snapshot,
        Scenario::HeartbeatIdle,
        Scenario::HeartbeatUnderSnapshot,
    ];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Unary => "unary",
            Scenario::Pipeline => "pipeline",
            Scenario::Snapshot => "snapshot",
            Scenario::HeartbeatIdle => "heartbeat_idle",
            Scenario::HeartbeatUnderSnapshot => "heartbeat_under_snapshot",
        }
    }

    /// The scenario called `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One client run's instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientArgs {
    /// Which system's client to run (`rust-smol`, …).
    pub system: String,
    /// The server's address.
    pub target: String,
    /// What to measure.
    pub scenario: Scenario,
    /// Bytes of the one entry's data (unary and pipeline).
    pub payload: u64,
    /// Measured operations (calls, appends, heartbeats).
    pub ops: u64,
    /// Operations before measuring (connections, caches, allocators warm).
    pub warmup: u64,
    /// Appends in flight (pipeline).
    pub window: u64,
    /// Snapshot size (snapshot and heartbeat_under_snapshot).
    pub snapshot_bytes: u64,
    /// Time between heartbeat sends (heartbeat scenarios).
    pub interval_us: u64,
    /// Whether to mark the measured phase (see the module's docs).
    pub marks: bool,
}

impl ClientArgs {
    /// The command line after the program name.
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = vec!["client".to_owned()];
        for (flag, value) in [
            ("--system", self.system.clone()),
            ("--target", self.target.clone()),
            ("--scenario", self.scenario.name().to_owned()),
            ("--payload", self.payload.to_string()),
            ("--ops", self.ops.to_string()),
            ("--warmup", self.warmup.to_string()),
            ("--window", self.window.to_string()),
            ("--snapshot-bytes", self.snapshot_bytes.to_string()),
            ("--interval-us", self.interval_us.to_string()),
            ("--marks", u8::from(self.marks).to_string()),
        ] {
            argv.push(flag.to_owned());
            argv.push(value);
        }
        argv
    }

    /// Parses the flags [`to_argv`](Self::to_argv) writes (after `client`).
    pub fn parse(args: &[String]) -> Result<ClientArgs, String> {
        let flags = crate::flags(args)?;
        let get = |name: &str| -> Result<String, String> {
            flags
                .get(name)
                .cloned()
                .ok_or_else(|| format!("client: missing --{name}"))
        };
        let num = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse()
                .map_err(|e| format!("client: --{name}: {e}"))
        };
        let scenario = get("scenario")?;
        Ok(ClientArgs {
            system: get("system")?,
            target: get("target")?,
            scenario: Scenario::parse(&scenario)
                .ok_or_else(|| format!("client: unknown scenario {scenario}"))?,
            payload: num("payload")?,
            ops: num("ops")?,
            warmup: num("warmup")?,
            window: num("window")?,
            snapshot_bytes: num("snapshot-bytes")?,
            interval_us: num("interval-us")?,
            marks: flags.get("marks").is_some_and(|m| m != "0"),
        })
    }

    /// Marks the start of the measured phase (when `marks` is set): prints
    /// [`MARK_START`] and waits for the orchestrator's answer.
    pub fn measuring_starts(&self) {
        self.mark(MARK_START);
    }

    /// Marks the end of the measured phase (when `marks` is set): prints
    /// [`MARK_END`] and waits for the orchestrator's answer.
    pub fn measuring_ends(&self) {
        self.mark(MARK_END);
    }

    fn mark(&self, line: &str) {
        if !self.marks {
            return;
        }
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        // The answer's content does not matter; end of input (an
        // orchestrator that is gone) does not block either.
        let _ = std::io::stdin().lock().read_line(&mut String::new());
    }
}

/// What a client prints: raw measurements; the orchestrator computes every
/// statistic, so that all systems share one definition of p50 and p99.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// Wall time of each measured call (unary, heartbeats), in nanoseconds.
    #[serde(default)]
    pub latencies_ns: Vec<u64>,
    /// Measured operations completed.
    pub ops: u64,
    /// Wall time of the measured part (pipeline: all appends; snapshot:
    /// the install), in nanoseconds.
    pub elapsed_ns: u64,
    /// Payload bytes moved in the measured part.
    pub bytes: u64,
    /// The client process's peak RSS (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// The peak resident set size (VmHWM) of process `pid` (`"self"` for this
/// one), in KiB, from `/proc/<pid>/status`; `None` where there is no procfs.
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_args_round_trip() {
        let args = ClientArgs {
            system: "rust-smol".into(),
            target: "127.0.0.1:1".into(),
            scenario: Scenario::HeartbeatUnderSnapshot,
            payload: 1024,
            ops: 10,
            warmup: 2,
            window: 64,
            snapshot_bytes: 1 << 30,
            interval_us: 2000,
            marks: true,
        };
        let argv = args.to_argv();
        assert_eq!(argv[0], "client");
        assert_eq!(ClientArgs::parse(&argv[1..]).unwrap(), args);
        let unmarked = ClientArgs {
            marks: false,
            ..args.clone()
        };
        assert_eq!(
            ClientArgs::parse(&unmarked.to_argv()[1..]).unwrap(),
            unmarked
        );
        // A client started by hand, without --marks, does not mark.
        let by_hand: Vec<String> = argv[1..argv.len() - 2].to_vec();
        assert!(!ClientArgs::parse(&by_hand).unwrap().marks);
        assert!(peak_rss_kib("self").unwrap_or(1) > 0);
    }
}
