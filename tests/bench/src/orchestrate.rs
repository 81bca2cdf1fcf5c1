//! The orchestrator: runs every measurement as a server process and a
//! client process, interleaving the systems, and turns the per-run values
//! into rows of medians with their min and max over runs.
//!
//! One run goes through every (scenario, payload, rtt) cell and, within a
//! cell, through every system that takes part, in an order rotated by one
//! system per run (A B C …, then B C … A): a system never always goes
//! first, and a slow phase of the shared machine hits all systems alike.
//! Each measurement starts a fresh server (`serve --system S --listen
//! 127.0.0.1:0`, which prints its address) and a fresh client (`client …`,
//! see [`crate::protocol`]), so that the two peak RSS values belong to that
//! measurement alone. For a cell with a round trip above 0, a fresh link
//! process (`link --target SERVER --rtt-ms N --until-eof`, this binary,
//! [`crate::proxy::Link`] on its own threads) stands between them and the
//! client is given the link's address.
//!
//! The client marks its measured phase (`--marks 1`): at each mark the
//! orchestrator reads the CPU time (utime + stime) of the server and of the
//! client from `/proc/<pid>/stat` while the client waits, so the CPU time
//! of a row covers the measured phase only, without start-up, connecting
//! or warming up. The server's peak RSS (VmHWM) is read from
//! `/proc/<pid>/status` when the client is done, then the server (and the
//! link) are killed. A watchdog kills any of the processes when a
//! measurement overruns its time limit; the failure is reported and the run
//! goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::machine::{Machine, clk_tck, cpu_ticks};
use crate::protocol::{ClientArgs, ClientReport, MARK_END, MARK_START, Scenario};
use crate::report::{
    Meta, Metric, Report, Row, Summary, cpu_metric, fill_ratios, size_label, sort_rows,
};
use crate::stats::{mean, percentile};
use crate::systems::{OURS, SYSTEMS, WINDOW, is_go, runs};

/// Entry sizes of the unary and pipeline scenarios: 1, 10, 100, 1000 KiB.
pub const PAYLOADS: [u64; 4] = [1 << 10, 10 << 10, 100 << 10, 1000 << 10];

/// The one entry size pipelines are measured with over emulated links.
pub const LINK_PIPELINE_PAYLOAD: u64 = 1000 << 10;

/// What one benchmark invocation does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Smoke-run sizes.
    pub quick: bool,
    /// Runs per system.
    pub runs: u64,
    /// Systems to measure (report order).
    pub systems: Vec<String>,
    /// Scenarios to measure.
    pub scenarios: Vec<Scenario>,
    /// Round trips to measure, ms: 0 is loopback (every cell), above 0 an
    /// emulated link (snapshot, pipeline at 1000 KiB,
    /// heartbeat_under_snapshot).
    pub rtts: Vec<u64>,
    /// Bytes per streamed snapshot on loopback.
    pub snapshot_bytes: u64,
    /// Bytes per streamed snapshot over an emulated link.
    pub link_snapshot_bytes: u64,
    /// The links' bandwidth cap, MB/s each way; `None`: uncapped.
    pub link_mbps: Option<f64>,
    /// Time between heartbeat sends, µs.
    pub interval_us: u64,
    /// A measurement not done in this long is killed and reported.
    pub time_limit: Duration,
    /// CPU lists (`taskset -c` syntax) to pin every server and every client
    /// process to; `None` lets the scheduler place them.
    pub pin: Option<(String, String)>,
}

/// One (scenario, payload, rtt) cell of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// What is measured.
    pub scenario: Scenario,
    /// The row's `payload_bytes`: entry size (unary, pipeline), snapshot
    /// size (snapshot), 0 (heartbeats).
    pub payload: u64,
    /// Round trip of the emulated link, ms; 0: loopback.
    pub rtt_ms: u64,
    /// The snapshot streamed (snapshot and heartbeat_under_snapshot).
    pub snapshot_bytes: u64,
}

impl Cell {
    /// How progress lines and failures name the cell.
    fn label(&self) -> String {
        let mut label = format!("{} {}", self.scenario.name(), size_label(self.payload));
        if self.rtt_ms > 0 {
            label.push_str(&format!(" rtt {} ms", self.rtt_ms));
        }
        label
    }
}

/// Parses a `--rtt-ms` list: comma-separated round trips in whole
/// milliseconds (`0,1,20,50`), returned sorted without repeats.
pub fn parse_rtt_list(list: &str) -> Result<Vec<u64>, String> {
    let mut rtts = list
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u64>()
                .map_err(|_| format!("--rtt-ms: {item:?} is not a whole number of milliseconds"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if let Some(&big) = rtts.iter().find(|&&r| r > 10_000) {
        return Err(format!("--rtt-ms: {big} ms is more than 10 s"));
    }
    rtts.sort_unstable();
    rtts.dedup();
    Ok(rtts)
}

impl Settings {
    /// The full run (`quick = false`) or the smoke run.
    pub fn new(quick: bool) -> Settings {
        Settings {
            quick,
            runs: if quick { 2 } else { 7 },
            systems: SYSTEMS.iter().map(|s| s.to_string()).collect(),
            scenarios: Scenario::ALL.to_vec(),
            rtts: if quick {
                vec![0, 20]
            } else {
                vec![0, 1, 20, 50]
            },
            snapshot_bytes: if quick { 64 << 20 } else { 1 << 30 },
            link_snapshot_bytes: if quick { 32 << 20 } else { 128 << 20 },
            link_mbps: None,
            interval_us: 2000,
            time_limit: Duration::from_secs(if quick { 60 } else { 300 }),
            pin: None,
        }
    }

    /// Measured operations and warm-up operations of a cell: enough for
    /// stable medians (p99 of unary latency rests on ≥ 300 samples per run)
    /// while the whole full run stays near 20 minutes here. Over
    /// a link a pipeline of 1000 KiB entries does 200 appends: a system
    /// held to one 1 MiB window per round trip (tonic) moves ~20 appends
    /// a second at 50 ms, so one measurement stays near 10 s.
    pub fn workload(&self, cell: &Cell) -> (u64, u64) {
        let ops = match (cell.scenario, cell.payload >> 10) {
            (Scenario::Pipeline, _) if cell.rtt_ms > 0 => 200,
            (Scenario::Unary, 0..=1) => 10_000,
            (Scenario::Unary, 2..=10) => 8000,
            (Scenario::Unary, 11..=100) => 4000,
            (Scenario::Unary, _) => 1500,
            (Scenario::Pipeline, 0..=1) => 150_000,
            (Scenario::Pipeline, 2..=10) => 100_000,
            (Scenario::Pipeline, 11..=100) => 20_000,
            (Scenario::Pipeline, _) => 3000,
            (Scenario::Snapshot, _) => 1,
            (Scenario::HeartbeatIdle, _) => 1000,
            (Scenario::HeartbeatUnderSnapshot, _) => 0,
        };
        let ops = if self.quick { (ops / 10).max(1) } else { ops };
        let warmup = match cell.scenario {
            Scenario::Snapshot => 0,
            Scenario::HeartbeatUnderSnapshot => 20,
            _ => (ops / 10).max(20),
        };
        (ops, warmup)
    }

    /// The cells of one run: every (scenario, payload) on loopback when the
    /// round trips include 0, then for each round trip above 0 the cells
    /// measured over links.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &rtt_ms in &self.rtts {
            let snapshot_bytes = if rtt_ms == 0 {
                self.snapshot_bytes
            } else {
                self.link_snapshot_bytes
            };
            let cell = |scenario, payload| Cell {
                scenario,
                payload,
                rtt_ms,
                snapshot_bytes,
            };
            for &scenario in &self.scenarios {
                match scenario {
                    Scenario::Unary | Scenario::Pipeline if rtt_ms == 0 => {
                        cells.extend(PAYLOADS.iter().map(|&p| cell(scenario, p)));
                    }
                    Scenario::Pipeline => cells.push(cell(scenario, LINK_PIPELINE_PAYLOAD)),
                    Scenario::Snapshot => cells.push(cell(scenario, snapshot_bytes)),
                    Scenario::HeartbeatUnderSnapshot => cells.push(cell(scenario, 0)),
                    Scenario::HeartbeatIdle if rtt_ms == 0 => cells.push(cell(scenario, 0)),
                    Scenario::Unary | Scenario::HeartbeatIdle => {}
                }
            }
        }
        debug_assert!(
            cells
                .iter()
                .all(|c| c.rtt_ms == 0 || crate::report::runs_over_links(c.scenario, c.payload))
        );
        cells
    }
}

/// The programs that serve and call: this binary, and the Go program when
/// it could be built.
#[derive(Debug, Clone)]
pub struct Programs {
    /// This benchmark's own executable.
    pub rust: PathBuf,
    /// The Go program (`go/`), if built.
    pub go: Option<PathBuf>,
}

/// CPU ticks (utime + stime) the server and the client used in a
/// measurement's measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSpan {
    /// The server process's ticks.
    pub server: u64,
    /// The client process's ticks.
    pub client: u64,
}

impl CpuSpan {
    /// The ticks between two readings of (server, client); `None` if a
    /// reading is missing or went backwards (not the same processes).
    pub fn between(start: Option<(u64, u64)>, end: Option<(u64, u64)>) -> Option<CpuSpan> {
        let ((s0, c0), (s1, c1)) = (start?, end?);
        Some(CpuSpan {
            server: s1.checked_sub(s0)?,
            client: c1.checked_sub(c0)?,
        })
    }

    /// Both processes' CPU time, µs, at `clk_tck` ticks per second.
    pub fn total_us(&self, clk_tck: u64) -> f64 {
        (self.server + self.client) as f64 * 1e6 / clk_tck.max(1) as f64
    }
}

/// One measurement's values (one run of one cell of one system).
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    values: BTreeMap<Metric, f64>,
}

impl Sample {
    fn new(
        cell: &Cell,
        report: &ClientReport,
        server_rss_kib: Option<u64>,
        cpu: Option<CpuSpan>,
        clk_tck: u64,
    ) -> Sample {
        let us = |ns: u64| ns as f64 / 1e3;
        let seconds = report.elapsed_ns as f64 / 1e9;
        let mut values = BTreeMap::new();
        let mut put = |metric, value: Option<f64>| {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                values.insert(metric, v);
            }
        };
        match cell.scenario {
            Scenario::Unary | Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot => {
                put(
                    Metric::P50Us,
                    percentile(&report.latencies_ns, 50.0).map(us),
                );
                put(
                    Metric::P99Us,
                    percentile(&report.latencies_ns, 99.0).map(us),
                );
                put(Metric::MeanUs, mean(&report.latencies_ns).map(|m| m / 1e3));
            }
            Scenario::Pipeline => {
                put(Metric::OpsPerS, Some(report.ops as f64 / seconds));
                put(Metric::MbPerS, Some(report.bytes as f64 / seconds / 1e6));
            }
            Scenario::Snapshot => {
                let sender = report.peak_rss_kib as f64 / 1024.0;
                let receiver = server_rss_kib.map(|k| k as f64 / 1024.0);
                put(Metric::MbPerS, Some(report.bytes as f64 / seconds / 1e6));
                put(Metric::SenderPeakRssMib, Some(sender));
                put(Metric::ReceiverPeakRssMib, receiver);
                put(
                    Metric::PeakRssMib,
                    Some(receiver.map_or(sender, |r| r.max(sender))),
                );
            }
        }
        let cpu_us = cpu.map(|c| c.total_us(clk_tck));
        let units = match cpu_metric(cell.scenario) {
            // Per MB of the snapshot the phase streamed.
            Metric::CpuUsPerMb => cell.snapshot_bytes as f64 / 1e6,
            _ => report.ops as f64,
        };
        put(cpu_metric(cell.scenario), per_unit(cpu_us, units));
        Sample { values }
    }

    fn describe(&self) -> String {
        [
            (Metric::P50Us, "p50", " µs"),
            (Metric::P99Us, "p99", " µs"),
            (Metric::OpsPerS, "ops/s", ""),
            (Metric::MbPerS, "MB/s", ""),
            (Metric::SenderPeakRssMib, "RSS sender", " MiB"),
            (Metric::ReceiverPeakRssMib, "receiver", " MiB"),
            (Metric::CpuUsPerOp, "CPU", " µs/op"),
            (Metric::CpuUsPerMb, "CPU", " µs/MB"),
        ]
        .into_iter()
        .filter_map(|(metric, name, unit)| {
            let v = self.values.get(&metric)?;
            Some(format!("{name} {v:.1}{unit}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// `total` spread over `units`; `None` without a total or units.
pub fn per_unit(total: Option<f64>, units: f64) -> Option<f64> {
    total.filter(|_| units > 0.0).map(|t| t / units)
}

/// The row of one (cell, system) from its per-run samples: every metric's
/// median, min and max over the runs that have it.
fn row_of(cell: &Cell, system: &str, samples: &[Sample]) -> Row {
    let mut row = Row {
        system: system.to_owned(),
        scenario: cell.scenario.name().to_owned(),
        payload_bytes: cell.payload,
        rtt_ms: cell.rtt_ms,
        runs: samples.len() as u64,
        ..Default::default()
    };
    for metric in Metric::ALL {
        let values: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.values.get(&metric).copied())
            .collect();
        if let Some(summary) = Summary::of(&values) {
            row.set(metric, summary);
        }
    }
    row
}

/// A child process with a watchdog that kills it after a time limit.
struct Guarded {
    child: Arc<Mutex<Child>>,
    done: Sender<()>,
    watchdog: JoinHandle<bool>,
}

impl Guarded {
    fn new(child: Child, limit: Duration) -> Guarded {
        let child = Arc::new(Mutex::new(child));
        let (done, finished) = channel::<()>();
        let watched = child.clone();
        let watchdog = std::thread::spawn(move || match finished.recv_timeout(limit) {
            Err(RecvTimeoutError::Timeout) => {
                let _ = watched.lock().map(|mut c| c.kill());
                true
            }
            _ => false,
        });
        Guarded {
            child,
            done,
            watchdog,
        }
    }

    /// The exit status, if the process has already ended.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().ok()?.try_wait().ok()?
    }

    fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Kills the process (if `kill`), waits for it; says whether the
    /// watchdog had killed it first.
    fn finish(self, kill: bool) -> (Option<std::process::ExitStatus>, bool) {
        let _ = self.done.send(());
        let timed_out = self.watchdog.join().unwrap_or(false);
        let status = self.child.lock().ok().and_then(|mut c| {
            if kill {
                let _ = c.kill();
            }
            c.wait().ok()
        });
        (status, timed_out)
    }
}

/// A helper process (server or link) that prints one line when ready (the
/// address to connect to) and runs until its stdin closes or it is killed.
struct Helper {
    process: Guarded,
    stdin: Option<ChildStdin>,
    /// The line it printed.
    addr: String,
}

impl Helper {
    fn start(mut command: Command, what: &str, limit: Duration) -> Result<Helper, String> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the {what}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let process = Guarded::new(child, limit);
        let mut addr = String::new();
        let _ = BufReader::new(stdout).read_line(&mut addr);
        let addr = addr.trim().to_owned();
        if addr.is_empty() {
            let (status, _) = process.finish(true);
            return Err(format!("the {what} did not start ({status:?})"));
        }
        Ok(Helper {
            process,
            stdin,
            addr,
        })
    }

    /// Closes its stdin and kills it; says whether the watchdog had
    /// killed it first.
    fn stop(mut self) -> bool {
        drop(self.stdin.take());
        self.process.finish(true).1
    }
}

fn measure(
    programs: &Programs,
    settings: &Settings,
    system: &str,
    cell: &Cell,
    clk_tck: u64,
) -> Result<Sample, String> {
    let program = if is_go(system) {
        programs.go.clone().ok_or("the Go program is not built")?
    } else {
        programs.rust.clone()
    };
    let pin = settings.pin.as_ref();
    let mut serve = command(&program, pin.map(|p| p.0.as_str()));
    serve.args(["serve", "--system", system, "--listen", "127.0.0.1:0"]);
    let server = Helper::start(serve, "server", settings.time_limit)?;
    let link = if cell.rtt_ms > 0 {
        let mut link = Command::new(&programs.rust);
        link.args(["link", "--until-eof", "--target", &server.addr])
            .args(["--rtt-ms", &cell.rtt_ms.to_string()]);
        if let Some(mbps) = settings.link_mbps {
            link.args(["--mbps", &mbps.to_string()]);
        }
        match Helper::start(link, "link", settings.time_limit) {
            Ok(link) => Some(link),
            Err(e) => {
                server.stop();
                return Err(e);
            }
        }
    } else {
        None
    };
    let (ops, warmup) = settings.workload(cell);
    let args = ClientArgs {
        system: system.to_owned(),
        target: link.as_ref().unwrap_or(&server).addr.clone(),
        scenario: cell.scenario,
        payload: if matches!(cell.scenario, Scenario::Unary | Scenario::Pipeline) {
            cell.payload
        } else {
            0
        },
        ops,
        warmup,
        window: WINDOW,
        snapshot_bytes: cell.snapshot_bytes,
        interval_us: settings.interval_us,
        marks: true,
    };
    let result = run_client(
        command(&program, pin.map(|p| p.1.as_str())),
        &args,
        settings.time_limit,
        server.process.pid(),
    );
    // A server (or link) that is gone before we end it died on its own (or
    // was killed from outside): say so, it explains the client's failure.
    let server_gone = server.process.exited();
    let link_gone = link.as_ref().and_then(|l| l.process.exited());
    let server_rss = crate::protocol::peak_rss_kib(&server.process.pid().to_string());
    let link_timed_out = link.is_some_and(Helper::stop);
    let server_timed_out = server.stop();
    for (what, gone) in [("server", server_gone), ("link", link_gone)] {
        if let Some(status) = gone {
            let client = match &result {
                Ok(_) => "the client finished".to_owned(),
                Err(e) => e.clone(),
            };
            return Err(format!(
                "the {what} process ended during the measurement ({status}); {client}"
            ));
        }
    }
    let (report, cpu) = result?;
    if server_timed_out || link_timed_out {
        return Err("the server or the link overran the time limit".to_owned());
    }
    Ok(Sample::new(cell, &report, server_rss, cpu, clk_tck))
}

/// A command running `program`, under `taskset -c cpus` when pinned
/// (taskset execs the program: the pid stays the program's).
fn command(program: &PathBuf, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Both processes' CPU ticks so far: (server, client).
fn cpu_reading(server: u32, client: u32) -> Option<(u64, u64)> {
    Some((cpu_ticks(server)?, cpu_ticks(client)?))
}

/// Runs the client, answering its marks; returns its report and the CPU
/// both processes used between the marks.
fn run_client(
    mut command: Command,
    args: &ClientArgs,
    limit: Duration,
    server_pid: u32,
) -> Result<(ClientReport, Option<CpuSpan>), String> {
    let mut client = command
        .args(args.to_argv())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the client: {e}"))?;
    let client_pid = client.id();
    let mut stdin = client.stdin.take();
    let stdout = client.stdout.take().ok_or("no client stdout")?;
    let client = Guarded::new(client, limit);
    let mut stdout = BufReader::new(stdout);
    let (mut start, mut end) = (None, None);
    let mut output = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mark = line.trim_end();
        if mark == MARK_START || mark == MARK_END {
            // The client waits for the answer: its CPU time stands still
            // while both are read.
            let reading = cpu_reading(server_pid, client_pid);
            if mark == MARK_START {
                start = reading;
            } else {
                end = reading;
            }
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(b"go\n").and_then(|()| stdin.flush());
            }
        } else {
            output.push_str(&line);
        }
    }
    drop(stdin);
    let (status, timed_out) = client.finish(false);
    if timed_out {
        return Err(format!(
            "the client did not finish within {} s (killed)",
            limit.as_secs()
        ));
    }
    match status {
        Some(s) if s.success() => {}
        other => return Err(format!("the client failed ({other:?})")),
    }
    let report = serde_json::from_str(output.trim())
        .map_err(|e| format!("the client's report does not parse: {e}: {output:?}"))?;
    Ok((report, CpuSpan::between(start, end)))
}

/// Runs every measurement and returns the report (rows of medians with
/// their ranges). Each measurement's values go to stderr as they come.
pub fn run(settings: &Settings, programs: &Programs, skipped: Vec<String>) -> Report {
    let machine = Machine::here();
    let clk_tck = clk_tck();
    let systems: Vec<String> = settings
        .systems
        .iter()
        .filter(|s| !is_go(s) || programs.go.is_some())
        .cloned()
        .collect();
    let cells = settings.cells();
    let mut samples: BTreeMap<(Cell, String), Vec<Sample>> = BTreeMap::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    for run in 0..settings.runs {
        for cell in &cells {
            let mut order: Vec<&String> =
                systems.iter().filter(|s| runs(s, cell.scenario)).collect();
            if !order.is_empty() {
                let len = order.len();
                order.rotate_left(run as usize % len);
            }
            for system in order {
                let at = Instant::now();
                let result = measure(programs, settings, system, cell, clk_tck);
                let label = format!(
                    "[run {}/{} {:>5.0} s] {} {}",
                    run + 1,
                    settings.runs,
                    started.elapsed().as_secs_f64(),
                    cell.label(),
                    system
                );
                match result {
                    Ok(sample) => {
                        eprintln!(
                            "{label}: {} ({:.1} s)",
                            sample.describe(),
                            at.elapsed().as_secs_f64()
                        );
                        samples
                            .entry((*cell, system.clone()))
                            .or_default()
                            .push(sample);
                    }
                    Err(e) => {
                        eprintln!("{label}: FAILED: {e}");
                        failures.push(format!("run {}: {} {system}: {e}", run + 1, cell.label()));
                    }
                }
            }
        }
    }
    let mut rows: Vec<Row> = samples
        .iter()
        .map(|((cell, system), samples)| row_of(cell, system, samples))
        .collect();
    sort_rows(&mut rows);
    fill_ratios(&mut rows);
    Report {
        rows,
        meta: Meta {
            pipeline_window: WINDOW,
            runs: settings.runs,
            quick: settings.quick,
            snapshot_bytes: settings.snapshot_bytes,
            link_snapshot_bytes: settings.link_snapshot_bytes,
            rtt_ms: settings.rtts.clone(),
            link_mbps: settings.link_mbps,
            heartbeat_interval_us: settings.interval_us,
            clk_tck,
            ours: OURS.to_owned(),
            method: method(settings),
            machine,
            skipped,
            failures,
        },
    }
}

/// `meta.method`: how the numbers were made, in a sentence.
fn method(settings: &Settings) -> String {
    format!(
        "wall time measured by the client process against a server process, both on 127.0.0.1, \
         threads sleeping in the kernel between events (no spinning); fresh processes per \
         measurement; {}; rows with rtt_ms > 0 go through a delay proxy in its own process \
         (rtt/2 each way, {}, no limit on the bytes it holds in flight); CPU time is utime + \
         stime of server and client from /proc/<pid>/stat, read at the client's marks around \
         the measured phase",
        match &settings.pin {
            Some((server, client)) => {
                format!("servers pinned to CPUs {server}, clients to CPUs {client}")
            }
            None => "processes placed by the scheduler (not pinned)".to_owned(),
        },
        match settings.link_mbps {
            Some(m) => format!("capped at {m} MB/s each way"),
            None => "no bandwidth cap".to_owned(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_lists() {
        assert_eq!(parse_rtt_list("0,1,20,50").unwrap(), [0, 1, 20, 50]);
        assert_eq!(parse_rtt_list("50, 20,20,0").unwrap(), [0, 20, 50]);
        assert_eq!(parse_rtt_list("20").unwrap(), [20]);
        for bad in ["", "0,", "a", "-1", "1.5", "0,,1", "20000"] {
            assert!(parse_rtt_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Settings::new(false).rtts, [0, 1, 20, 50]);
        assert_eq!(Settings::new(true).rtts, [0, 20]);
    }

    #[test]
    fn cells_over_links() {
        let mut settings = Settings::new(false);
        let cells = settings.cells();
        let loopback = cells.iter().filter(|c| c.rtt_ms == 0).count();
        // 4 unary + 4 pipeline + snapshot + 2 heartbeats on loopback; per
        // link: snapshot, pipeline 1000 KiB, heartbeats under a snapshot.
        assert_eq!(loopback, 11);
        assert_eq!(cells.len(), 11 + 3 * 3);
        for cell in cells.iter().filter(|c| c.rtt_ms > 0) {
            assert_eq!(cell.snapshot_bytes, 128 << 20);
            match cell.scenario {
                Scenario::Pipeline => assert_eq!(cell.payload, LINK_PIPELINE_PAYLOAD),
                Scenario::Snapshot => assert_eq!(cell.payload, 128 << 20),
                Scenario::HeartbeatUnderSnapshot => assert_eq!(cell.payload, 0),
                other => panic!("{other:?} over a link"),
            }
        }
        let link_pipeline = cells
            .iter()
            .find(|c| c.rtt_ms == 50 && c.scenario == Scenario::Pipeline)
            .unwrap();
        assert_eq!(settings.workload(link_pipeline), (200, 20));
        assert_eq!(
            settings.workload(&Cell {
                rtt_ms: 0,
                ..*link_pipeline
            }),
            (3000, 300)
        );
        // Without 0 in the list, only link cells; unary never over a link.
        settings.rtts = vec![20];
        settings.scenarios = vec![Scenario::Unary, Scenario::Snapshot];
        let cells = settings.cells();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].label(), "snapshot 128 MiB rtt 20 ms");
        let quick = Settings::new(true);
        assert_eq!(quick.link_snapshot_bytes, 32 << 20);
        assert!(quick.cells().iter().any(|c| c.rtt_ms == 20));
    }

    #[test]
    fn cpu_arithmetic() {
        let span = CpuSpan::between(Some((100, 7)), Some((130, 27))).unwrap();
        assert_eq!(
            span,
            CpuSpan {
                server: 30,
                client: 20
            }
        );
        // 50 ticks at 100 Hz: half a second.
        assert_eq!(span.total_us(100), 500_000.0);
        assert_eq!(CpuSpan::between(None, Some((1, 1))), None);
        assert_eq!(CpuSpan::between(Some((5, 1)), Some((4, 1))), None);
        assert_eq!(per_unit(Some(500_000.0), 1000.0), Some(500.0));
        assert_eq!(per_unit(Some(1.0), 0.0), None);
        assert_eq!(per_unit(None, 10.0), None);

        // A pipeline run: 1000 appends in 0.5 s with 50 ticks → 500 µs/op.
        let cell = Cell {
            scenario: Scenario::Pipeline,
            payload: 1 << 10,
            rtt_ms: 0,
            snapshot_bytes: 1 << 30,
        };
        let report = ClientReport {
            ops: 1000,
            elapsed_ns: 500_000_000,
            bytes: 1000 << 10,
            ..Default::default()
        };
        let sample = Sample::new(&cell, &report, None, Some(span), 100);
        assert_eq!(sample.values[&Metric::OpsPerS], 2000.0);
        assert_eq!(sample.values[&Metric::CpuUsPerOp], 500.0);
        assert!(!sample.values.contains_key(&Metric::CpuUsPerMb));
        assert!(sample.describe().contains("CPU 500.0 µs/op"));

        // Heartbeats under a 100 MB snapshot: CPU per MB of the snapshot.
        let under = Cell {
            scenario: Scenario::HeartbeatUnderSnapshot,
            payload: 0,
            rtt_ms: 20,
            snapshot_bytes: 100_000_000,
        };
        let heartbeats = ClientReport {
            latencies_ns: vec![1000, 3000, 2000],
            ops: 3,
            elapsed_ns: 1,
            ..Default::default()
        };
        let sample = Sample::new(&under, &heartbeats, None, Some(span), 100);
        assert_eq!(sample.values[&Metric::CpuUsPerMb], 5000.0);
        assert_eq!(sample.values[&Metric::P50Us], 2.0);
        // No marks, no CPU.
        let sample = Sample::new(&under, &heartbeats, None, None, 100);
        assert!(!sample.values.contains_key(&Metric::CpuUsPerMb));
    }

    #[test]
    fn rows_hold_median_min_and_max() {
        let cell = Cell {
            scenario: Scenario::Snapshot,
            payload: 128 << 20,
            rtt_ms: 20,
            snapshot_bytes: 128 << 20,
        };
        let samples: Vec<Sample> = [
            (100.0, 10.0, 30.0),
            (300.0, 40.0, 20.0),
            (200.0, 20.0, 25.0),
        ]
        .into_iter()
        .map(|(mb, sender, receiver)| Sample {
            values: [
                (Metric::MbPerS, mb),
                (Metric::SenderPeakRssMib, sender),
                (Metric::ReceiverPeakRssMib, receiver),
                (Metric::PeakRssMib, f64::max(sender, receiver)),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
        let row = row_of(&cell, "go-net", &samples);
        assert_eq!(
            (row.rtt_ms, row.runs, row.payload_bytes),
            (20, 3, 128 << 20)
        );
        assert_eq!(
            row.summary(Metric::MbPerS),
            Some(Summary {
                median: 200.0,
                min: 100.0,
                max: 300.0
            })
        );
        // Per run the larger of the two: 30, 40, 25.
        assert_eq!(
            row.summary(Metric::PeakRssMib),
            Some(Summary {
                median: 30.0,
                min: 25.0,
                max: 40.0
            })
        );
        assert_eq!(row.get(Metric::CpuUsPerMb), None);
        let mut rows = vec![row];
        fill_ratios(&mut rows);
        assert_eq!(rows[0].spread, Some(3.0));
    }
}
