//! The orchestrator: runs every measurement as a server process and a
//! client process, interleaving the systems, and turns the per-run values
//! into median rows.
//!
//! One run goes through every (scenario, payload) cell and, within a cell,
//! through every system that takes part, in an order rotated by one system
//! per run (A B C …, then B C … A): a system never always goes first, and a
//! slow phase of the shared machine hits all systems alike. Each
//! measurement starts a fresh server (`serve --system S --listen
//! 127.0.0.1:0`, which prints its address) and a fresh client (`client …`,
//! see [`crate::protocol`]), so that the two peak RSS values belong to that
//! measurement alone. The server's peak RSS (VmHWM) is read from
//! `/proc/<pid>/status` when the client is done, then the server is
//! killed. A watchdog kills either process when a measurement overruns its
//! time limit; the failure is reported and the run goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::{ClientArgs, ClientReport, Scenario};
use crate::report::{Meta, Report, Row, fill_ratios, size_label, sort_rows};
use crate::stats::{mean, median, percentile};
use crate::systems::{OURS, SYSTEMS, WINDOW, is_go, runs};

/// Entry sizes of the unary and pipeline scenarios: 1, 10, 100, 1000 KiB.
pub const PAYLOADS: [u64; 4] = [1 << 10, 10 << 10, 100 << 10, 1000 << 10];

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
    /// Bytes per streamed snapshot.
    pub snapshot_bytes: u64,
    /// Time between heartbeat sends, µs.
    pub interval_us: u64,
    /// A measurement not done in this long is killed and reported.
    pub time_limit: Duration,
    /// CPU lists (`taskset -c` syntax) to pin every server and every client
    /// process to; `None` lets the scheduler place them.
    pub pin: Option<(String, String)>,
}

impl Settings {
    /// The full run (`quick = false`) or the smoke run.
    pub fn new(quick: bool) -> Settings {
        Settings {
            quick,
            runs: if quick { 2 } else { 7 },
            systems: SYSTEMS.iter().map(|s| s.to_string()).collect(),
            scenarios: Scenario::ALL.to_vec(),
            snapshot_bytes: if quick { 64 << 20 } else { 1 << 30 },
            interval_us: 2000,
            time_limit: Duration::from_secs(if quick { 60 } else { 300 }),
            pin: None,
        }
    }

    /// Measured operations and warm-up operations of a cell: enough for
    /// stable medians (p99 of unary latency rests on ≥ 300 samples per run)
    /// while the whole full run stays near a quarter of an hour here.
    pub fn workload(&self, scenario: Scenario, payload: u64) -> (u64, u64) {
        let ops = match (scenario, payload >> 10) {
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
        let warmup = match scenario {
            Scenario::Snapshot => 0,
            Scenario::HeartbeatUnderSnapshot => 20,
            _ => (ops / 10).max(20),
        };
        (ops, warmup)
    }

    /// The (scenario, payload) cells of one run.
    pub fn cells(&self) -> Vec<(Scenario, u64)> {
        let mut cells = Vec::new();
        for &scenario in &self.scenarios {
            match scenario {
                Scenario::Unary | Scenario::Pipeline => {
                    cells.extend(PAYLOADS.iter().map(|&p| (scenario, p)));
                }
                Scenario::Snapshot => cells.push((scenario, self.snapshot_bytes)),
                Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot => {
                    cells.push((scenario, 0));
                }
            }
        }
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

/// One measurement's values (one run of one cell of one system).
#[derive(Debug, Clone, Default)]
struct Sample {
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    mean_us: Option<f64>,
    ops_per_s: Option<f64>,
    mb_per_s: Option<f64>,
    sender_rss_mib: Option<f64>,
    receiver_rss_mib: Option<f64>,
}

impl Sample {
    fn new(scenario: Scenario, report: &ClientReport, server_rss_kib: Option<u64>) -> Sample {
        let us = |ns: u64| ns as f64 / 1e3;
        let seconds = report.elapsed_ns as f64 / 1e9;
        let mut sample = Sample::default();
        match scenario {
            Scenario::Unary | Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot => {
                sample.p50_us = percentile(&report.latencies_ns, 50.0).map(us);
                sample.p99_us = percentile(&report.latencies_ns, 99.0).map(us);
                sample.mean_us = mean(&report.latencies_ns).map(|m| m / 1e3);
            }
            Scenario::Pipeline => {
                sample.ops_per_s = Some(report.ops as f64 / seconds);
                sample.mb_per_s = Some(report.bytes as f64 / seconds / 1e6);
            }
            Scenario::Snapshot => {
                sample.mb_per_s = Some(report.bytes as f64 / seconds / 1e6);
                sample.sender_rss_mib = Some(report.peak_rss_kib as f64 / 1024.0);
                sample.receiver_rss_mib = server_rss_kib.map(|k| k as f64 / 1024.0);
            }
        }
        sample
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |name: &str, value: Option<f64>, unit: &str| {
            if let Some(v) = value {
                parts.push(format!("{name} {v:.1}{unit}"));
            }
        };
        add("p50", self.p50_us, " µs");
        add("p99", self.p99_us, " µs");
        add("ops/s", self.ops_per_s, "");
        add("MB/s", self.mb_per_s, "");
        add("RSS sender", self.sender_rss_mib, " MiB");
        add("receiver", self.receiver_rss_mib, " MiB");
        parts.join(", ")
    }
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

fn measure(
    programs: &Programs,
    settings: &Settings,
    system: &str,
    scenario: Scenario,
    payload: u64,
) -> Result<Sample, String> {
    let program = if is_go(system) {
        programs.go.clone().ok_or("the Go program is not built")?
    } else {
        programs.rust.clone()
    };
    let pin = settings.pin.as_ref();
    let mut server = command(&program, pin.map(|p| p.0.as_str()))
        .args(["serve", "--system", system, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let server_stdout = server.stdout.take().ok_or("no server stdout")?;
    let server_stdin = server.stdin.take();
    let server = Guarded::new(server, settings.time_limit);
    let mut addr = String::new();
    let _ = BufReader::new(server_stdout).read_line(&mut addr);
    let addr = addr.trim().to_owned();
    if addr.is_empty() {
        let (status, _) = server.finish(true);
        return Err(format!("the server did not start ({status:?})"));
    }
    let (ops, warmup) = settings.workload(scenario, payload);
    let args = ClientArgs {
        system: system.to_owned(),
        target: addr,
        scenario,
        payload: if matches!(scenario, Scenario::Unary | Scenario::Pipeline) {
            payload
        } else {
            0
        },
        ops,
        warmup,
        window: WINDOW,
        snapshot_bytes: settings.snapshot_bytes,
        interval_us: settings.interval_us,
    };
    let result = run_client(
        command(&program, pin.map(|p| p.1.as_str())),
        &args,
        settings.time_limit,
    );
    // A server that is gone before we end it died on its own (or was
    // killed from outside): say so, it explains the client's failure.
    let server_gone = server.exited();
    let server_rss = crate::protocol::peak_rss_kib(&server.pid().to_string());
    drop(server_stdin);
    let (_, server_timed_out) = server.finish(true);
    if let Some(status) = server_gone {
        let client = match result {
            Ok(_) => "the client finished".to_owned(),
            Err(e) => e,
        };
        return Err(format!(
            "the server process ended during the measurement ({status}); {client}"
        ));
    }
    let report = result?;
    if server_timed_out {
        return Err("the server overran the time limit".to_owned());
    }
    Ok(Sample::new(scenario, &report, server_rss))
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

fn run_client(
    mut command: Command,
    args: &ClientArgs,
    limit: Duration,
) -> Result<ClientReport, String> {
    let mut client = command
        .args(args.to_argv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the client: {e}"))?;
    let mut stdout = client.stdout.take().ok_or("no client stdout")?;
    let client = Guarded::new(client, limit);
    let mut output = String::new();
    let _ = stdout.read_to_string(&mut output);
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
    serde_json::from_str(output.trim())
        .map_err(|e| format!("the client's report does not parse: {e}: {output:?}"))
}

/// Runs every measurement and returns the report (rows of medians). Each
/// measurement's values go to stderr as they come.
pub fn run(settings: &Settings, programs: &Programs, skipped: Vec<String>) -> Report {
    let systems: Vec<String> = settings
        .systems
        .iter()
        .filter(|s| !is_go(s) || programs.go.is_some())
        .cloned()
        .collect();
    let cells = settings.cells();
    let mut samples: BTreeMap<(usize, u64, String), Vec<Sample>> = BTreeMap::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    for run in 0..settings.runs {
        for &(scenario, payload) in &cells {
            let mut order: Vec<&String> = systems.iter().filter(|s| runs(s, scenario)).collect();
            if !order.is_empty() {
                let len = order.len();
                order.rotate_left(run as usize % len);
            }
            for system in order {
                let at = Instant::now();
                let result = measure(programs, settings, system, scenario, payload);
                let label = format!(
                    "[run {}/{} {:>5.0} s] {} {} {}",
                    run + 1,
                    settings.runs,
                    started.elapsed().as_secs_f64(),
                    scenario.name(),
                    size_label(payload),
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
                            .entry((scenario as usize, payload, system.clone()))
                            .or_default()
                            .push(sample);
                    }
                    Err(e) => {
                        eprintln!("{label}: FAILED: {e}");
                        failures.push(format!(
                            "run {}: {} {} {}: {e}",
                            run + 1,
                            scenario.name(),
                            size_label(payload),
                            system
                        ));
                    }
                }
            }
        }
    }
    let mut rows: Vec<Row> = samples
        .into_iter()
        .map(|((scenario, payload, system), samples)| {
            let scenario = Scenario::ALL[scenario];
            let med = |f: &dyn Fn(&Sample) -> Option<f64>| {
                median(&samples.iter().filter_map(f).collect::<Vec<_>>())
            };
            let sender = med(&|s| s.sender_rss_mib);
            let receiver = med(&|s| s.receiver_rss_mib);
            Row {
                system,
                scenario: scenario.name().to_owned(),
                payload_bytes: payload,
                p50_us: med(&|s| s.p50_us),
                p99_us: med(&|s| s.p99_us),
                mean_us: med(&|s| s.mean_us),
                ops_per_s: med(&|s| s.ops_per_s),
                mb_per_s: med(&|s| s.mb_per_s),
                peak_rss_mib: match (sender, receiver) {
                    (Some(s), Some(r)) => Some(s.max(r)),
                    (s, r) => s.or(r),
                },
                sender_peak_rss_mib: sender,
                receiver_peak_rss_mib: receiver,
                ours_over_peer: None,
                runs: samples.len() as u64,
            }
        })
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
            heartbeat_interval_us: settings.interval_us,
            ours: OURS.to_owned(),
            method: format!(
                "wall time measured by the client process against a server process, both on \
                 127.0.0.1, threads sleeping in the kernel between events (no spinning); fresh \
                 processes per measurement; {}",
                match &settings.pin {
                    Some((server, client)) => {
                        format!("servers pinned to CPUs {server}, clients to CPUs {client}")
                    }
                    None => "processes placed by the scheduler (not pinned)".to_owned(),
                }
            ),
            skipped,
            failures,
        },
    }
}
