//! The outputs: JSON rows (the schema below), the table of medians and
//! ratios on stdout, and the SVG plot.
//!
//! JSON: `{"rows": [Row, …], "meta": Meta}`. A [`Row`] has `system`,
//! `scenario` (`unary`, `pipeline`, `snapshot`, `heartbeat_idle`,
//! `heartbeat_under_snapshot`) and `payload_bytes` (the entry's data size;
//! the snapshot's size for snapshot rows — 1073741824 in a full run; 0 for
//! heartbeat rows), then the metrics that apply, each the median across
//! runs of the per-run value: `p50_us`, `p99_us`, `mean_us` (unary and
//! heartbeats), `ops_per_s` and `mb_per_s` (pipeline; `mb_per_s` for
//! snapshots), `peak_rss_mib` (snapshots: the larger of
//! `sender_peak_rss_mib` and `receiver_peak_rss_mib`, which are given too).
//! Every row also carries `ours_over_peer` — rust-smol's value divided by
//! this row's for the scenario's main metric (`p50_us` for latency
//! scenarios: below 1 means ours is faster; `ops_per_s` for pipelines and
//! `mb_per_s` for snapshots: above 1 means ours is faster) — and `runs`,
//! how many runs the medians are taken over. MB is 10^6 bytes, MiB 2^20.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::protocol::Scenario;
use crate::systems::{OURS, SYSTEMS};

/// One row of the results: one system in one scenario at one payload size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `rust-smol`, `rust-blocking`, `tonic`, `go-grpc`, `go-net`,
    /// `tcp-floor`.
    pub system: String,
    /// The scenario's name.
    pub scenario: String,
    /// Entry size; snapshot size for snapshot rows; 0 for heartbeats.
    pub payload_bytes: u64,
    /// Median latency, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th-percentile latency, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Mean latency, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,
    /// Operations per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Payload megabytes (10^6 bytes) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    /// Peak RSS, MiB: the larger of sender's and receiver's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// The sending (client) process's peak RSS, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_peak_rss_mib: Option<f64>,
    /// The receiving (server) process's peak RSS, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_peak_rss_mib: Option<f64>,
    /// rust-smol's main metric divided by this row's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ours_over_peer: Option<f64>,
    /// Runs the medians are taken over.
    #[serde(default)]
    pub runs: u64,
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
    /// Bytes of each streamed snapshot.
    pub snapshot_bytes: u64,
    /// Time between heartbeat sends, µs.
    pub heartbeat_interval_us: u64,
    /// The system `ours_over_peer` divides by.
    pub ours: String,
    /// What was measured, in a sentence.
    pub method: String,
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

/// The scenario's main metric of `row`, and whether higher is better.
pub fn main_metric(row: &Row) -> (Option<f64>, bool) {
    match Scenario::parse(&row.scenario) {
        Some(Scenario::Pipeline) => (row.ops_per_s, true),
        Some(Scenario::Snapshot) => (row.mb_per_s, true),
        _ => (row.p50_us, false),
    }
}

/// Fills every row's `ours_over_peer` from the rust-smol row of the same
/// scenario and payload.
pub fn fill_ratios(rows: &mut [Row]) {
    let ours: BTreeMap<(String, u64), f64> = rows
        .iter()
        .filter(|r| r.system == OURS)
        .filter_map(|r| Some(((r.scenario.clone(), r.payload_bytes), main_metric(r).0?)))
        .collect();
    for row in rows.iter_mut() {
        let mine = main_metric(row).0;
        row.ours_over_peer = match (ours.get(&(row.scenario.clone(), row.payload_bytes)), mine) {
            (Some(&o), Some(m)) if m > 0.0 => Some(o / m),
            _ => None,
        };
    }
}

/// Orders rows by scenario, payload, then system (report order).
pub fn sort_rows(rows: &mut [Row]) {
    let scenario_rank = |r: &Row| Scenario::parse(&r.scenario).map_or(usize::MAX, |s| s as usize);
    let system_rank = |r: &Row| {
        SYSTEMS
            .iter()
            .position(|s| *s == r.system)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(|r| (scenario_rank(r), r.payload_bytes, system_rank(r)));
}

/// The JSON text of `report`.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serializes") + "\n"
}

/// Checks that `json` follows the schema: a `rows` array whose rows have a
/// known system and scenario, an integer `payload_bytes`, only known keys,
/// finite non-negative numbers, and the metrics their scenario has.
pub fn validate(json: &str) -> Result<(), String> {
    const METRICS: [&str; 9] = [
        "p50_us",
        "p99_us",
        "mean_us",
        "ops_per_s",
        "mb_per_s",
        "peak_rss_mib",
        "sender_peak_rss_mib",
        "receiver_peak_rss_mib",
        "ours_over_peer",
    ];
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
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
        for (key, value) in object {
            if matches!(
                key.as_str(),
                "system" | "scenario" | "payload_bytes" | "runs"
            ) {
                continue;
            }
            if !METRICS.contains(&key.as_str()) {
                return Err(format!("row {i}: unknown key {key}"));
            }
            let number = value
                .as_f64()
                .ok_or(format!("row {i}: {key} is not a number"))?;
            if !number.is_finite() || number < 0.0 {
                return Err(format!("row {i}: {key} = {number}"));
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

/// The table of medians with the ratio ours/peer on every row.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let meta = &report.meta;
    let _ = writeln!(
        out,
        "medians of {} interleaved runs; pipeline window {} on every system; ours = {}; \
         ours/peer = {}'s main metric ÷ the row's (latency: < 1 ours faster; throughput: > 1 ours faster)",
        meta.runs, meta.pipeline_window, meta.ours, meta.ours
    );
    let _ = writeln!(
        out,
        "{:<25} {:>8} {:<14} {:>9} {:>9} {:>9} {:>10} {:>8} {:>13} {:>9} {:>9}",
        "scenario",
        "payload",
        "system",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "ops/s",
        "MB/s",
        "RSS MiB s/r",
        "ours/peer",
        "p99 o/p"
    );
    let ours_p99: BTreeMap<(String, u64), f64> = report
        .rows
        .iter()
        .filter(|r| r.system == meta.ours)
        .filter_map(|r| Some(((r.scenario.clone(), r.payload_bytes), r.p99_us?)))
        .collect();
    let mut last = None;
    for row in &report.rows {
        let key = (row.scenario.clone(), row.payload_bytes);
        if last.as_ref().is_some_and(|l| *l != key) {
            out.push('\n');
        }
        let rss = match (row.sender_peak_rss_mib, row.receiver_peak_rss_mib) {
            (Some(s), Some(r)) => format!("{s:.0}/{r:.0}"),
            _ => "-".to_owned(),
        };
        let p99_ratio = match (ours_p99.get(&key), row.p99_us) {
            (Some(o), Some(m)) if m > 0.0 => format!("{:.2}", o / m),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<25} {:>8} {:<14} {:>9} {:>9} {:>9} {:>10} {:>8} {:>13} {:>9} {:>9}",
            row.scenario,
            size_label(row.payload_bytes),
            row.system,
            num(row.p50_us),
            num(row.p99_us),
            num(row.mean_us),
            num(row.ops_per_s),
            num(row.mb_per_s),
            rss,
            row.ours_over_peer
                .map_or("-".to_owned(), |r| format!("{r:.2}")),
            p99_ratio,
        );
        last = Some(key);
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
}

struct Group {
    label: String,
    bars: Vec<Bar>,
}

/// What a panel draws of a row: the bar's value and the tick's.
type BarValue<'a> = &'a dyn Fn(&Row) -> Option<(f64, Option<f64>)>;

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
                r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                bar_width - 3.0,
                (bottom - by).max(0.5),
                colour(&bar.system),
                escape(&bar.system),
                escape(&group.label),
                short(bar.value)
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

/// The SVG plot: one panel per scenario, a bar per system.
pub fn svg(report: &Report) -> String {
    let rows = &report.rows;
    let present: Vec<&str> = SYSTEMS
        .iter()
        .copied()
        .filter(|s| rows.iter().any(|r| r.system == *s))
        .collect();
    let groups_of = |scenario: Scenario, value: BarValue| {
        let mut payloads: Vec<u64> = rows
            .iter()
            .filter(|r| r.scenario == scenario.name())
            .map(|r| r.payload_bytes)
            .collect();
        payloads.sort_unstable();
        payloads.dedup();
        payloads
            .into_iter()
            .map(|payload| Group {
                label: size_label(payload),
                bars: present
                    .iter()
                    .filter_map(|system| {
                        let row = rows.iter().find(|r| {
                            r.system == *system
                                && r.scenario == scenario.name()
                                && r.payload_bytes == payload
                        })?;
                        let (value, tick) = value(row)?;
                        Some(Bar {
                            system: system.to_string(),
                            value,
                            tick,
                        })
                    })
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let unary = groups_of(Scenario::Unary, &|r| Some((r.p50_us?, r.p99_us)));
    let pipeline = groups_of(Scenario::Pipeline, &|r| Some((r.mb_per_s?, None)));
    let mut snapshot = groups_of(Scenario::Snapshot, &|r| Some((r.mb_per_s?, None)));
    let snapshot_rss = groups_of(Scenario::Snapshot, &|r| {
        Some((r.receiver_peak_rss_mib?, r.sender_peak_rss_mib))
    });
    for group in &mut snapshot {
        group.label = format!("{} snapshot: MB/s", group.label);
    }
    let mut heartbeats = groups_of(Scenario::HeartbeatIdle, &|r| Some((r.p50_us?, r.p99_us)));
    for g in &mut heartbeats {
        g.label = "idle".to_owned();
    }
    let mut under = groups_of(Scenario::HeartbeatUnderSnapshot, &|r| {
        Some((r.p50_us?, r.p99_us))
    });
    for g in &mut under {
        g.label = format!(
            "during a {} snapshot",
            size_label(report.meta.snapshot_bytes)
        );
    }
    heartbeats.extend(under);
    let mut snapshot_panel = snapshot;
    for mut group in snapshot_rss {
        group.label = "peak RSS MiB: receiver (bar), sender (tick)".to_owned();
        snapshot_panel.push(group);
    }

    let meta = &report.meta;
    let panels: Vec<(String, Vec<Group>, bool)> = vec![
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
    let height = 90.0 + PANEL_HEIGHT * panels.len() as f64 + 20.0;
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
<text x="{}" y="24" text-anchor="middle" class="title" font-size="16">raft-grpc-transport side by side: medians of {} interleaved runs, two processes on loopback{}</text>"#,
        WIDTH / 2.0,
        meta.runs,
        if meta.quick { " (quick run)" } else { "" }
    );
    let legend_width = (WIDTH - LEFT - RIGHT) / present.len().max(1) as f64;
    for (i, system) in present.iter().enumerate() {
        let x = LEFT + legend_width * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="40" width="14" height="14" fill="{}"/><text x="{:.1}" y="52" class="text">{}</text>"#,
            colour(system),
            x + 20.0,
            escape(system)
        );
    }
    let mut top = 70.0;
    for (title, groups, log) in &panels {
        top += panel(&mut svg, top, title, groups, *log);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic() -> Report {
        let mut rows = Vec::new();
        for (i, system) in SYSTEMS.iter().enumerate() {
            let f = 1.0 + i as f64 / 4.0;
            for payload in [1u64 << 10, 10 << 10, 100 << 10, 1000 << 10] {
                rows.push(Row {
                    system: system.to_string(),
                    scenario: "unary".into(),
                    payload_bytes: payload,
                    p50_us: Some(50.0 * f),
                    p99_us: Some(90.0 * f),
                    mean_us: Some(55.0 * f),
                    runs: 5,
                    ..Default::default()
                });
                rows.push(Row {
                    system: system.to_string(),
                    scenario: "pipeline".into(),
                    payload_bytes: payload,
                    ops_per_s: Some(100_000.0 / f),
                    mb_per_s: Some(100_000.0 / f * payload as f64 / 1e6),
                    runs: 5,
                    ..Default::default()
                });
            }
            if matches!(*system, "rust-smol" | "go-grpc") {
                rows.push(Row {
                    system: system.to_string(),
                    scenario: "snapshot".into(),
                    payload_bytes: 1 << 30,
                    mb_per_s: Some(1500.0 / f),
                    peak_rss_mib: Some(12.0 * f),
                    sender_peak_rss_mib: Some(12.0 * f),
                    receiver_peak_rss_mib: Some(9.0 * f),
                    runs: 5,
                    ..Default::default()
                });
                for scenario in ["heartbeat_idle", "heartbeat_under_snapshot"] {
                    rows.push(Row {
                        system: system.to_string(),
                        scenario: scenario.into(),
                        payload_bytes: 0,
                        p50_us: Some(60.0 * f),
                        p99_us: Some(200.0 * f),
                        mean_us: Some(70.0 * f),
                        runs: 5,
                        ..Default::default()
                    });
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
                heartbeat_interval_us: 2000,
                ours: OURS.into(),
                ..Default::default()
            },
        }
    }

    /// The writers CI exercises: JSON that follows the schema and reads
    /// back, a table with a ratio on every row, an SVG with every system.
    #[test]
    fn writers_follow_the_schema() {
        let report = synthetic();
        assert_eq!(report.rows[0].system, "rust-smol");
        assert_eq!(report.rows[0].scenario, "unary");
        let json = to_json(&report);
        validate(&json).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        // Metrics that do not apply are left out.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let heartbeat = value["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == "heartbeat_idle")
            .unwrap();
        assert!(heartbeat.get("ops_per_s").is_none());
        assert_eq!(heartbeat["payload_bytes"], 0);
        let go = report
            .rows
            .iter()
            .find(|r| r.system == "go-grpc" && r.scenario == "unary")
            .unwrap();
        assert!((go.ours_over_peer.unwrap() - 1.0 / 1.75).abs() < 1e-9);

        let table = table(&report);
        assert!(table.lines().filter(|l| l.contains("tcp-floor")).count() == 8);
        assert!(table.contains("0.57"));

        let svg = svg(&report);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        for system in SYSTEMS {
            assert!(svg.contains(&format!(">{system}</text>")), "{system}");
        }
        assert_eq!(
            svg.matches("<rect").count(),
            svg.matches("</rect>").count() + 1 + 6
        );

        // The validator rejects what the schema forbids.
        assert!(
            validate(r#"{"rows":[{"system":"x","scenario":"unary","payload_bytes":1}]}"#).is_err()
        );
        assert!(validate(r#"{"rows":[{"system":"tonic","scenario":"unary","payload_bytes":1,"p50_us":1,"p99_us":1,"mean_us":1,"bogus":1}]}"#).is_err());
        assert!(validate(r#"{"rows":[{"system":"tonic","scenario":"heartbeat_idle","payload_bytes":5,"p50_us":1,"p99_us":1,"mean_us":1}]}"#).is_err());
        assert!(validate(r#"{"rows":[{"system":"tonic","scenario":"pipeline","payload_bytes":5,"ops_per_s":1}]}"#).is_err());
    }
}
