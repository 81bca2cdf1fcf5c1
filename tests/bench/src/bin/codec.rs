//! `codec`: a micro-benchmark of the message codec, in instructions and
//! allocations per message (issue 8, item 5).
//!
//! ```sh
//! cargo build --release -p raft-grpc-bench --bin codec
//! target/release/codec --callgrind --json tests/bench/results/codec.json  # everything, ~20 s
//! target/release/codec                         # no valgrind: allocations and ns/op only
//! target/release/codec --case decode/append64/ours --iterations 1000   # one case, N times
//! target/release/codec --list                  # the cases and what each measures
//! ```
//!
//! For every case the table gives:
//! * **instructions/msg**, with `--callgrind`: the binary runs itself under
//!   `valgrind --tool=callgrind` as `codec --case NAME --iterations N` for
//!   N = 10 and N = 110 and reports (Ir(110) − Ir(10)) / 100, so process
//!   start-up, set-up and the first, cold iterations cancel out. The
//!   callgrind files stay in `--callgrind-dir` (default
//!   `$TMPDIR/codec-callgrind`) for `callgrind_annotate` (diff a case's
//!   `.110.out` against its `.10.out` per function). Counts are instructions
//!   as valgrind's CPU executes them and repeat exactly from run to run,
//!   with two caveats: glibc copies and clears blocks above ~64 KiB with
//!   `rep movsb`/`rep stosb`, which callgrind counts once per byte, so in
//!   the 1 MiB rows "instructions" mostly means bytes copied (ns/op is the
//!   better guide there); and malloc's path depends on the heap's state,
//!   so cases that allocate move by a few hundred instructions when the
//!   set-up changes. Without `--callgrind`, or without valgrind, the column
//!   is empty;
//! * **allocs/msg** and **bytes/msg**: calls into the allocator and bytes
//!   requested per message, counted by a `#[global_allocator]` wrapped
//!   around the system allocator, over 1000 messages after 3 warm-up ones.
//!   A `realloc` counts as one allocation of its new size;
//! * **ns/op**: wall time per message, the median of `--runs` (default 7)
//!   timed batches of about 20 ms each. Noisy on a shared VM; the
//!   instruction counts are the numbers to compare.
//!
//! The messages are the transport's hot ones, with realistic headers (a
//! 36-byte server ID, an `ip:port` address, protocol version 3):
//! * `append64`: AppendEntries with 64 command entries of 1 KiB each, with
//!   `appended_at` set (66 KiB encoded);
//! * `heartbeat`: AppendEntries with a header and a term only;
//! * `snapshot1m`: one 1 MiB InstallSnapshot data chunk with its CRC-32C,
//!   the default chunk size of `SnapshotSender`.
//!
//! For each message, `encode/…/ours` is the transport's send path
//! (`MessageEncoder::encode`, giving the gRPC-framed `EncodedMessage`, large
//! payloads as chunks of their own) and `encode/…/prost` plain
//! `prost::Message::encode` of the generated `wire` type into a `Vec` sized
//! by `encoded_len`, after the same 5-byte prefix, so both produce the same
//! bytes (checked at start-up). `decode/…/ours` is the receive path: a new
//! `MessageDecoder` (as every call makes), the framed message pushed, the
//! body taken, then `RaftMessage::decode` into our types; `decode/…/prost`
//! is `prost::Message::decode` of the body into the `wire` type. `--list`
//! says what each of the other variants adds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use raft_grpc_transport::framing::{DEFAULT_MAX_MESSAGE_LEN, MessageDecoder, MessageEncoder};
use raft_grpc_transport::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Log, RaftMessage, RpcHeader, SnapshotChunk,
};
use raft_grpc_transport::snapshot::{DEFAULT_CHUNK_SIZE, SnapshotSender};
use serde::Serialize;

/// Counts calls into the allocator and the bytes they ask for; everything
/// else is the system allocator's business.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn count_allocation(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the only addition is two relaxed
// counter increments, which neither allocate nor touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation(layout.size());
        // SAFETY: the caller's guarantees for `layout` are System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by System (every allocation of this
        // allocator is) with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation(new_size);
        // SAFETY: as for `dealloc`, and the caller's guarantees for
        // `new_size` are System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocation_counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------
// The messages.

/// A header as hashicorp/raft fills it: protocol version 3, a UUID server
/// ID, the transport address.
fn header() -> RpcHeader {
    RpcHeader::new(3, "5f0c8d2e-1b7a-4c3e-9d21-7a4f6b0e8c13", "10.0.1.17:7000")
}

const ENTRIES: usize = 64;
const ENTRY_LEN: usize = 1024;
const SNAPSHOT_CHUNK_LEN: usize = 1024 * 1024;

fn append64() -> AppendEntriesRequest {
    let appended_at = UNIX_EPOCH + Duration::from_nanos(1_760_000_000_123_456_789);
    AppendEntriesRequest {
        header: header(),
        term: 7,
        prev_log_entry: 1_000_000,
        prev_log_term: 7,
        entries: (0..ENTRIES as u64)
            .map(|i| Log {
                appended_at: Some(appended_at + Duration::from_micros(i)),
                // Every entry its own buffer, as entries read from a log
                // store are.
                ..Log::command(1_000_001 + i, 7, vec![(i as u8) | 1; ENTRY_LEN])
            })
            .collect(),
        leader_commit_index: 999_990,
        ..Default::default()
    }
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(),
        term: 7,
        ..Default::default()
    }
}

/// The first data chunk of a snapshot, cut (and checksummed) by the
/// transport's own `SnapshotSender` with the default chunk size.
fn snapshot_chunk() -> SnapshotChunk {
    let data: Vec<u8> = (0..SNAPSHOT_CHUNK_LEN)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let meta = InstallSnapshotRequest {
        header: header(),
        term: 7,
        size: 4 * SNAPSHOT_CHUNK_LEN as u64,
        ..Default::default()
    };
    let mut sender = SnapshotSender::new(meta, DEFAULT_CHUNK_SIZE, Instant::now());
    let mut chunks = sender.push(data.into(), Instant::now()).unwrap();
    assert_eq!(chunks.len(), 1);
    chunks.remove(0)
}

// ---------------------------------------------------------------------------
// The cases.

/// One operation of a case, with its inputs already built.
type Op = Box<dyn FnMut()>;

struct Case {
    name: &'static str,
    what: &'static str,
    prepare: fn() -> Op,
}

/// `MessageEncoder::encode`: the framed message as the transport sends it.
fn ours_encode<M: RaftMessage + 'static>(message: M) -> Op {
    let encoder = MessageEncoder::default();
    Box::new(move || {
        black_box(encoder.encode(black_box(&message)).unwrap());
    })
}

/// The 5-byte gRPC prefix, then `prost::Message::encode` into a `Vec` of
/// exactly the right capacity.
fn prost_frame<W: prost::Message>(wire: &W) -> Vec<u8> {
    let len = wire.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    wire.encode(&mut out).unwrap();
    out
}

fn prost_encode<M: RaftMessage>(message: M) -> Op
where
    M::Wire: 'static,
{
    let wire = message.to_wire();
    Box::new(move || {
        black_box(prost_frame(black_box(&wire)));
    })
}

fn prost_encode_to_wire<M: RaftMessage + 'static>(message: M) -> Op {
    Box::new(move || {
        black_box(prost_frame(&black_box(&message).to_wire()));
    })
}

/// The message framed by our encoder, as the list of chunks it sends.
fn framed_chunks<M: RaftMessage>(message: &M) -> Vec<Bytes> {
    MessageEncoder::default()
        .encode(message)
        .unwrap()
        .into_chunks()
}

/// The framed message in one buffer.
fn framed<M: RaftMessage>(message: &M) -> Bytes {
    framed_chunks(message).concat().into()
}

/// The framed message cut into DATA frames of `frame` bytes.
fn framed_in_frames<M: RaftMessage>(message: &M, frame: usize) -> Vec<Bytes> {
    let mut all = framed(message);
    let mut frames = Vec::new();
    while !all.is_empty() {
        frames.push(all.split_to(all.len().min(frame)));
    }
    frames
}

/// The receive path: a new decoder, the chunks pushed, one body taken and
/// decoded into our types.
fn ours_decode<M: RaftMessage + 'static>(chunks: Vec<Bytes>) -> Op {
    Box::new(move || {
        let mut decoder = MessageDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
        for chunk in black_box(&chunks) {
            decoder.push(chunk.clone());
        }
        let body = decoder.next_message().unwrap().unwrap();
        black_box(M::decode(body).unwrap());
        decoder.finish().unwrap();
    })
}

/// The same through one decoder kept across messages, as on a pipeline
/// stream.
fn ours_decode_reused<M: RaftMessage + 'static>(chunks: Vec<Bytes>) -> Op {
    let mut decoder = MessageDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
    Box::new(move || {
        for chunk in black_box(&chunks) {
            decoder.push(chunk.clone());
        }
        let body = decoder.next_message().unwrap().unwrap();
        black_box(M::decode(body).unwrap());
    })
}

/// Our decode of a body already taken out of the framing.
fn ours_decode_body<M: RaftMessage + 'static>(body: Bytes) -> Op {
    Box::new(move || {
        black_box(M::decode(black_box(&body).clone()).unwrap());
    })
}

/// `prost::Message::decode` of the body into the wire type.
fn prost_decode<M: RaftMessage>(body: Bytes) -> Op
where
    M::Wire: 'static,
{
    Box::new(move || {
        black_box(M::Wire::decode(black_box(&body).clone()).unwrap());
    })
}

fn body<M: RaftMessage>(message: &M) -> Bytes {
    framed(message).slice(5..)
}

const CASES: &[Case] = &[
    Case {
        name: "encode/append64/ours",
        what: "MessageEncoder::encode of the 64 x 1 KiB AppendEntries: the framed EncodedMessage",
        prepare: || ours_encode(append64()),
    },
    Case {
        name: "encode/append64/prost",
        what: "prefix + prost encode of a prebuilt wire::AppendEntriesRequest into an exact Vec",
        prepare: || prost_encode(append64()),
    },
    Case {
        name: "encode/append64/prost+to_wire",
        what: "the same, converting from our type with to_wire() every time",
        prepare: || prost_encode_to_wire(append64()),
    },
    Case {
        name: "decode/append64/ours",
        what: "new MessageDecoder, the framed message pushed as one Bytes, next_message, AppendEntriesRequest::decode",
        prepare: || ours_decode::<AppendEntriesRequest>(vec![framed(&append64())]),
    },
    Case {
        name: "decode/append64/ours-reused",
        what: "the same through one MessageDecoder kept across messages (a pipeline stream)",
        prepare: || ours_decode_reused::<AppendEntriesRequest>(vec![framed(&append64())]),
    },
    Case {
        name: "decode/append64/ours-16k-frames",
        what: "the same, the message arriving as 16 KiB DATA frames (what a grpc-go peer sends)",
        prepare: || ours_decode::<AppendEntriesRequest>(framed_in_frames(&append64(), 16 * 1024)),
    },
    Case {
        name: "decode/append64/ours-body",
        what: "AppendEntriesRequest::decode of the body only (no framing): prost decode + from_wire",
        prepare: || ours_decode_body::<AppendEntriesRequest>(body(&append64())),
    },
    Case {
        name: "decode/append64/prost",
        what: "prost decode of the body into wire::AppendEntriesRequest",
        prepare: || prost_decode::<AppendEntriesRequest>(body(&append64())),
    },
    Case {
        name: "encode/heartbeat/ours",
        what: "MessageEncoder::encode of a heartbeat (AppendEntries with header and term)",
        prepare: || ours_encode(heartbeat()),
    },
    Case {
        name: "encode/heartbeat/prost",
        what: "prefix + prost encode of the prebuilt wire heartbeat",
        prepare: || prost_encode(heartbeat()),
    },
    Case {
        name: "decode/heartbeat/ours",
        what: "new MessageDecoder, push, next_message, AppendEntriesRequest::decode of the heartbeat",
        prepare: || ours_decode::<AppendEntriesRequest>(vec![framed(&heartbeat())]),
    },
    Case {
        name: "decode/heartbeat/prost",
        what: "prost decode of the heartbeat body into wire::AppendEntriesRequest",
        prepare: || prost_decode::<AppendEntriesRequest>(body(&heartbeat())),
    },
    Case {
        name: "encode/snapshot1m/ours",
        what: "MessageEncoder::encode of a 1 MiB SnapshotChunk (data handed through, not copied)",
        prepare: || ours_encode(snapshot_chunk()),
    },
    Case {
        name: "encode/snapshot1m/prost",
        what: "prefix + prost encode of the prebuilt wire::InstallSnapshotRequest (copies the 1 MiB)",
        prepare: || prost_encode(snapshot_chunk()),
    },
    Case {
        name: "decode/snapshot1m/ours",
        what: "new MessageDecoder, the framed chunk pushed as one Bytes, next_message, SnapshotChunk::decode",
        prepare: || ours_decode::<SnapshotChunk>(vec![framed(&snapshot_chunk())]),
    },
    Case {
        name: "decode/snapshot1m/ours-as-sent",
        what: "the same, pushed as the 3 chunks our encoder sends (prefix+key | 1 MiB data | crc): the DATA frames our sender writes",
        prepare: || ours_decode::<SnapshotChunk>(framed_chunks(&snapshot_chunk())),
    },
    Case {
        name: "decode/snapshot1m/prost",
        what: "prost decode of the chunk body into wire::InstallSnapshotRequest",
        prepare: || prost_decode::<SnapshotChunk>(body(&snapshot_chunk())),
    },
];

/// Our encoder and prost must produce the same bytes, and our decoders
/// must give the message back, or the comparison means nothing.
fn check_cases() -> Result<(), String> {
    fn same<M: RaftMessage>(name: &str, message: M) -> Result<(), String> {
        let ours = framed(&message);
        let prost = prost_frame(&message.to_wire());
        if ours[..] != prost[..] {
            return Err(format!("{name}: our encoding differs from prost's"));
        }
        if M::decode(ours.slice(5..)).as_ref() != Ok(&message) {
            return Err(format!("{name}: does not decode back to itself"));
        }
        Ok(())
    }
    same("append64", append64())?;
    same("heartbeat", heartbeat())?;
    same("snapshot1m", snapshot_chunk())
}

// ---------------------------------------------------------------------------
// Measuring.

#[derive(Debug, Clone, Serialize)]
struct Row {
    case: String,
    instructions_per_msg: Option<f64>,
    allocs_per_msg: f64,
    alloc_bytes_per_msg: f64,
    ns_per_op: f64,
}

const WARMUP: u32 = 3;
const ALLOC_ITERATIONS: u32 = 1000;
const CALLGRIND_ITERATIONS: (u64, u64) = (10, 110);

/// Allocations and bytes per message, after a warm-up (the first
/// operations may allocate once for good, e.g. a `Bytes` made shared).
fn measure_allocations(op: &mut Op) -> (f64, f64) {
    for _ in 0..WARMUP {
        op();
    }
    let (count0, bytes0) = allocation_counters();
    for _ in 0..ALLOC_ITERATIONS {
        op();
    }
    let (count1, bytes1) = allocation_counters();
    let n = f64::from(ALLOC_ITERATIONS);
    ((count1 - count0) as f64 / n, (bytes1 - bytes0) as f64 / n)
}

/// Median over `runs` batches of the wall time per operation.
fn measure_time(op: &mut Op, runs: usize) -> f64 {
    // Calibrate: enough operations for a ~20 ms batch.
    let mut batch = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            op();
        }
        if start.elapsed() >= Duration::from_millis(5) || batch >= 1 << 24 {
            let per_op = start.elapsed().as_secs_f64() / batch as f64;
            batch = ((0.020 / per_op) as u64).max(1);
            break;
        }
        batch *= 4;
    }
    let mut samples: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `valgrind --version`, if valgrind runs.
fn valgrind_version() -> Option<String> {
    let output = Command::new("valgrind").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Total instructions (Ir) of one run of this binary under callgrind,
/// running `case` `iterations` times.
fn callgrind_ir(case: &str, iterations: u64, dir: &Path) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = dir.join(format!("{}.{iterations}.out", case.replace('/', "_")));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--")
        .arg(exe)
        .args(["--case", case, "--iterations", &iterations.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "valgrind on {case}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    parse_callgrind_total(&text).ok_or_else(|| format!("{}: no totals line", out.display()))
}

/// The first event count (Ir) of the `totals:` line, or of `summary:`.
fn parse_callgrind_total(text: &str) -> Option<u64> {
    ["totals:", "summary:"].iter().find_map(|key| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

fn instructions_per_msg(case: &str, dir: &Path) -> Result<f64, String> {
    let (few, many) = CALLGRIND_ITERATIONS;
    let ir_few = callgrind_ir(case, few, dir)?;
    let ir_many = callgrind_ir(case, many, dir)?;
    Ok((ir_many as f64 - ir_few as f64) / (many - few) as f64)
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.case.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:>16}  {:>10}  {:>12}  {:>12}",
        "case", "instructions/msg", "allocs/msg", "bytes/msg", "ns/op"
    );
    for row in rows {
        let instructions = row
            .instructions_per_msg
            .map_or_else(|| "-".to_owned(), |n| format!("{n:.0}"));
        println!(
            "{:width$}  {:>16}  {:>10.2}  {:>12.0}  {:>12.0}",
            row.case, instructions, row.allocs_per_msg, row.alloc_bytes_per_msg, row.ns_per_op
        );
    }
}

#[derive(Serialize)]
struct Report<'a> {
    rows: &'a [Row],
}

// ---------------------------------------------------------------------------
// Command line.

const USAGE: &str =
    "usage: codec [--callgrind] [--callgrind-dir DIR] [--runs N] [--filter TEXT] [--json FILE]
       codec --case NAME --iterations N
       codec --list";

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}\n{USAGE}"))?;
        let value = match name {
            "callgrind" | "list" | "help" => String::new(),
            "case" | "iterations" | "callgrind-dir" | "runs" | "filter" | "json" => args
                .next()
                .cloned()
                .ok_or_else(|| format!("--{name} needs a value"))?,
            _ => return Err(format!("unknown flag --{name}\n{USAGE}")),
        };
        flags.insert(name.to_owned(), value);
    }
    Ok(flags)
}

fn find_case(name: &str) -> Result<&'static Case, String> {
    CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no case {name:?} (see --list)"))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = parse_flags(&args)?;
    if flags.contains_key("help") {
        println!("{USAGE}");
        return Ok(());
    }
    if flags.contains_key("list") {
        for case in CASES {
            println!("{:32} {}", case.name, case.what);
        }
        return Ok(());
    }
    if let Some(name) = flags.get("case") {
        // One case, N times: what callgrind runs.
        let iterations: u64 = flags
            .get("iterations")
            .ok_or("--case needs --iterations")?
            .parse()
            .map_err(|e| format!("--iterations: {e}"))?;
        let mut op = (find_case(name)?.prepare)();
        for _ in 0..iterations {
            op();
        }
        return Ok(());
    }

    check_cases()?;
    let runs: usize = flags
        .get("runs")
        .map_or(Ok(7), |r| r.parse())
        .map_err(|e| format!("--runs: {e}"))?;
    let filter = flags.get("filter").map_or("", String::as_str);
    let callgrind_dir = if flags.contains_key("callgrind") {
        match valgrind_version() {
            Some(version) => {
                let dir = flags.get("callgrind-dir").map_or_else(
                    || std::env::temp_dir().join("codec-callgrind"),
                    PathBuf::from,
                );
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                eprintln!(
                    "codec: counting instructions with {version}; callgrind files in {}",
                    dir.display()
                );
                Some(dir)
            }
            None => {
                eprintln!(
                    "codec: valgrind not found: no instruction counts, only allocations and ns/op"
                );
                None
            }
        }
    } else {
        None
    };

    let mut rows = Vec::new();
    for case in CASES.iter().filter(|c| c.name.contains(filter)) {
        eprintln!("codec: {}", case.name);
        let mut op = (case.prepare)();
        let (allocs, bytes) = measure_allocations(&mut op);
        let ns = measure_time(&mut op, runs);
        drop(op);
        let instructions = match &callgrind_dir {
            Some(dir) => Some(instructions_per_msg(case.name, dir)?),
            None => None,
        };
        rows.push(Row {
            case: case.name.to_owned(),
            instructions_per_msg: instructions,
            allocs_per_msg: allocs,
            alloc_bytes_per_msg: bytes,
            ns_per_op: ns,
        });
    }
    print_table(&rows);
    if let Some(path) = flags.get("json") {
        let json =
            serde_json::to_string_pretty(&Report { rows: &rows }).map_err(|e| e.to_string())?;
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(path, json + "\n").map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codec: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_agree_with_prost() {
        check_cases().unwrap();
    }

    #[test]
    fn callgrind_totals_are_parsed() {
        let text = "events: Ir\nsummary: 1234\nfn=main\n0 5\ntotals: 1234\n";
        assert_eq!(parse_callgrind_total(text), Some(1234));
        assert_eq!(parse_callgrind_total("summary: 99 1\n"), Some(99));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn every_case_runs() {
        for case in CASES {
            let mut op = (case.prepare)();
            op();
        }
    }
}
