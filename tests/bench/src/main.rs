//! `raft-grpc-bench`: our transport side by side with tonic, the Go
//! library, hashicorp's NetworkTransport and a plain TCP floor. What
//! follows is `tests/bench/README.md`: how to run it, what is measured, the
//! systems and the rows.
//!
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod go;
mod machine;
mod orchestrate;
mod protocol;
mod proxy;
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

/// With the `metrics` feature and RAFT_GRPC_BENCH_METRICS=prometheus, a
/// `serve` or `client` process records the transport's metrics into a
/// Prometheus recorder (its histograms kept by an upkeep thread, as an
/// exporter would), so that a run measures what metrics cost.
fn install_metrics_recorder() {
    #[cfg(feature = "metrics")]
    if std::env::var("RAFT_GRPC_BENCH_METRICS").as_deref() == Ok("prometheus") {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.0001, 0.001, 0.01, 0.1, 1.0, 10.0])
            .and_then(|b| b.install_recorder())
            .expect("install the Prometheus recorder");
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                handle.run_upkeep();
            }
        });
    }
}

/// With the `tracing` feature and RAFT_GRPC_BENCH_TRACING=info, a `serve`
/// or `client` process logs the transport's spans and events at info
/// level to stderr, as an operator's node would.
fn install_tracing_subscriber() {
    #[cfg(feature = "tracing")]
    if std::env::var("RAFT_GRPC_BENCH_TRACING").as_deref() == Ok("info") {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::io::stderr)
            .init();
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("serve" | "client")) {
        install_metrics_recorder();
        install_tracing_subscriber();
    }
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("link") => link(&args[1..]),
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

/// `link --target ADDR --rtt-ms N [--mbps M] [--until-eof]`: an emulated
/// link in front of a server, until killed (or, with `--until-eof`, until
/// stdin closes, as the orchestrator runs it); prints the address to
/// connect to.
fn link(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(args)?;
    let target = flags
        .get("target")
        .ok_or("link: missing --target")?
        .parse()
        .map_err(|e| format!("link: --target: {e}"))?;
    let rtt: f64 = flags
        .get("rtt-ms")
        .ok_or("link: missing --rtt-ms")?
        .parse()
        .map_err(|e| format!("link: --rtt-ms: {e}"))?;
    let rate = match flags.get("mbps") {
        Some(m) => Some(m.parse::<f64>().map_err(|e| format!("link: --mbps: {e}"))? * 1e6),
        None => None,
    };
    let link = proxy::Link::start(target, std::time::Duration::from_secs_f64(rtt / 1e3), rate)
        .map_err(|e| format!("link: {e}"))?;
    systems::announce(&link.addr().to_string());
    if flags.contains_key("until-eof") {
        systems::wait_for_stdin_eof();
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::park();
    }
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
            "quick"
                | "json"
                | "svg"
                | "runs"
                | "systems"
                | "scenarios"
                | "snapshot-bytes"
                | "pin"
                | "rtt-ms"
                | "link-snapshot-bytes"
                | "link-mbps"
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
    if let Some(list) = flags.get("rtt-ms") {
        settings.rtts = orchestrate::parse_rtt_list(list)?;
    }
    if let Some(bytes) = flags.get("link-snapshot-bytes") {
        settings.link_snapshot_bytes = bytes
            .parse()
            .map_err(|e| format!("--link-snapshot-bytes: {e}"))?;
    }
    if let Some(mbps) = flags.get("link-mbps") {
        let mbps: f64 = mbps.parse().map_err(|e| format!("--link-mbps: {e}"))?;
        if !(mbps.is_finite() && mbps > 0.0) {
            return Err("--link-mbps: expected a positive number of MB/s".to_owned());
        }
        settings.link_mbps = Some(mbps);
    }
    if let Some(pin) = flags.get("pin") {
        let (server, client) = pin
            .split_once(':')
            .ok_or("--pin: expected SERVER_CPUS:CLIENT_CPUS, e.g. 0:1")?;
        settings.pin = Some((server.to_owned(), client.to_owned()));
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
