//! Rust ↔ Go interop with the real Go library at v0.1.0: our smol transport
//! under [`WireProfile::V0_1`] against `github.com/dhiaayachi/raft-grpc-transport`
//! v0.1.0 itself (from the Go module proxy, run by `go/cmd/peer --library
//! v0.1.0`), both ways, every RPC kind, every field.
//!
//! v0.1.0 numbers the fields of its AppendEntries (unary and pipelined),
//! RequestVote and InstallSnapshot requests differently from our proto,
//! has no RequestPreVote, and has no field for `Log.appended_at`,
//! AppendEntries' `leader`, or InstallSnapshot's `snapshot_version` and
//! `leader`; its client leaves out RequestVote's `candidate` (its server
//! decodes one). What these tests prove:
//!
//! * our client under V0_1 reaches the library's server with every field
//!   the library has, in the right place: the Go side's transcript is our
//!   request with exactly the fields v0.1.0 cannot carry zeroed
//!   ([`v0_1_carries`]), responses come back whole, a 64 MiB snapshot and
//!   10,000 pipelined appends arrive intact and in order, and a
//!   RequestPreVote fails at once with
//!   [`TransportError::PreVoteUnsupported`] without a connection being
//!   made;
//! * the library's client reaches our server under V0_1 the same way: our
//!   server's transcript is the Go client's with exactly what the library
//!   does not send zeroed ([`v0_1_library_sends`]);
//! * the profile matters (the two control tests): with the default V0_2
//!   on our side, our server refuses most of the library's requests with
//!   `INTERNAL` (our decoder checks wire types), and — worse — the
//!   library's server refuses none of ours: protobuf-go reads a field of
//!   the wrong wire type as an unknown one, so our requests are taken with
//!   values in the wrong fields or gone ([`v0_2_read_by_v0_1`]) and
//!   answered with success.
//!
//! The transcripts are the canonical JSON lines of `raft_grpc_interop::canon`
//! and `go/canon`, compared line by line as in `go_interop.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use raft_grpc_interop::suite::{
    PIPELINED, SNAPSHOT_SIZE, assert_same, call, pattern_data, rust_suite,
};
use raft_grpc_interop::{Program, build_go_program, canon, go_available};
use raft_grpc_transport::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Log, RaftRequest, RaftResponse,
    RequestPreVoteRequest, RequestVoteRequest, RpcHeader,
};
use raft_grpc_transport::{Code, WireProfile, reference};
use raft_grpc_transport_api::{Rpc, TransportError};
use raft_grpc_transport_smol::{Config, GrpcTransport};

/// `--library v0.1.0`: the Go peer on the real Go library v0.1.0.
const LIBRARY: [&str; 2] = ["--library", "v0.1.0"];

/// `peer serve --library v0.1.0`: the Go library's server, answering the
/// reference way. Returns it and its address.
fn start_go_library_server() -> (Program, String) {
    let peer = build_go_program("peer");
    let mut server = Program::spawn(
        Command::new(peer)
            .args(["serve", "--listen", "127.0.0.1:0", "--id", "go-server"])
            .args(LIBRARY),
    );
    let addr = server.wait_for("listening on ");
    (server, addr)
}

/// A client of our smol transport under `profile`.
fn rust_client(profile: WireProfile) -> GrpcTransport {
    GrpcTransport::builder("127.0.0.1:9", Config::default().with_wire_profile(profile)).build()
}

/// What of `request` the Go library v0.1.0 receives from our client under
/// [`WireProfile::V0_1`]: `request` with the fields v0.1.0's messages have
/// no number for zeroed — `leader` and every entry's `appended_at` of an
/// AppendEntries, `snapshot_version` and `leader` of an InstallSnapshot.
/// Everything else is carried: RequestVote's `candidate` included (v0.1.0
/// numbers it 3 and its server decodes it). RequestPreVote is not sent at
/// all under V0_1; it is returned unchanged.
fn v0_1_carries(request: &RaftRequest) -> RaftRequest {
    let mut request = request.clone();
    match &mut request {
        RaftRequest::AppendEntries(r) => {
            r.leader = Bytes::new();
            for entry in &mut r.entries {
                entry.appended_at = None;
            }
        }
        RaftRequest::InstallSnapshot(r) => {
            r.snapshot_version = 0;
            r.leader = Bytes::new();
        }
        RaftRequest::RequestVote(_)
        | RaftRequest::RequestPreVote(_)
        | RaftRequest::TimeoutNow(_) => {}
    }
    request
}

/// What our server receives of the request in `go_line`, a transcript line
/// of the Go library v0.1.0's client (which shows the request as handed to
/// the library): the line with the fields the library does not send
/// zeroed — those [`v0_1_carries`] zeroes (`leader`,
/// `appended_at_unix_nanos`, `snapshot_version`) and RequestVote's
/// `candidate`, which v0.1.0's encoder leaves out. The response part has
/// none of these names and is left as it is.
fn v0_1_library_sends(go_line: &str) -> String {
    let line = set_every(go_line, "leader", "\"\"");
    let line = set_every(&line, "candidate", "\"\"");
    let line = set_every(&line, "appended_at_unix_nanos", "null");
    set_every(&line, "snapshot_version", "0")
}

/// `line` (canonical JSON) with the value of every field `name` replaced
/// by `value`. A value is a string, a number, `null` or an object without
/// nested objects (a long bytes field's `{"len":…,"crc32c":…}`). Hex
/// strings and numbers cannot contain `"name":`, so every match is a field.
fn set_every(line: &str, name: &str, value: &str) -> String {
    let key = format!("\"{name}\":");
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(&key) {
        let (before, after) = rest.split_at(at + key.len());
        out.push_str(before);
        out.push_str(value);
        let end = match after.as_bytes().first() {
            Some(b'"') => 1 + after[1..].find('"').expect("a closed string") + 1,
            Some(b'{') => after.find('}').expect("a closed object") + 1,
            _ => after.find([',', '}']).expect("a field or object follows"),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A pipelined append of our suite: entry `k` after `k - 1`.
fn pipelined(header: &RpcHeader, k: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header.clone(),
        term: 4,
        prev_log_entry: k - 1,
        prev_log_term: 4,
        entries: vec![Log::command(k, 4, Bytes::from(format!("pipelined {k:08}")))],
        leader_commit_index: k - 1,
        leader: Bytes::new(),
    }
}

#[test]
fn interop_v0_1_rust_client_to_go_library_server_every_rpc_and_field() {
    if !go_available("interop_v0_1_rust_client_to_go_library_server_every_rpc_and_field") {
        return;
    }
    let (mut server, addr) = start_go_library_server();
    let client = rust_client(WireProfile::V0_1);
    let header = RpcHeader::new(3, "rust-client", "127.0.0.1:9");
    block_on(async {
        for request in rust_suite(&header) {
            if let RaftRequest::RequestPreVote(r) = &request {
                // Not sent: the Go server prints no line for it (the next
                // one compared is TimeoutNow's).
                assert_pre_vote_unsupported(&client, &addr, r.clone()).await;
                continue;
            }
            let data = match &request {
                RaftRequest::InstallSnapshot(r) => pattern_data(r.size),
                _ => String::new(),
            };
            let response = call(&client, &addr, request.clone())
                .await
                .unwrap_or_else(|e| panic!("{} failed: {e}", canon::kind(&request)));
            if let RaftResponse::InstallSnapshot(r) = &response {
                assert!(r.success, "the Go library did not get all snapshot data");
            }
            let ours = canon::exchange(&v0_1_carries(&request), &data, &response);
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same(canon::kind(&request), &ours, &theirs);
        }

        let pipeline = client
            .append_entries_pipeline(&addr)
            .await
            .expect("open a pipeline to the Go library");
        let sender = async {
            for k in 1..=PIPELINED {
                pipeline
                    .append(&pipelined(&header, k))
                    .await
                    .expect("append");
            }
        };
        let receiver = async {
            let mut responses = Vec::new();
            for _ in 1..=PIPELINED {
                let (_, response) = pipeline.next().await.expect("a completion per append");
                responses.push(response.expect("a pipelined append failed"));
            }
            responses
        };
        let ((), responses) = futures_lite::future::zip(sender, receiver).await;
        for (k, response) in (1..=PIPELINED).zip(responses) {
            assert_eq!(response.last_log, k, "completions out of order");
            let request = RaftRequest::AppendEntries(pipelined(&header, k));
            let ours = canon::exchange(
                &v0_1_carries(&request),
                "",
                &RaftResponse::AppendEntries(response),
            );
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same("pipelined append", &ours, &theirs);
        }
    });
}

/// A RequestPreVote under V0_1 fails at once with `PreVoteUnsupported`
/// (`UNIMPLEMENTED`), to `addr` and to a listener that then has no
/// connection waiting: nothing was dialled.
async fn assert_pre_vote_unsupported(
    client: &GrpcTransport,
    addr: &str,
    request: RequestPreVoteRequest,
) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    silent.set_nonblocking(true).unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    for target in [addr, &silent_addr] {
        let start = Instant::now();
        let err = client
            .request_pre_vote(target, request.clone())
            .await
            .expect_err("RequestPreVote under V0_1");
        let took = start.elapsed();
        assert!(
            matches!(err, TransportError::PreVoteUnsupported(WireProfile::V0_1)),
            "{err:?}"
        );
        assert_eq!(err.code(), Code::Unimplemented, "{err}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    smol::Timer::after(Duration::from_millis(200)).await;
    match silent.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a RequestPreVote under V0_1 dialled its target: {other:?}"),
    }
}

/// Serves with our transport under `profile`, answering the reference way
/// and recording a transcript line per RPC.
fn start_rust_server(profile: WireProfile) -> (GrpcTransport, async_channel::Receiver<String>) {
    let server = block_on(
        GrpcTransport::builder("127.0.0.1:0", Config::default().with_wire_profile(profile)).bind(),
    )
    .expect("bind");
    let header = RpcHeader::new(3, "rust-server", server.local_addr().to_owned());
    let consumer = server.consumer();
    let (lines, transcript) = async_channel::unbounded();
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            let Rpc {
                request,
                responder,
                snapshot,
                ..
            } = rpc;
            let mut data = String::new();
            let mut received = None;
            if let Some(mut reader) = snapshot {
                let (mut len, mut crc) = (0u64, 0u32);
                received = loop {
                    match reader.chunk().await {
                        Ok(Some(chunk)) => {
                            crc = crc32c::crc32c_append(crc, &chunk);
                            len += chunk.len() as u64;
                        }
                        Ok(None) => break Some(len),
                        Err(_) => break None,
                    }
                };
                data = canon::data(len, crc);
            }
            let response = reference::response(&request, header.clone(), received);
            let line = canon::exchange(&request, &data, &response);
            responder.respond(Ok(response));
            let _ = lines.send(line).await;
        }
    })
    .detach();
    (server, transcript)
}

/// Up to `n` lines of the server's transcript, each waited for up to
/// `wait`.
fn server_lines(
    transcript: &async_channel::Receiver<String>,
    n: usize,
    wait: Duration,
) -> Vec<String> {
    block_on(async {
        let mut lines = Vec::new();
        while lines.len() < n {
            let next = futures_lite::future::or(async { transcript.recv().await.ok() }, async {
                smol::Timer::after(wait).await;
                None
            });
            match next.await {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        lines
    })
}

/// `peer call --library v0.1.0 --target ADDR EXTRA…`: the Go library's
/// client runs the call suite; its lines and whether every call succeeded.
fn go_library_client(addr: &str, extra: &[&str]) -> (Vec<String>, bool) {
    let peer = build_go_program("peer");
    Program::spawn(
        Command::new(peer)
            .args(["call", "--target", addr])
            .args(LIBRARY)
            .args(extra),
    )
    .finish()
}

#[test]
fn interop_v0_1_go_library_client_to_rust_server_every_rpc_and_field() {
    if !go_available("interop_v0_1_go_library_client_to_rust_server_every_rpc_and_field") {
        return;
    }
    let (server, transcript) = start_rust_server(WireProfile::V0_1);
    let (theirs, ok) = go_library_client(
        server.local_addr(),
        &[
            "--snapshot-size",
            &SNAPSHOT_SIZE.to_string(),
            "--pipeline",
            &PIPELINED.to_string(),
        ],
    );
    let ours = server_lines(&transcript, theirs.len(), Duration::from_secs(10));
    for (n, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        assert_same(&format!("exchange {n}"), ours, &v0_1_library_sends(theirs));
    }
    assert!(ok, "the Go library's client reported a failed call");
    // 5 exchanges before the pipeline: 2 AppendEntries, RequestVote,
    // TimeoutNow, InstallSnapshot (v0.1.0 has no RequestPreVote).
    assert_eq!(theirs.len() as u64, 5 + PIPELINED, "Go client lines");
    assert_eq!(ours.len(), theirs.len(), "exchanges seen by the server");
    assert!(theirs[4].contains(r#""rpc":"install_snapshot""#));
    assert!(theirs[4].contains(&format!(r#""size":{SNAPSHOT_SIZE}"#)));
    // What the library left out: the leader and appended_at of the first
    // AppendEntries, the candidate of the vote, the snapshot's version and
    // leader; nothing of the heartbeat, TimeoutNow or the pipelined
    // appends.
    let dropped: Vec<usize> = (0..theirs.len())
        .filter(|&n| v0_1_library_sends(&theirs[n]) != theirs[n])
        .collect();
    assert_eq!(dropped, [0, 2, 4], "lines with fields v0.1.0 does not send");
}

/// The Go library v0.1.0's client against our server in the default
/// profile, V0_2: our decoder checks every field's wire type, so each
/// request that puts a length-delimited field where V0_2 has a varint (or
/// the other way round) is refused with `INTERNAL` before the consumer sees
/// it — the AppendEntries with entries (v0.1.0's `prev_log_term` at our
/// `entries`), every pipelined append, the vote (v0.1.0's
/// `leadership_transfer` at our `candidate`) and the snapshot (its
/// `last_log_term` at our `peers`). Only the requests whose fields have
/// the same numbers in both (a term-only heartbeat, TimeoutNow) get
/// through, intact.
#[test]
fn interop_v0_1_go_library_client_to_rust_server_in_v0_2_profile_is_refused() {
    if !go_available("interop_v0_1_go_library_client_to_rust_server_in_v0_2_profile_is_refused") {
        return;
    }
    let (server, transcript) = start_rust_server(WireProfile::V0_2);
    // One pipelined append: with more, how many the library sends before
    // it sees the stream fail is a race.
    let (theirs, ok) = go_library_client(
        server.local_addr(),
        &[
            "--snapshot-size",
            &SNAPSHOT_SIZE.to_string(),
            "--pipeline",
            "1",
        ],
    );
    assert!(!ok, "the Go library's client reported no failed call");
    let kinds: Vec<&str> = theirs
        .iter()
        .map(|l| l.split('"').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "append_entries",
            "append_entries",
            "request_vote",
            "timeout_now",
            "install_snapshot",
            "append_entries"
        ],
        "{theirs:#?}"
    );
    for (n, message) in [
        (0, "AppendEntriesRequest"),
        (2, "RequestVoteRequest"),
        (5, "AppendEntriesRequest"),
    ] {
        let error = format!(r#""error":"rpc error: code = Internal desc = malformed {message}"#);
        assert!(theirs[n].contains(&error), "exchange {n}: {}", theirs[n]);
        assert!(
            theirs[n].contains("invalid wire type"),
            "exchange {n}: {}",
            theirs[n]
        );
    }
    // The library reports the refused snapshot as a bare EOF: its client
    // returns the error of the Send that found the stream ended (our
    // INTERNAL came while it was still sending 64 MiB), not the status.
    assert!(theirs[4].ends_with(r#""error":"EOF"}"#), "{}", theirs[4]);
    // Only the heartbeat and TimeoutNow reached the consumer, intact.
    let ours = server_lines(&transcript, 3, Duration::from_secs(2));
    assert_eq!(ours.len(), 2, "{ours:#?}");
    assert_same("heartbeat", &ours[0], &theirs[1]);
    assert_same("timeout_now", &ours[1], &theirs[3]);
}

/// What the Go library v0.1.0's server decodes of `request` sent in our
/// default numbering, V0_2. protobuf-go reads a field whose number v0.1.0
/// lacks, or whose wire type does not match that number's there, as an
/// unknown field, which the library drops: so nothing fails to decode,
/// values land in the fields whose numbers they have, and the rest
/// vanishes. Of an InstallSnapshot, every data message's `data` (our 9, a
/// varint field there) vanishes too: the library reads no data at all.
fn v0_2_read_by_v0_1(request: &RaftRequest) -> RaftRequest {
    match request {
        // Ours: prev_log_entry 3, prev_log_term 4, entries 5 (LEN),
        // leader_commit_index 6, leader 7 (LEN). v0.1.0: prev_log_entry 4,
        // prev_log_term 5, entries 6 (LEN), leader_commit_index 7.
        RaftRequest::AppendEntries(r) => RaftRequest::AppendEntries(AppendEntriesRequest {
            header: r.header.clone(),
            term: r.term,
            prev_log_entry: r.prev_log_term,
            ..Default::default()
        }),
        // Ours: last_log_index 3, last_log_term 4, leadership_transfer 5,
        // candidate 6 (LEN). v0.1.0: candidate 3 (LEN), last_log_index 4,
        // last_log_term 5, leadership_transfer 6.
        RaftRequest::RequestVote(r) => RaftRequest::RequestVote(RequestVoteRequest {
            header: r.header.clone(),
            term: r.term,
            last_log_index: r.last_log_term,
            last_log_term: u64::from(r.leadership_transfer),
            ..Default::default()
        }),
        // Ours: last_log_index 3, last_log_term 4, peers 5 (LEN),
        // configuration 6 (LEN), configuration_index 7, size 8, data 9
        // (LEN), snapshot_version 10, leader 11 (LEN). v0.1.0:
        // last_log_index 4, last_log_term 5, peers 6 (LEN), configuration
        // 7 (LEN), configuration_index 8, size 9, data 10 (LEN).
        RaftRequest::InstallSnapshot(r) => RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            header: r.header.clone(),
            term: r.term,
            last_log_index: r.last_log_term,
            peers: r.configuration.clone(),
            configuration_index: r.size,
            ..Default::default()
        }),
        RaftRequest::RequestPreVote(_) | RaftRequest::TimeoutNow(_) => request.clone(),
    }
}

/// Our client in the default profile, V0_2, against the Go library
/// v0.1.0's server: nothing fails but RequestPreVote. Every request is
/// read with its values in the wrong fields or gone
/// ([`v0_2_read_by_v0_1`]), and the reference responder answers them
/// all with success: the AppendEntries with 7 entries is acknowledged
/// with `last_log` = our `prev_log_term` and no entry stored, each
/// pipelined append likewise, and the 64 MiB snapshot is "installed"
/// with 0 bytes read (size 0 = 0 bytes). RequestPreVote is sent and
/// answered `UNIMPLEMENTED` by grpc-go (not refused locally as under
/// V0_1).
#[test]
fn interop_v0_1_rust_client_in_v0_2_profile_to_go_library_server_is_misread() {
    if !go_available("interop_v0_1_rust_client_in_v0_2_profile_to_go_library_server_is_misread") {
        return;
    }
    let (mut server, addr) = start_go_library_server();
    let client = rust_client(WireProfile::V0_2);
    let header = RpcHeader::new(3, "rust-client", "127.0.0.1:9");
    block_on(async {
        for request in rust_suite(&header) {
            let outcome = call(&client, &addr, request.clone()).await;
            if let RaftRequest::RequestPreVote(_) = &request {
                let err = outcome.expect_err("v0.1.0 has no RequestPreVote");
                let TransportError::Status(status) = &err else {
                    panic!("not the Go server's answer: {err:?}");
                };
                assert_eq!(status.code(), Code::Unimplemented, "{err}");
                assert!(
                    err.to_string().contains("unknown method RequestPreVote"),
                    "{err}"
                );
                continue;
            }
            let response =
                outcome.unwrap_or_else(|e| panic!("{} failed: {e}", canon::kind(&request)));
            let data = match &request {
                RaftRequest::InstallSnapshot(_) => canon::data(0, 0),
                _ => String::new(),
            };
            let misread = v0_2_read_by_v0_1(&request);
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same(
                canon::kind(&request),
                &canon::exchange(&misread, &data, &response),
                &theirs,
            );
            match (&request, &response) {
                (RaftRequest::AppendEntries(r), RaftResponse::AppendEntries(a))
                    if !r.entries.is_empty() =>
                {
                    assert!(a.success);
                    assert_eq!(a.last_log, r.prev_log_term, "acknowledged as");
                    assert_ne!(misread, v0_1_carries(&request), "landed right");
                }
                (RaftRequest::InstallSnapshot(_), RaftResponse::InstallSnapshot(a)) => {
                    assert!(a.success, "the Go library refused the snapshot");
                }
                (RaftRequest::RequestVote(_), _) => {
                    assert_ne!(misread, v0_1_carries(&request), "landed right");
                }
                _ => {}
            }
        }
        // Pipelined appends: each acknowledged at our prev_log_term (4),
        // whatever its index.
        let pipeline = client
            .append_entries_pipeline(&addr)
            .await
            .expect("open a pipeline to the Go library");
        for k in 1..=3 {
            pipeline
                .append(&pipelined(&header, k))
                .await
                .expect("append");
        }
        for k in 1..=3 {
            let (_, response) = pipeline.next().await.expect("a completion per append");
            let response = response.expect("a pipelined append failed");
            assert_eq!(
                (response.success, response.last_log),
                (true, 4),
                "append {k}"
            );
            let request = RaftRequest::AppendEntries(pipelined(&header, k));
            let ours = canon::exchange(
                &v0_2_read_by_v0_1(&request),
                "",
                &RaftResponse::AppendEntries(response),
            );
            let theirs = server.line().expect("the Go server's transcript line");
            assert_same("pipelined append", &ours, &theirs);
        }
    });
}
