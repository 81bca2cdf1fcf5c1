//! Hostile peers against a serving node, one attack per test.
//!
//! Each test starts its own `hostile-target` process (the reference
//! responder on the smol backend), starts a legitimate caller beside the
//! attack (RequestVote every 20 ms from 127.0.0.1), runs the attack with
//! raw HTTP/2 frames from 127.0.0.2, and then checks:
//! * the node still runs, and the legitimate caller was answered every
//!   time, none of its calls slower than [`SLOWEST`];
//! * the node's peak resident memory grew by less than the bound the test
//!   states;
//! * what the attacker saw: the limit it hit, and how it was told.
//!
//! The attacks run one at a time (a lock), so that they do not slow each
//! other's legitimate callers on a 2-vCPU machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raft_grpc_hostile::{
    LegitCaller, RawConn, Target, append_entries, code, frame, grpc_message, header_block, kind,
};

const TARGET: &str = env!("CARGO_BIN_EXE_hostile-target");

/// Where the attacks come from: an address of their own, so that the
/// per-address connection limit tells them from the legitimate caller.
const ATTACKER: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));

/// The slowest legitimate call accepted while an attack runs: far above a
/// loopback call's latency (well under a millisecond), far below the 10 s
/// deadline. A call slower than this means the attack starved the node.
const SLOWEST: Duration = Duration::from_secs(2);

const MIB: u64 = 1 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `attack` against a fresh target started with `args`, beside a
/// legitimate caller, and checks what every attack must leave intact.
fn under_attack(name: &str, args: &[&str], memory_bound: u64, attack: impl FnOnce(SocketAddr)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut target = Target::start(TARGET, args);
    let caller = LegitCaller::start(target.addr);
    let before = target.peak_rss();
    let start = Instant::now();
    attack(target.addr);
    let took = start.elapsed();
    // Still answering after the attack.
    std::thread::sleep(Duration::from_millis(100));
    let report = caller.stop();
    let grown = target.peak_rss().saturating_sub(before);
    println!(
        "{name}: attack {took:?}; legitimate calls {} answered, {} failed, slowest {:?}; \
         peak RSS grew by {:.1} MiB (bound {} MiB)",
        report.answered,
        report.failed,
        report.slowest,
        grown as f64 / MIB as f64,
        memory_bound / MIB
    );
    assert!(target.is_running(), "{name}: the node is gone");
    assert_eq!(report.failed, 0, "{name}: {:?}", report.errors);
    assert!(report.answered > 0, "{name}: no legitimate call answered");
    assert!(
        report.slowest < SLOWEST,
        "{name}: a legitimate call took {:?}",
        report.slowest
    );
    if cfg!(target_os = "linux") {
        assert!(
            grown < memory_bound,
            "{name}: peak RSS grew by {grown} bytes, over {memory_bound}"
        );
    }
}

fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> RawConn {
    let conn = RawConn::connect(addr, ATTACKER, settings).expect("connect");
    // The server's SETTINGS first: our frames may use its limits then.
    conn.wait_for(Duration::from_secs(5), |f| {
        f.kind == kind::SETTINGS && f.flags & kind::ACK == 0
    })
    .expect("the server's SETTINGS");
    conn
}

/// The answer that ends `stream`: a HEADERS frame with END_STREAM
/// (trailers, or Trailers-Only), a RST_STREAM, or a GOAWAY.
fn end_of(conn: &RawConn, stream: u32, timeout: Duration) -> Option<raft_grpc_hostile::Frame> {
    conn.wait_for(timeout, |f| {
        (f.stream == stream
            && ((f.kind == kind::HEADERS && f.flags & kind::END_STREAM != 0)
                || f.kind == kind::RST_STREAM))
            || f.kind == kind::GOAWAY
    })
}

// ---- the three failures of the first hostile-peer review ----

/// A 400 kB header block that references one small header 400,000 times
/// decodes to 12.6 MiB. The node accepts header lists of 16 KiB: such a
/// stream is refused (HTTP 431 or RST_STREAM), or, as h2 does for a block
/// this far over the limit, the connection gets GOAWAY ENHANCE_YOUR_CALM
/// before the block is decoded. Twenty connections try it.
#[test]
fn a_header_block_that_decodes_to_megabytes_is_refused() {
    under_attack("header amplification", &[], 16 * MIB, |addr| {
        let (mut refused, mut calm, mut cut) = (0, 0, 0);
        for _ in 0..20 {
            let mut conn = connect(addr, &[]);
            let id = conn.next_stream_id();
            let mut block = header_block::grpc_request("RequestVote");
            header_block::literal_indexed(&mut block, "a", b"b");
            for _ in 0..400_000 {
                header_block::indexed(&mut block, 62);
            }
            // The node may close the connection while the block is still
            // on its way: the write fails, or TCP resets the connection
            // and the GOAWAY before it is lost.
            let wrote = conn
                .write(&frame(kind::HEADERS, kind::END_HEADERS, id, &block))
                .is_ok();
            let Some(f) = end_of(&conn, id, Duration::from_secs(10)) else {
                assert!(
                    !wrote || conn.is_closed(),
                    "no answer to an oversized header block"
                );
                cut += 1;
                continue;
            };
            match f.kind {
                kind::GOAWAY => {
                    assert_eq!(f.error_code(), Some(code::ENHANCE_YOUR_CALM), "{f:?}");
                    calm += 1;
                }
                kind::RST_STREAM => refused += 1,
                _ => {
                    assert_eq!(f.header(":status"), Some("431"), "{f:?}");
                    refused += 1;
                }
            }
        }
        println!(
            "header amplification: {refused} streams refused, {calm} connections sent GOAWAY \
             ENHANCE_YOUR_CALM, {cut} cut off before their GOAWAY was read"
        );
        assert!(calm > 0 || refused > 0, "never told why");
    });
}

/// A pipeline client that never opens its receive window
/// (SETTINGS_INITIAL_WINDOW_SIZE 0) keeps sending appends. The node stops
/// taking them once 64 KiB of answers wait unsent: its receive window
/// stays spent and flow control holds the client back.
#[test]
fn a_client_that_never_reads_its_answers_is_held_back() {
    under_attack("unread answers", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[(kind::INITIAL_WINDOW_SIZE, 0)]);
        let id = conn.open("AppendEntriesPipeline").unwrap();
        let append = grpc_message(&append_entries(&[7u8; 64]));
        let batch: Vec<u8> = append.repeat(200);
        let (mut sent, mut held_back) = (0usize, false);
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            let n = conn
                .send_data(id, &batch, false, Duration::from_millis(500))
                .unwrap();
            sent += n;
            if n < batch.len() {
                held_back = true;
                break;
            }
        }
        let appends = sent / append.len();
        println!("unread answers: {appends} appends ({sent} bytes) sent before the window closed");
        assert!(held_back, "the client was never held back ({sent} bytes)");
        // The 1 MiB stream window, and what went in before 64 KiB of
        // answers piled up (about 4,400 appends).
        assert!(
            sent < 2 << 20,
            "{sent} bytes taken from a client that reads nothing"
        );
    });
}

/// Connections that complete the HTTP/2 preface and then idle. From one
/// address, 32 are held and the rest refused at once with GOAWAY
/// ENHANCE_YOUR_CALM; the held ones get GOAWAY NO_ERROR after the idle
/// timeout and are closed when they do not leave.
#[test]
fn idle_connections_are_limited_per_address_and_closed() {
    let args = ["--idle-timeout-ms", "1000", "--connect-timeout-ms", "1000"];
    under_attack("idle connections", &args, 16 * MIB, |addr| {
        let conns: Vec<RawConn> = (0..100).map(|_| connect(addr, &[])).collect();
        let start = Instant::now();
        let (mut calm, mut reset, mut idle) = (0, 0, 0);
        for conn in &conns {
            // A refused connection is closed right after its GOAWAY: when
            // the close meets our SETTINGS acknowledgement unread, TCP
            // resets it, and the GOAWAY may be lost on the way.
            let goaway = conn.wait_for(Duration::from_secs(5), |f| f.kind == kind::GOAWAY);
            match goaway.map(|f| f.error_code()) {
                Some(Some(code::ENHANCE_YOUR_CALM)) => calm += 1,
                Some(Some(code::NO_ERROR)) => idle += 1,
                None if conn.is_closed() => reset += 1,
                other => panic!("GOAWAY with {other:?}"),
            }
            assert!(conn.wait_closed(Duration::from_secs(5)), "still open");
        }
        println!(
            "idle connections: {calm} refused with ENHANCE_YOUR_CALM, {reset} closed before \
             their GOAWAY was read, {idle} closed when idle, all within {:?}",
            start.elapsed()
        );
        assert_eq!(calm + reset, 100 - 32);
        assert!(calm > 0, "no refusal was seen");
        assert_eq!(idle, 32);
    });
}

// ---- limits that close the rest of the review ----

/// Streams opened with a request head and then nothing: each fails with
/// DEADLINE_EXCEEDED once it has waited for data for the request data
/// timeout.
#[test]
fn streams_that_send_nothing_time_out() {
    let args = ["--request-data-timeout-ms", "500"];
    under_attack("silent streams", &args, 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let streams: Vec<u32> = (0..200)
            .map(|_| conn.open("RequestVote").unwrap())
            .collect();
        let mut answered = 0;
        for id in &streams {
            let f = end_of(&conn, *id, Duration::from_secs(5)).expect("an answer");
            assert_eq!(f.kind, kind::HEADERS, "{f:?}");
            assert_eq!(f.grpc_status(), Some(4), "{f:?}");
            answered += 1;
        }
        println!("silent streams: {answered} answered DEADLINE_EXCEEDED");
    });
}

/// Streams that each send most of a 4 MiB message and never the rest: the
/// node holds 32 MiB of incomplete messages for one connection; streams
/// beyond that fail with RESOURCE_EXHAUSTED.
#[test]
fn incomplete_messages_cannot_pin_more_than_the_connection_budget() {
    under_attack("incomplete messages", &[], 96 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&(4u32 << 20).to_be_bytes());
        let mut body = prefix.clone();
        body.resize((1 << 20) - 1024, 0);
        let mut streams = Vec::new();
        for _ in 0..100 {
            let id = conn.open("AppendEntries").unwrap();
            let sent = conn
                .send_data(id, &body, false, Duration::from_secs(2))
                .unwrap();
            streams.push((id, sent));
        }
        let mut exhausted = 0;
        while let Some(f) = conn.wait_for(Duration::from_secs(2), |f| {
            f.kind == kind::HEADERS && f.flags & kind::END_STREAM != 0
        }) {
            assert_eq!(f.grpc_status(), Some(8), "{f:?}");
            exhausted += 1;
        }
        let sent: usize = streams.iter().map(|(_, sent)| sent).sum();
        println!(
            "incomplete messages: {sent} bytes sent on {} streams",
            streams.len()
        );
        let held = 100 - exhausted;
        println!("incomplete messages: {held} held, {exhausted} refused RESOURCE_EXHAUSTED");
        // 32 MiB of ~1 MiB pieces.
        assert!((28..=33).contains(&held), "{held} incomplete messages held");
    });
}

/// A snapshot declaring a negative size is a bad argument, not an internal
/// error.
#[test]
fn a_snapshot_with_a_negative_size_is_invalid_argument() {
    under_attack("negative snapshot size", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let id = conn.open("InstallSnapshot").unwrap();
        // InstallSnapshotRequest field 8 (size) = -1: a ten-byte varint.
        let mut request = vec![0x40];
        request.extend_from_slice(&[0xff; 9]);
        request.push(0x01);
        conn.send_data(id, &grpc_message(&request), true, Duration::from_secs(2))
            .unwrap();
        let start = Instant::now();
        let f = end_of(&conn, id, Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "no answer after {:?} (connection closed: {}, {} frames read)",
                start.elapsed(),
                conn.is_closed(),
                conn.frames_in()
            )
        });
        assert_eq!(f.grpc_status(), Some(3), "{f:?}");
    });
}

// ---- attacks that h2's own limits already stop (kept passing) ----

/// HEADERS then RST_STREAM, again and again (CVE-2023-44487).
#[test]
fn rapid_reset() {
    under_attack("rapid reset", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let block = header_block::grpc_request("RequestVote");
        for _ in 0..20_000 {
            let id = conn.next_stream_id();
            let mut bytes = frame(kind::HEADERS, kind::END_HEADERS, id, &block);
            bytes.extend(frame(kind::RST_STREAM, 0, id, &8u32.to_be_bytes()));
            if conn.write(&bytes).is_err() {
                break;
            }
        }
        let goaway = conn.wait_for(Duration::from_secs(5), |f| f.kind == kind::GOAWAY);
        println!(
            "rapid reset: GOAWAY {:?}",
            goaway.and_then(|f| f.error_code())
        );
    });
}

/// A header block that never ends: CONTINUATION frames without END_HEADERS.
#[test]
fn continuation_flood() {
    under_attack("CONTINUATION flood", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let id = conn.next_stream_id();
        let block = header_block::grpc_request("RequestVote");
        conn.write(&frame(kind::HEADERS, 0, id, &block)).unwrap();
        let mut filler = Vec::new();
        header_block::literal(&mut filler, "x-filler", &[b'f'; 100]);
        for _ in 0..100_000 {
            if conn
                .write(&frame(kind::CONTINUATION, 0, id, &filler))
                .is_err()
            {
                break;
            }
        }
        assert!(
            conn.wait_closed(Duration::from_secs(5)),
            "the flood was not cut off"
        );
    });
}

/// Empty DATA frames on one stream, by the hundred thousand.
#[test]
fn empty_data_flood() {
    under_attack("empty DATA flood", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let id = conn.open("AppendEntriesPipeline").unwrap();
        let empty = frame(kind::DATA, 0, id, &[]);
        let batch = empty.repeat(1000);
        for _ in 0..200 {
            if conn.write(&batch).is_err() {
                break;
            }
        }
    });
}

/// SETTINGS and PING frames by the hundred thousand.
#[test]
fn settings_and_ping_floods() {
    under_attack("SETTINGS and PING floods", &[], 16 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        let settings = raft_grpc_hostile::settings(&[(kind::MAX_FRAME_SIZE, 16_384)]).repeat(1000);
        let ping = frame(kind::PING, 0, 0, &[1; 8]).repeat(1000);
        for _ in 0..100 {
            if conn.write(&settings).is_err() || conn.write(&ping).is_err() {
                break;
            }
        }
    });
}

/// More streams than the node allows at once: the ones beyond 1024 are
/// refused (REFUSED_STREAM), the node keeps serving.
#[test]
fn stream_exhaustion() {
    under_attack("stream exhaustion", &[], 32 * MIB, |addr| {
        let mut conn = connect(addr, &[]);
        for _ in 0..2000 {
            if conn.open("AppendEntriesPipeline").is_err() {
                break;
            }
        }
        let refused = conn.wait_for(Duration::from_secs(5), |f| {
            f.kind == kind::RST_STREAM && f.error_code() == Some(code::REFUSED_STREAM)
                || f.kind == kind::GOAWAY
        });
        assert!(
            refused.is_some(),
            "streams beyond the limit were not refused"
        );
    });
}

/// TCP connections that send nothing, and one that speaks HTTP/1.1: closed
/// after the handshake timeout, and at once.
#[test]
fn silent_connections_and_bytes_that_are_not_http2() {
    let args = ["--connect-timeout-ms", "1000"];
    under_attack(
        "silent and non-HTTP/2 connections",
        &args,
        16 * MIB,
        |addr| {
            let start = Instant::now();
            let silent: Vec<RawConn> = (0..30)
                .map(|_| RawConn::over(RawConn::tcp(addr, ATTACKER).unwrap(), false).unwrap())
                .collect();
            let mut http1 = RawConn::over(RawConn::tcp(addr, ATTACKER).unwrap(), false).unwrap();
            http1
                .write(b"GET / HTTP/1.1\r\nHost: target\r\n\r\n")
                .unwrap();
            assert!(
                http1.wait_closed(Duration::from_secs(3)),
                "HTTP/1.1 kept open"
            );
            assert!(
                silent.iter().all(|conn| !conn.is_closed()),
                "a silent connection closed before its handshake timeout"
            );
            for conn in &silent {
                assert!(
                    conn.wait_closed(Duration::from_secs(5)),
                    "a silent connection kept open"
                );
            }
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(900), "closed after {took:?}");
        },
    );
}
