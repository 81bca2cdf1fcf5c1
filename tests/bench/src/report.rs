//! The outputs: JSON rows (the schema below), the table of medians and
//! ratios on stdout, and the SVG plot.
//!
//! JSON: `{"rows": [Row, …], "meta": Meta}`. A [`Row`] has `system`,
//! `scenario` (`unary`, `pipeline`, `snapshot`, `heartbeat_idle`,
//! `heartbeat_under_snapshot`), `payload_bytes` (the entry's data size; the
//! snapshot's size for snapshot rows — 1073741824 in a full run on
//! loopback; 0 for heartbeat rows) and `rtt_ms` (0 on loopback, else the
//! round trip of the emulated link the client talked through), then the
//! metrics that apply ([`Metric`]), each as three keys: `NAME`, the median
//! across runs of the per-run value, and `NAME_min` and `NAME_max`, the
//! smallest and the largest per-run value: `p50_us`, `p99_us`, `mean_us`
//! (unary and heartbeats), `ops_per_s` and `mb_per_s` (pipeline; `mb_per_s`
//! for snapshots), `peak_rss_mib`, `sender_peak_rss_mib` and
//! `receiver_peak_rss_mib` (snapshots; `peak_rss_mib` is, per run, the
//! larger of the two processes'), and the CPU time of both processes in the
//! measured phase, `cpu_us_per_op` (per call, append or heartbeat) or
//! `cpu_us_per_mb` (snapshot and heartbeat_under_snapshot rows: per MB of
//! snapshot streamed). Every row also carries `ours_over_peer` — rust-smol's
//! median divided by this row's for the scenario's main metric, between
//! rows of the same scenario, payload and rtt (`p50_us` for latency
//! scenarios: below 1 means ours is faster; `ops_per_s` for pipelines and
//! `mb_per_s` for snapshots: above 1 means ours is faster) — `spread`, the
//! main metric's max / min over runs, and `runs`, how many runs the values
//! are taken over. MB is 10^6 bytes, MiB 2^20.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::machine::Machine;
use crate::protocol::Scenario;
use crate::stats::median;
use crate::systems::{OURS, SYSTEMS};

/// A per-run value that rows summarise over runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Median latency, µs.
    P50Us,
    /// 99th-percentile latency (nearest rank), µs.
    P99Us,
    /// Mean latency, µs.
    MeanUs,
    /// Operations per second.
    OpsPerS,
    /// Payload megabytes (10^6 bytes) per second.
    MbPerS,
    /// Peak RSS, MiB: the larger of sender's and receiver's.
    PeakRssMib,
    /// The sending (client) process's peak RSS, MiB.
    SenderPeakRssMib,
    /// The receiving (server) process's peak RSS, MiB.
    ReceiverPeakRssMib,
    /// User + system CPU time of server and client in the measured phase,
    /// µs per operation.
    CpuUsPerOp,
    /// User + system CPU time of server and client in the measured phase,
    /// µs per MB of snapshot.
    CpuUsPerMb,
}

impl Metric {
    /// Every metric, in the order of the JSON keys.
    pub const ALL: [Metric; 10] = [
        Metric::P50Us,
        Metric::P99Us,
        Metric::MeanUs,
        Metric::OpsPerS,
        Metric::MbPerS,
        Metric::PeakRssMib,
        Metric::SenderPeakRssMib,
        Metric::ReceiverPeakRssMib,
        Metric::CpuUsPerOp,
        Metric::CpuUsPerMb,
    ];

    /// The JSON key of the median.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50Us => "p50_us",
            Metric::P99Us => "p99_us",
            Metric::MeanUs => "mean_us",
            Metric::OpsPerS => "ops_per_s",
            Metric::MbPerS => "mb_per_s",
            Metric::PeakRssMib => "peak_rss_mib",
            Metric::SenderPeakRssMib => "sender_peak_rss_mib",
            Metric::ReceiverPeakRssMib => "receiver_peak_rss_mib",
            Metric::CpuUsPerOp => "cpu_us_per_op",
            Metric::CpuUsPerMb => "cpu_us_per_mb",
        }
    }

    /// The metric whose median key is `name`.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The metric and part (median, `_min`, `_max`) a JSON key names.
    fn parse_key(key: &str) -> Option<(Metric, Part)> {
        if let Some(m) = Metric::parse(key) {
            return Some((m, Part::Median));
        }
        if let Some(m) = key.strip_suffix("_min").and_then(Metric::parse) {
            return Some((m, Part::Min));
        }
        key.strip_suffix("_max")
            .and_then(Metric::parse)
            .map(|m| (m, Part::Max))
    }
}

#[derive(Clone, Copy)]
enum Part {
    Median,
    Min,
    Max,
}

/// A metric over runs: the median, the smallest and the largest per-run
/// value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median across runs.
    pub median: f64,
    /// Smallest per-run value.
    pub min: f64,
    /// Largest per-run value.
    pub max: f64,
}

impl Summary {
    /// The summary of per-run `values`; `None` for none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        Some(Summary {
            median: median(values)?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// One value in every run.
    #[cfg(test)]
    pub fn constant(value: f64) -> Summary {
        Summary {
            median: value,
            min: value,
            max: value,
        }
    }

    /// The run-to-run spread, max / min (≥ 1); `None` when min is 0.
    pub fn spread(&self) -> Option<f64> {
        (self.min > 0.0).then(|| self.max / self.min)
    }
}

/// A row's metrics, written as flat keys: `NAME`, `NAME_min`, `NAME_max`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub BTreeMap<Metric, Summary>);

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len() * 3))?;
        for (metric, summary) in &self.0 {
            let name = metric.name();
            map.serialize_entry(name, &summary.median)?;
            map.serialize_entry(&format!("{name}_min"), &summary.min)?;
            map.serialize_entry(&format!("{name}_max"), &summary.max)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metrics, D::Error> {
        struct Flat;
        impl<'de> Visitor<'de> for Flat {
            type Value = Metrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("metric keys NAME, NAME_min, NAME_max")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metrics, A::Error> {
                let mut parts: BTreeMap<Metric, [Option<f64>; 3]> = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let (metric, part) = Metric::parse_key(&key)
                        .ok_or_else(|| A::Error::custom(format!("unknown key {key}")))?;
                    parts.entry(metric).or_default()[part as usize] = Some(map.next_value()?);
                }
                parts
                    .into_iter()
                    .map(|(metric, parts)| match parts {
                        [Some(median), Some(min), Some(max)] => {
                            Ok((metric, Summary { median, min, max }))
                        }
                        _ => Err(A::Error::custom(format!(
                            "{} needs its median, _min and _max",
                            metric.name()
                        ))),
                    })
                    .collect::<Result<_, _>>()
                    .map(Metrics)
            }
        }
        deserializer.deserialize_map(Flat)
    }
}

/// One row of the results: one system in one scenario at one payload size
/// over one link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `rust-smol`, `rust-blocking`, `rust-tokio`, `tonic`, `go-grpc`, `go-net`,
    /// `tcp-floor`, …
    pub system: String,
    /// The scenario's name.
    pub scenario: String,
    /// Entry size; snapshot size for snapshot rows; 0 for heartbeats.
    pub payload_bytes: u64,
    /// Round trip of the emulated link, ms; 0 on loopback.
    #[serde(default)]
    pub rtt_ms: u64,
    /// The metrics that apply, each median, min and max over runs.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// rust-smol's main metric divided by this row's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ours_over_peer: Option<f64>,
    /// The main metric's max / min over runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    /// Runs the values are taken over.
    #[serde(default)]
    pub runs: u64,
}

impl Row {
    /// The median of `metric`, if the row has it.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.summary(metric).map(|s| s.median)
    }

    /// `metric` over runs, if the row has it.
    pub fn summary(&self, metric: Metric) -> Option<Summary> {
        self.metrics.0.get(&metric).copied()
    }

    /// Sets `metric`.
    pub fn set(&mut self, metric: Metric, summary: Summary) {
        self.metrics.0.insert(metric, summary);
    }

    /// The row's scenario, if known.
    pub fn scenario(&self) -> Option<Scenario> {
        Scenario::parse(&self.scenario)
    }

    /// What ratios compare: rows of the same scenario, payload and rtt.
    fn cell(&self) -> (String, u64, u64) {
        (self.scenario.clone(), self.payload_bytes, self.rtt_ms)
    }
}

/// How the numbers were made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Appends in flight on every pipeline.
    pub pipeline_window: u64,
    /// Runs per system (interleaved).
    pub runs: u64,
    /// Whether this was a `--quick` smoke run (smaller counts, smaller
    /// snapshot).
    pub quick: bool,
    /// Bytes of each streamed snapshot on loopback.
    pub snapshot_bytes: u64,
    /// Bytes of each streamed snapshot over an emulated link.
    #[serde(default)]
    pub link_snapshot_bytes: u64,
    /// The round trips measured, ms (0: loopback, no link).
    #[serde(default)]
    pub rtt_ms: Vec<u64>,
    /// The links' bandwidth cap each way, MB/s (none: uncapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_mbps: Option<f64>,
    /// Time between heartbeat sends, µs.
    pub heartbeat_interval_us: u64,
    /// Clock ticks per second of the CPU times (`getconf CLK_TCK`): CPU
    /// time is read in steps of 1/clk_tck s.
    #[serde(default)]
    pub clk_tck: u64,
    /// The system `ours_over_peer` divides by.
    pub ours: String,
    /// What was measured, in a sentence.
    pub method: String,
    /// Where it ran: kernel, CPU, vCPUs, memory, commit, date.
    #[serde(flatten)]
    pub machine: Machine,
    /// Systems left out, and why.
    pub skipped: Vec<String>,
    /// Measurements that failed.
    pub failures: Vec<String>,
}

/// Everything written to the JSON file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
    /// How they were made.
    pub meta: Meta,
}

/// The scenario's main metric, and whether higher is better.
pub fn main_metric(scenario: Option<Scenario>) -> (Metric, bool) {
    match scenario {
        Some(Scenario::Pipeline) => (Metric::OpsPerS, true),
        Some(Scenario::Snapshot) => (Metric::MbPerS, true),
        _ => (Metric::P50Us, false),
    }
}

/// The CPU metric of a scenario: per MB of snapshot where a snapshot is
/// what the measured phase does, per operation elsewhere.
pub fn cpu_metric(scenario: Scenario) -> Metric {
    match scenario {
        Scenario::Snapshot | Scenario::HeartbeatUnderSnapshot => Metric::CpuUsPerMb,
        _ => Metric::CpuUsPerOp,
    }
}

/// Whether a (scenario, payload) cell is measured over emulated links.
pub fn runs_over_links(scenario: Scenario, payload: u64) -> bool {
    match scenario {
        Scenario::Snapshot | Scenario::HeartbeatUnderSnapshot => true,
        Scenario::Pipeline => payload == crate::orchestrate::LINK_PIPELINE_PAYLOAD,
        Scenario::Unary | Scenario::HeartbeatIdle => false,
    }
}

/// Fills every row's `ours_over_peer` from the rust-smol row of the same
/// scenario, payload and rtt, and its `spread`.
pub fn fill_ratios(rows: &mut [Row]) {
    let ours: BTreeMap<(String, u64, u64), f64> = rows
        .iter()
        .filter(|r| r.system == OURS)
        .filter_map(|r| Some((r.cell(), r.get(main_metric(r.scenario()).0)?)))
        .collect();
    for row in rows.iter_mut() {
        let main = row.summary(main_metric(row.scenario()).0);
        row.ours_over_peer = match (ours.get(&row.cell()), main) {
            (Some(&o), Some(m)) if m.median > 0.0 => Some(o / m.median),
            _ => None,
        };
        row.spread = main.and_then(|m| m.spread());
    }
}

/// Orders rows: loopback first, then the link rows; within each, by
/// scenario, payload, rtt, then system (report order).
pub fn sort_rows(rows: &mut [Row]) {
    let scenario_rank = |r: &Row| r.scenario().map_or(usize::MAX, |s| s as usize);
    let system_rank = |r: &Row| {
        SYSTEMS
            .iter()
            .position(|s| *s == r.system)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(|r| {
        (
            r.rtt_ms > 0,
            scenario_rank(r),
            r.payload_bytes,
            r.rtt_ms,
            system_rank(r),
        )
    });
}

/// The JSON text of `report`.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serializes") + "\n"
}

/// Checks that `json` follows the schema: a `meta` object with the keys
/// that say how and where the run was made, and a `rows` array whose rows
/// have a known system and scenario, an integer `payload_bytes`, an integer
/// `rtt_ms` from `meta.rtt_ms` (link rows only in the scenarios measured
/// over links), only known keys, finite non-negative numbers, the metrics
/// their scenario has, each with its `_min` and `_max` around the median,
/// the right CPU metric if any, and a spread of at least 1.
pub fn validate(json: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let meta = value
        .get("meta")
        .and_then(|m| m.as_object())
        .ok_or("no meta object")?;
    for key in [
        "pipeline_window",
        "runs",
        "snapshot_bytes",
        "link_snapshot_bytes",
        "heartbeat_interval_us",
        "clk_tck",
        "vcpus",
        "memory_mib",
    ] {
        if meta.get(key).and_then(|v| v.as_u64()).is_none() {
            return Err(format!("meta.{key} is not an integer"));
        }
    }
    for key in [
        "ours",
        "method",
        "kernel",
        "cpu_model",
        "git_commit",
        "date",
    ] {
        if meta.get(key).and_then(|v| v.as_str()).is_none() {
            return Err(format!("meta.{key} is not a string"));
        }
    }
    if meta.get("quick").and_then(|v| v.as_bool()).is_none() {
        return Err("meta.quick is not a boolean".to_owned());
    }
    let rtts: Vec<u64> = meta
        .get("rtt_ms")
        .and_then(|r| r.as_array())
        .and_then(|r| r.iter().map(|v| v.as_u64()).collect())
        .ok_or("meta.rtt_ms is not an array of integers")?;
    let rows = value
        .get("rows")
        .and_then(|r| r.as_array())
        .ok_or("no rows array")?;
    for (i, row) in rows.iter().enumerate() {
        let object = row.as_object().ok_or(format!("row {i} is not an object"))?;
        let system = object.get("system").and_then(|s| s.as_str()).unwrap_or("");
        if !SYSTEMS.contains(&system) {
            return Err(format!("row {i}: unknown system {system:?}"));
        }
        let scenario = object
            .get("scenario")
            .and_then(|s| s.as_str())
            .and_then(Scenario::parse)
            .ok_or(format!("row {i}: unknown scenario"))?;
        let payload = object
            .get("payload_bytes")
            .and_then(|p| p.as_u64())
            .ok_or(format!("row {i}: payload_bytes is not an integer"))?;
        let rtt = object
            .get("rtt_ms")
            .and_then(|p| p.as_u64())
            .ok_or(format!("row {i}: rtt_ms is not an integer"))?;
        if !rtts.contains(&rtt) {
            return Err(format!("row {i}: rtt_ms {rtt} is not in meta.rtt_ms"));
        }
        if rtt > 0 && !runs_over_links(scenario, payload) {
            return Err(format!(
                "row {i}: {} {payload} is not measured over links",
                scenario.name()
            ));
        }
        if object.get("runs").and_then(|r| r.as_u64()).unwrap_or(0) == 0 {
            return Err(format!("row {i}: runs is not a positive integer"));
        }
        let number = |key: &str| -> Result<Option<f64>, String> {
            let Some(value) = object.get(key) else {
                return Ok(None);
            };
            let number = value
                .as_f64()
                .ok_or(format!("row {i}: {key} is not a number"))?;
            if !number.is_finite() || number < 0.0 {
                return Err(format!("row {i}: {key} = {number}"));
            }
            Ok(Some(number))
        };
        for key in object.keys() {
            match key.as_str() {
                // Checked above.
                "system" | "scenario" | "payload_bytes" | "rtt_ms" | "runs" => {}
                "ours_over_peer" | "spread" => {
                    number(key)?;
                }
                _ if Metric::parse_key(key).is_some() => {
                    number(key)?;
                }
                _ => return Err(format!("row {i}: unknown key {key}")),
            }
        }
        for metric in Metric::ALL {
            let name = metric.name();
            let (min_key, max_key) = (format!("{name}_min"), format!("{name}_max"));
            match (number(name)?, number(&min_key)?, number(&max_key)?) {
                (None, None, None) => {}
                (Some(median), Some(min), Some(max)) => {
                    let slack = 1e-9 * max.abs().max(1.0);
                    if !(min <= median + slack && median <= max + slack) {
                        return Err(format!(
                            "row {i}: {name} {median} outside its range {min}..{max}"
                        ));
                    }
                }
                _ => return Err(format!("row {i}: {name} needs {min_key} and {max_key}")),
            }
        }
        let needs: &[&str] = match scenario {
            Scenario::Unary => &["p50_us", "p99_us", "mean_us"],
            Scenario::Pipeline => &["ops_per_s", "mb_per_s"],
            Scenario::Snapshot => &["mb_per_s", "peak_rss_mib"],
            Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot => {
                &["p50_us", "p99_us", "mean_us"]
            }
        };
        if let Some(missing) = needs.iter().find(|k| !object.contains_key(**k)) {
            return Err(format!("row {i}: {} without {missing}", scenario.name()));
        }
        let wrong_cpu = match cpu_metric(scenario) {
            Metric::CpuUsPerMb => Metric::CpuUsPerOp,
            _ => Metric::CpuUsPerMb,
        };
        if object.contains_key(wrong_cpu.name()) {
            return Err(format!(
                "row {i}: {} has {}, not {}",
                scenario.name(),
                wrong_cpu.name(),
                cpu_metric(scenario).name()
            ));
        }
        if number("spread")?.is_some_and(|s| s < 1.0 - 1e-9) {
            return Err(format!("row {i}: spread below 1"));
        }
        let heartbeat = matches!(
            scenario,
            Scenario::HeartbeatIdle | Scenario::HeartbeatUnderSnapshot
        );
        if heartbeat != (payload == 0) {
            return Err(format!(
                "row {i}: {} with payload_bytes {payload}",
                scenario.name()
            ));
        }
    }
    Ok(())
}

/// A payload size as people say it (1 KiB, 1 GiB, …).
pub fn size_label(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_owned()
    } else if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

fn num(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The table's columns: header, width, left-aligned.
const COLUMNS: [(&str, usize, bool); 15] = [
    ("scenario", 24, true),
    ("payload", 8, false),
    ("rtt", 4, false),
    ("system", 13, true),
    ("p50 µs", 8, false),
    ("p99 µs", 8, false),
    ("mean µs", 8, false),
    ("ops/s", 8, false),
    ("MB/s", 7, false),
    ("main min–max", 15, false),
    ("spread", 6, false),
    ("CPU µs", 9, false),
    ("RSS MiB s/r", 11, false),
    ("ours/peer", 9, false),
    ("p99 o/p", 7, false),
];

fn table_line(out: &mut String, cells: &[String]) {
    let mut line = String::new();
    for (i, (cell, &(_, width, left))) in cells.iter().zip(&COLUMNS).enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let pad = width.saturating_sub(cell.chars().count());
        if left {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        } else {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cell);
        }
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

/// The table: machine facts, then the rows (loopback, then emulated
/// links) with medians, the main metric's min–max over runs and spread,
/// CPU per operation, and the ratio ours/peer.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let meta = &report.meta;
    let _ = writeln!(out, "{}", meta.machine.describe());
    let _ = writeln!(
        out,
        "medians of {} interleaved runs{}; pipeline window {} on every system; ours = {}; \
         ours/peer = {}'s main metric ÷ the row's, same scenario, payload and rtt \
         (latency: < 1 ours faster; throughput: > 1 ours faster)",
        meta.runs,
        if meta.quick { " (quick)" } else { "" },
        meta.pipeline_window,
        meta.ours,
        meta.ours
    );
    let _ = writeln!(
        out,
        "main = p50 µs (latency rows), ops/s (pipeline), MB/s (snapshot); min–max over runs, \
         spread = max/min; CPU µs = user+system time of server and client in the measured \
         phase per operation (\"/MB\": per MB of snapshot), read in steps of {} ms",
        1000u64
            .checked_div(meta.clk_tck)
            .map_or("?".to_owned(), |ms| ms.to_string())
    );
    let ours_p99: BTreeMap<(String, u64, u64), f64> = report
        .rows
        .iter()
        .filter(|r| r.system == meta.ours)
        .filter_map(|r| Some((r.cell(), r.get(Metric::P99Us)?)))
        .collect();
    let header: Vec<String> = COLUMNS.iter().map(|c| c.0.to_owned()).collect();
    for (link, title) in [
        (false, "loopback: client and server on 127.0.0.1".to_owned()),
        (
            true,
            format!(
                "emulated links: the client talks to a delay proxy in front of the server, \
                 rtt/2 each way, {}; snapshot {}",
                match meta.link_mbps {
                    Some(m) => format!("{m} MB/s each way"),
                    None => "no bandwidth cap".to_owned(),
                },
                size_label(meta.link_snapshot_bytes)
            ),
        ),
    ] {
        let rows: Vec<&Row> = report
            .rows
            .iter()
            .filter(|r| (r.rtt_ms > 0) == link)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n== {title}");
        table_line(&mut out, &header);
        let mut last: Option<(String, u64, u64)> = None;
        for row in rows {
            let key = row.cell();
            if last
                .as_ref()
                .is_some_and(|l| (&l.0, l.1) != (&key.0, key.1))
            {
                out.push('\n');
            }
            let rss = match (
                row.get(Metric::SenderPeakRssMib),
                row.get(Metric::ReceiverPeakRssMib),
            ) {
                (Some(s), Some(r)) => format!("{s:.0}/{r:.0}"),
                _ => "-".to_owned(),
            };
            let p99_ratio = match (ours_p99.get(&key), row.get(Metric::P99Us)) {
                (Some(o), Some(m)) if m > 0.0 => format!("{:.2}", o / m),
                _ => "-".to_owned(),
            };
            let range = row
                .summary(main_metric(row.scenario()).0)
                .map_or("-".to_owned(), |s| {
                    format!("{}–{}", num(Some(s.min)), num(Some(s.max)))
                });
            let cpu = match (row.get(Metric::CpuUsPerOp), row.get(Metric::CpuUsPerMb)) {
                (Some(op), _) => num(Some(op)),
                (None, Some(mb)) => format!("{}/MB", num(Some(mb))),
                (None, None) => "-".to_owned(),
            };
            let cells = [
                row.scenario.clone(),
                size_label(row.payload_bytes),
                row.rtt_ms.to_string(),
                row.system.clone(),
                num(row.get(Metric::P50Us)),
                num(row.get(Metric::P99Us)),
                num(row.get(Metric::MeanUs)),
                num(row.get(Metric::OpsPerS)),
                num(row.get(Metric::MbPerS)),
                range,
                row.spread.map_or("-".to_owned(), |s| format!("{s:.2}")),
                cpu,
                rss,
                row.ours_over_peer
                    .map_or("-".to_owned(), |r| format!("{r:.2}")),
                p99_ratio,
            ];
            table_line(&mut out, &cells);
            last = Some(key);
        }
    }
    if !meta.skipped.is_empty() || !meta.failures.is_empty() {
        out.push('\n');
    }
    for line in meta.skipped.iter().chain(&meta.failures) {
        let _ = writeln!(out, "note: {line}");
    }
    out
}

/// Each system's colour in the plot.
fn colour(system: &str) -> &'static str {
    match system {
        "rust-smol" => "#d62728",
        "rust-blocking" => "#ff7f0e",
        "tonic" => "#9467bd",
        "go-grpc" => "#1f77b4",
        "go-net" => "#17becf",
        "rust-tokio" => "#2ca02c",
        "rust-tower" => "#8c564b",
        "rust-smol-tls" => "#e377c2",
        "tonic-tls" => "#bcbd22",
        _ => "#7f7f7f",
    }
}

/// A value on a bar, three significant digits at most.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One bar: a system's value, an optional second value drawn as a tick
/// (p99 over a p50 bar) and a note under the group.
struct Bar {
    system: String,
    value: f64,
    tick: Option<f64>,
    /// The bar's value's minimum and maximum over runs (in the tooltip).
    range: Option<(f64, f64)>,
}

struct Group {
    label: String,
    bars: Vec<Bar>,
}

/// What a panel draws of a row: the bar's value, the tick's, and the bar's
/// range over runs.
type BarValue<'a> = &'a dyn Fn(&Row) -> Option<(f64, Option<f64>, Option<(f64, f64)>)>;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL_HEIGHT: f64 = 250.0;

/// Draws a grouped bar chart at `top`; returns the height used.
fn panel(svg: &mut String, top: f64, title: &str, groups: &[Group], log: bool) -> f64 {
    let plot_top = top + 30.0;
    let plot_height = PANEL_HEIGHT - 75.0;
    let bottom = plot_top + plot_height;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="title">{}</text>"#,
        WIDTH / 2.0,
        top + 16.0,
        escape(title)
    );
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.bars.iter())
        .flat_map(|b| std::iter::once(b.value).chain(b.tick))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    if values.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="text">no data</text>"#,
            WIDTH / 2.0,
            plot_top + plot_height / 2.0
        );
        return PANEL_HEIGHT;
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let (lo, hi) = if log {
        (
            10f64.powf(min.log10().floor()),
            10f64.powf((max * 1.5).log10().ceil()),
        )
    } else {
        (0.0, max * 1.15)
    };
    let y = |v: f64| -> f64 {
        let f = if log {
            (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10())
        } else {
            v / hi
        };
        bottom - f * plot_height
    };
    // Grid lines: decades (log) or fifths (linear).
    let ticks: Vec<f64> = if log {
        let mut t = lo;
        let mut v = Vec::new();
        while t <= hi * 1.0001 {
            v.push(t);
            t *= 10.0;
        }
        v
    } else {
        (0..=5).map(|i| hi * f64::from(i) / 5.0).collect()
    };
    for t in ticks {
        let ty = y(t);
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" class="grid"/><text x="{}" y="{:.1}" text-anchor="end" class="text">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 5.0,
            ty + 4.0,
            short(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" class="axis"/><line x1="{LEFT}" y1="{plot_top}" x2="{LEFT}" y2="{bottom}" class="axis"/>"#,
        WIDTH - RIGHT
    );
    let group_width = (WIDTH - LEFT - RIGHT) / groups.len() as f64;
    for (gi, group) in groups.iter().enumerate() {
        let gx = LEFT + group_width * gi as f64;
        let n = group.bars.len().max(1) as f64;
        let bar_width = ((group_width - 30.0) / n).min(40.0);
        let start = gx + (group_width - bar_width * n) / 2.0;
        for (bi, bar) in group.bars.iter().enumerate() {
            let bx = start + bar_width * bi as f64;
            let by = y(bar.value);
            let _ = writeln!(
                svg,
                r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}{}</title></rect>"#,
                bar_width - 3.0,
                (bottom - by).max(0.5),
                colour(&bar.system),
                escape(&bar.system),
                escape(&group.label),
                short(bar.value),
                bar.range.map_or(String::new(), |(lo, hi)| format!(
                    " (runs: {}–{})",
                    short(lo),
                    short(hi)
                ))
            );
            let mut label_y = by;
            if let Some(tick) = bar.tick {
                let ty = y(tick);
                label_y = label_y.min(ty);
                let _ = writeln!(
                    svg,
                    r#"<line x1="{bx:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="black" stroke-width="2"/><line x1="{:.1}" y1="{ty:.1}" x2="{:.1}" y2="{by:.1}" stroke="black" stroke-width="1"/>"#,
                    bx + bar_width - 3.0,
                    bx + (bar_width - 3.0) / 2.0,
                    bx + (bar_width - 3.0) / 2.0
                );
            }
            let lx = bx + (bar_width - 3.0) / 2.0 + 3.0;
            let ly = label_y - 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(-90 {lx:.1} {ly:.1})" class="small">{}</text>"#,
                short(bar.value)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="text">{}</text>"#,
            gx + group_width / 2.0,
            bottom + 16.0,
            escape(&group.label)
        );
    }
    PANEL_HEIGHT
}

/// The SVG plot: one panel per scenario on loopback, a bar per system, and
/// when there are link rows one panel per scenario over links, a group per
/// round trip.
pub fn svg(report: &Report) -> String {
    let rows = &report.rows;
    let meta = &report.meta;
    let present: Vec<&str> = SYSTEMS
        .iter()
        .copied()
        .filter(|s| rows.iter().any(|r| r.system == *s))
        .collect();
    let bars = |pick: &dyn Fn(&Row) -> bool, value: BarValue| -> Vec<Bar> {
        present
            .iter()
            .filter_map(|system| {
                let row = rows.iter().find(|r| r.system == *system && pick(r))?;
                let (value, tick, range) = value(row)?;
                Some(Bar {
                    system: system.to_string(),
                    value,
                    tick,
                    range,
                })
            })
            .collect()
    };
    // Loopback: a group per payload.
    let groups_of = |scenario: Scenario, value: BarValue| {
        let mut payloads: Vec<u64> = rows
            .iter()
            .filter(|r| r.scenario == scenario.name() && r.rtt_ms == 0)
            .map(|r| r.payload_bytes)
            .collect();
        payloads.sort_unstable();
        payloads.dedup();
        payloads
            .into_iter()
            .map(|payload| Group {
                label: size_label(payload),
                bars: bars(
                    &|r| {
                        r.scenario == scenario.name() && r.payload_bytes == payload && r.rtt_ms == 0
                    },
                    value,
                ),
            })
            .collect::<Vec<_>>()
    };
    // Over links: a group per round trip.
    let groups_by_rtt = |scenario: Scenario, value: BarValue| {
        let mut rtts: Vec<u64> = rows
            .iter()
            .filter(|r| r.scenario == scenario.name() && r.rtt_ms > 0)
            .map(|r| r.rtt_ms)
            .collect();
        rtts.sort_unstable();
        rtts.dedup();
        rtts.into_iter()
            .map(|rtt| Group {
                label: format!("rtt {rtt} ms"),
                bars: bars(&|r| r.scenario == scenario.name() && r.rtt_ms == rtt, value),
            })
            .collect::<Vec<_>>()
    };
    let range = |r: &Row, m: Metric| r.summary(m).map(|s| (s.min, s.max));
    let latency: BarValue = &|r| {
        Some((
            r.get(Metric::P50Us)?,
            r.get(Metric::P99Us),
            range(r, Metric::P50Us),
        ))
    };
    let throughput: BarValue = &|r| Some((r.get(Metric::MbPerS)?, None, range(r, Metric::MbPerS)));
    let unary = groups_of(Scenario::Unary, latency);
    let pipeline = groups_of(Scenario::Pipeline, throughput);
    let mut snapshot = groups_of(Scenario::Snapshot, throughput);
    let snapshot_rss = groups_of(Scenario::Snapshot, &|r| {
        Some((
            r.get(Metric::ReceiverPeakRssMib)?,
            r.get(Metric::SenderPeakRssMib),
            range(r, Metric::ReceiverPeakRssMib),
        ))
    });
    for group in &mut snapshot {
        group.label = format!("{} snapshot: MB/s", group.label);
    }
    let mut heartbeats = groups_of(Scenario::HeartbeatIdle, latency);
    for g in &mut heartbeats {
        g.label = "idle".to_owned();
    }
    let mut under = groups_of(Scenario::HeartbeatUnderSnapshot, latency);
    for g in &mut under {
        g.label = format!("during a {} snapshot", size_label(meta.snapshot_bytes));
    }
    heartbeats.extend(under);
    let mut snapshot_panel = snapshot;
    for mut group in snapshot_rss {
        group.label = "peak RSS MiB: receiver (bar), sender (tick)".to_owned();
        snapshot_panel.push(group);
    }

    let mut panels: Vec<(String, Vec<Group>, bool)> = vec![
        (
            "Unary AppendEntries, one entry: p50 latency in µs (bar) and p99 (tick), log scale, lower is better".to_owned(),
            unary,
            true,
        ),
        (
            format!(
                "Pipelined AppendEntries, {} in flight: MB/s, log scale, higher is better",
                meta.pipeline_window
            ),
            pipeline,
            true,
        ),
        (
            "InstallSnapshot: MB/s (higher is better) and peak RSS in MiB (lower is better), log scale".to_owned(),
            snapshot_panel,
            true,
        ),
        (
            "Heartbeat latency: p50 in µs (bar) and p99 (tick), log scale, lower is better".to_owned(),
            heartbeats,
            true,
        ),
    ];
    if rows.iter().any(|r| r.rtt_ms > 0) {
        let link = match meta.link_mbps {
            Some(m) => format!("emulated link, {m} MB/s each way"),
            None => "emulated link".to_owned(),
        };
        panels.push((
            format!(
                "Over an {link}: InstallSnapshot of {}, MB/s, log scale, higher is better",
                size_label(meta.link_snapshot_bytes)
            ),
            groups_by_rtt(Scenario::Snapshot, throughput),
            true,
        ));
        panels.push((
            format!(
                "Over an {link}: pipelined AppendEntries of {}, {} in flight, MB/s, log scale",
                size_label(crate::orchestrate::LINK_PIPELINE_PAYLOAD),
                meta.pipeline_window
            ),
            groups_by_rtt(Scenario::Pipeline, throughput),
            true,
        ));
        panels.push((
            format!(
                "Over an {link}: heartbeats during a {} snapshot, p50 µs (bar), p99 (tick), log scale",
                size_label(meta.link_snapshot_bytes)
            ),
            groups_by_rtt(Scenario::HeartbeatUnderSnapshot, latency),
            true,
        ));
    }
    let height = 110.0 + PANEL_HEIGHT * panels.len() as f64 + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">
<style>
.text {{ font-family: sans-serif; font-size: 12px; }}
.small {{ font-family: sans-serif; font-size: 9px; }}
.title {{ font-family: sans-serif; font-size: 14px; font-weight: bold; }}
.axis {{ stroke: black; stroke-width: 1; }}
.grid {{ stroke: #ddd; stroke-width: 1; stroke-dasharray: 4; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" class="title" font-size="16">raft-grpc-transport side by side: medians of {} interleaved runs, two processes on loopback{}</text>
<text x="{}" y="42" text-anchor="middle" class="text">{}{}</text>"#,
        WIDTH / 2.0,
        meta.runs,
        if meta.quick { " (quick run)" } else { "" },
        WIDTH / 2.0,
        escape(&meta.machine.describe()),
        if rows.iter().any(|r| r.rtt_ms > 0) {
            "; last 3 panels: through a delay proxy"
        } else {
            ""
        },
    );
    let legend_width = (WIDTH - LEFT - RIGHT) / present.len().max(1) as f64;
    for (i, system) in present.iter().enumerate() {
        let x = LEFT + legend_width * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="58" width="14" height="14" fill="{}"/><text x="{:.1}" y="70" class="text">{}</text>"#,
            colour(system),
            x + 20.0,
            escape(system)
        );
    }
    let mut top = 90.0;
    for (title, groups, log) in &panels {
        top += panel(&mut svg, top, title, groups, *log);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric that varied between runs: median `v`, range ±10 %.
    fn around(v: f64) -> Summary {
        Summary {
            median: v,
            min: v * 0.9,
            max: v * 1.1,
        }
    }

    fn row(system: &str, scenario: &str, payload: u64, rtt: u64) -> Row {
        Row {
            system: system.to_string(),
            scenario: scenario.into(),
            payload_bytes: payload,
            rtt_ms: rtt,
            runs: 5,
            ..Default::default()
        }
    }

    fn synthetic() -> Report {
        let mut rows = Vec::new();
        for system in SYSTEMS {
            // Each system's factor: rust-smol's numbers times f.
            let f = match system {
                "rust-smol" => 1.0,
                "rust-blocking" => 1.25,
                "rust-tokio" => 1.1,
                "tonic" => 1.5,
                "go-grpc" => 1.75,
                "go-net" => 2.0,
                _ => 2.25,
            };
            for payload in [1u64 << 10, 10 << 10, 100 << 10, 1000 << 10] {
                let mut unary = row(system, "unary", payload, 0);
                unary.set(Metric::P50Us, around(50.0 * f));
                unary.set(Metric::P99Us, around(90.0 * f));
                unary.set(Metric::MeanUs, around(55.0 * f));
                unary.set(Metric::CpuUsPerOp, around(40.0 * f));
                rows.push(unary);
                for rtt in [0, 20] {
                    if rtt > 0 && payload != 1000 << 10 {
                        continue;
                    }
                    let mut pipeline = row(system, "pipeline", payload, rtt);
                    let ops = 100_000.0 / f / (1 + rtt) as f64;
                    pipeline.set(Metric::OpsPerS, around(ops));
                    pipeline.set(Metric::MbPerS, around(ops * payload as f64 / 1e6));
                    pipeline.set(Metric::CpuUsPerOp, around(12.0 * f));
                    rows.push(pipeline);
                }
            }
            if matches!(system, "rust-smol" | "go-grpc") {
                for (rtt, size) in [(0, 1u64 << 30), (20, 128 << 20)] {
                    let mut snapshot = row(system, "snapshot", size, rtt);
                    snapshot.set(Metric::MbPerS, around(1500.0 / f / (1 + rtt) as f64));
                    snapshot.set(Metric::PeakRssMib, around(12.0 * f));
                    snapshot.set(Metric::SenderPeakRssMib, around(12.0 * f));
                    snapshot.set(Metric::ReceiverPeakRssMib, around(9.0 * f));
                    snapshot.set(Metric::CpuUsPerMb, around(900.0 * f));
                    rows.push(snapshot);
                }
                for (scenario, rtt) in [
                    ("heartbeat_idle", 0),
                    ("heartbeat_under_snapshot", 0),
                    ("heartbeat_under_snapshot", 20),
                ] {
                    let mut heartbeat = row(system, scenario, 0, rtt);
                    heartbeat.set(Metric::P50Us, around(60.0 * f + rtt as f64 * 1e3));
                    heartbeat.set(Metric::P99Us, around(200.0 * f + rtt as f64 * 1e3));
                    heartbeat.set(Metric::MeanUs, around(70.0 * f + rtt as f64 * 1e3));
                    let cpu = if scenario == "heartbeat_idle" {
                        Metric::CpuUsPerOp
                    } else {
                        Metric::CpuUsPerMb
                    };
                    heartbeat.set(cpu, around(30.0));
                    rows.push(heartbeat);
                }
            }
        }
        rows.reverse();
        sort_rows(&mut rows);
        fill_ratios(&mut rows);
        Report {
            rows,
            meta: Meta {
                pipeline_window: 64,
                runs: 5,
                snapshot_bytes: 1 << 30,
                link_snapshot_bytes: 128 << 20,
                rtt_ms: vec![0, 20],
                heartbeat_interval_us: 2000,
                clk_tck: 100,
                ours: OURS.into(),
                machine: Machine {
                    kernel: "6.1.0".into(),
                    cpu_model: "AMD EPYC".into(),
                    vcpus: 2,
                    memory_mib: 24_104,
                    git_commit: "abc1234".into(),
                    date: "2025-01-31T12:00:00Z".into(),
                },
                ..Default::default()
            },
        }
    }

    /// Replaces `key`'s value in the first row of `report`'s JSON whose
    /// scenario is `scenario` (`None`: removes the key) and validates.
    fn tampered(
        report: &Report,
        scenario: &str,
        key: &str,
        value: Option<serde_json::Value>,
    ) -> Result<(), String> {
        let mut json: serde_json::Value = serde_json::from_str(&to_json(report)).unwrap();
        let row = json["rows"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|r| r["scenario"] == scenario)
            .unwrap()
            .as_object_mut()
            .unwrap();
        match value {
            Some(v) => row.insert(key.to_owned(), v),
            None => row.remove(key),
        };
        validate(&json.to_string())
    }

    /// `a` is `b` read back: equal but for the last bit of a float
    /// (serde_json's default parser is not exactly round-trip).
    fn assert_same(a: &Report, b: &Report) {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
        let close_opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => close(x, y),
            (x, y) => x == y,
        };
        assert_eq!(a.meta, b.meta);
        assert_eq!(a.rows.len(), b.rows.len());
        for (x, y) in a.rows.iter().zip(&b.rows) {
            assert_eq!(
                (&x.system, &x.scenario, x.payload_bytes, x.rtt_ms, x.runs),
                (&y.system, &y.scenario, y.payload_bytes, y.rtt_ms, y.runs)
            );
            assert!(close_opt(x.ours_over_peer, y.ours_over_peer), "{x:?}");
            assert!(close_opt(x.spread, y.spread), "{x:?}");
            assert!(x.metrics.0.keys().eq(y.metrics.0.keys()), "{x:?}");
            for (m, n) in x.metrics.0.values().zip(y.metrics.0.values()) {
                assert!(
                    close(m.median, n.median) && close(m.min, n.min) && close(m.max, n.max),
                    "{x:?}"
                );
            }
        }
    }

    /// The writers CI exercises: JSON that follows the schema and reads
    /// back, a table with a ratio on every row, an SVG with every system.
    #[test]
    fn writers_follow_the_schema() {
        let report = synthetic();
        assert_eq!(report.rows[0].system, "rust-smol");
        assert_eq!(report.rows[0].scenario, "unary");
        // Loopback rows come first, link rows after them.
        let first_link = report.rows.iter().position(|r| r.rtt_ms > 0).unwrap();
        assert!(report.rows[first_link..].iter().all(|r| r.rtt_ms == 20));
        let json = to_json(&report);
        validate(&json).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_same(&back, &report);
        // Metrics that do not apply are left out; those that do come with
        // their range.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let heartbeat = value["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == "heartbeat_idle")
            .unwrap();
        assert!(heartbeat.get("ops_per_s").is_none());
        assert_eq!(heartbeat["payload_bytes"], 0);
        assert_eq!(heartbeat["rtt_ms"], 0);
        assert!((heartbeat["p50_us_min"].as_f64().unwrap() - 54.0).abs() < 1e-9);
        assert!((heartbeat["p50_us_max"].as_f64().unwrap() - 66.0).abs() < 1e-9);
        assert!((heartbeat["spread"].as_f64().unwrap() - 1.1 / 0.9).abs() < 1e-9);
        assert!(heartbeat.get("cpu_us_per_op_min").is_some());
        assert_eq!(value["meta"]["kernel"], "6.1.0");
        assert_eq!(value["meta"]["rtt_ms"], serde_json::json!([0, 20]));
        let go = report
            .rows
            .iter()
            .find(|r| r.system == "go-grpc" && r.scenario == "unary")
            .unwrap();
        assert!((go.ours_over_peer.unwrap() - 1.0 / 1.75).abs() < 1e-9);
        // Ratios compare rows of the same rtt only: over the link, the
        // rust-smol row is 1.5× go-grpc's, as on loopback.
        let go_link = report
            .rows
            .iter()
            .find(|r| r.system == "go-grpc" && r.scenario == "snapshot" && r.rtt_ms == 20)
            .unwrap();
        assert!((go_link.ours_over_peer.unwrap() - 1.75).abs() < 1e-9);

        let table = table(&report);
        assert!(
            table.starts_with("machine: kernel 6.1.0, AMD EPYC, 2 vCPUs, 23.5 GiB; commit abc1234")
        );
        // tcp-floor: 4 unary and 4 pipeline rows on loopback, 1 over links.
        assert_eq!(table.lines().filter(|l| l.contains("tcp-floor")).count(), 9);
        assert!(table.contains("\n== loopback") && table.contains("\n== emulated links"));
        assert!(table.contains("0.57"));
        assert!(table.contains("45.0–55.0"), "{table}");
        assert!(table.contains("900/MB"), "{table}");
        // Every data line is as wide as its columns say, ranges included.
        let header = table.lines().find(|l| l.starts_with("scenario")).unwrap();
        let widths: usize = COLUMNS.iter().map(|c| c.1 + 1).sum::<usize>() - 1;
        assert_eq!(header.chars().count(), widths);

        let svg = svg(&report);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        for system in SYSTEMS {
            assert!(svg.contains(&format!(">{system}</text>")), "{system}");
        }
        assert!(svg.contains("rtt 20 ms") && svg.contains("(runs: "));
        assert_eq!(
            svg.matches("<rect").count(),
            svg.matches("</rect>").count() + 1 + SYSTEMS.len()
        );
    }

    #[test]
    fn the_validator_rejects_what_the_schema_forbids() {
        let report = synthetic();
        validate(&to_json(&report)).unwrap();
        let meta = r#""meta":{"pipeline_window":64,"runs":1,"snapshot_bytes":1,"link_snapshot_bytes":1,"heartbeat_interval_us":1,"clk_tck":100,"vcpus":2,"memory_mib":1,"ours":"rust-smol","method":"","kernel":"k","cpu_model":"c","git_commit":"unknown","date":"d","quick":false,"rtt_ms":[0]}"#;
        let unary = r#""scenario":"unary","payload_bytes":1,"rtt_ms":0,"runs":1,"p50_us":1,"p50_us_min":1,"p50_us_max":1,"p99_us":1,"p99_us_min":1,"p99_us_max":1,"mean_us":1,"mean_us_min":1,"mean_us_max":1"#;
        validate(&format!(
            r#"{{"rows":[{{"system":"tonic",{unary}}}],{meta}}}"#
        ))
        .unwrap();
        for bad in [
            format!(r#"{{"rows":[{{"system":"x",{unary}}}],{meta}}}"#),
            format!(r#"{{"rows":[{{"system":"tonic",{unary},"bogus":1}}],{meta}}}"#),
            format!(r#"{{"rows":[{{"system":"tonic",{unary}}}]}}"#),
            format!(
                r#"{{"rows":[{{"system":"tonic",{unary}}}],{}}}"#,
                meta.replace(r#""kernel":"k","#, "")
            ),
            format!(
                r#"{{"rows":[{{"system":"tonic",{}}}],{meta}}}"#,
                unary.replace(r#""rtt_ms":0"#, r#""rtt_ms":5"#)
            ),
        ] {
            assert!(validate(&bad).is_err(), "{bad}");
        }
        // A metric without its range, or outside it.
        assert!(tampered(&report, "unary", "p50_us_min", None).is_err());
        assert!(tampered(&report, "unary", "p50_us", Some(serde_json::json!(1e9))).is_err());
        assert!(
            tampered(
                &report,
                "unary",
                "p50_us_max",
                Some(serde_json::json!(-1.0))
            )
            .is_err()
        );
        // The scenario's metrics are required; the other CPU metric is not
        // allowed.
        assert!(tampered(&report, "pipeline", "ops_per_s", None).is_err());
        let mut wrong = report.clone();
        let snapshot = wrong.rows.iter_mut().find(|r| r.scenario == "snapshot");
        snapshot
            .unwrap()
            .set(Metric::CpuUsPerOp, Summary::constant(1.0));
        assert!(validate(&to_json(&wrong)).is_err());
        // Spread is max / min: never below 1.
        assert!(tampered(&report, "unary", "spread", Some(serde_json::json!(0.5))).is_err());
        // Heartbeats have no payload; unary rows are loopback only.
        assert!(
            tampered(
                &report,
                "heartbeat_idle",
                "payload_bytes",
                Some(serde_json::json!(5))
            )
            .is_err()
        );
        assert!(tampered(&report, "unary", "rtt_ms", Some(serde_json::json!(20))).is_err());
        assert!(tampered(&report, "unary", "runs", Some(serde_json::json!(0))).is_err());
        // Reading back checks the metric keys too.
        assert!(
            serde_json::from_str::<Row>(
                r#"{"system":"tonic","scenario":"unary","payload_bytes":1,"p50_us":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn summaries() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.5,
                min: 1.0,
                max: 10.0
            }
        );
        assert_eq!(s.spread(), Some(10.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::constant(0.0).spread(), None);
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.name()), Some(metric));
        }
        assert!(matches!(
            Metric::parse_key("cpu_us_per_mb_max"),
            Some((Metric::CpuUsPerMb, Part::Max))
        ));
        assert!(Metric::parse_key("cpu_us_per_mb_avg").is_none());
    }
}
