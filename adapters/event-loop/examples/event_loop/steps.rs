//! The client's application: what the example does, step by step.
//!
//! This module owns the requests, the checks of their answers and one
//! printed line per step. Each step issues commands on the client
//! endpoint, drains, and runs the loop until the outcome it waits for
//! arrives as a `ClientEvent`; where the server's application has
//! something to check (a heartbeat on the fast path, the bytes and CRC-32C
//! of a snapshot), it looks at what the server side recorded.

use std::fmt::Display;
use std::time::Instant;

use bytes::Bytes;
use raft_grpc_transport::TransportError;
use raft_grpc_transport::client::{CallId, ClientEvent, OutgoingRpc};
use raft_grpc_transport::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Log, RaftResponse, RequestPreVoteRequest,
    RequestVoteRequest, RpcHeader, TimeoutNowRequest,
};
use raft_grpc_transport::snapshot::SnapshotProgress;

use crate::{EventLoop, Failure};

const TERM: u64 = 5;
/// Appends in the pipeline step.
const PIPELINED: u64 = 100;
/// The snapshot's size, and the pieces its in-memory source hands over.
const SNAPSHOT_SIZE: u64 = 64 << 20;
const SOURCE_PIECE: usize = 256 << 10;

/// Runs every step; the first failure ends the run.
pub fn run(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    unary_append(lp, peer)?;
    heartbeat(lp, peer)?;
    votes(lp, peer)?;
    timeout_now(lp, peer)?;
    pipeline(lp, peer)?;
    snapshot(lp, peer)?;
    close(lp, peer)
}

/// The leader's header: an address in it is part of what makes a
/// heartbeat a heartbeat.
fn header() -> RpcHeader {
    RpcHeader::new(3, "client", "127.0.0.1:7000")
}

fn report(step: &str, started: Instant, detail: impl Display) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    println!("  {step:<24} {ms:>9.2} ms   {detail}");
}

fn fail<T>(step: &str, what: impl Display) -> Result<T, Failure> {
    Err(format!("{step}: {what}").into())
}

/// Starts a unary call and runs the loop until its outcome.
fn call(
    lp: &mut EventLoop,
    peer: &str,
    step: &str,
    rpc: OutgoingRpc,
) -> Result<RaftResponse, Failure> {
    let now = Instant::now();
    let call = lp.client.endpoint.start_rpc(peer, rpc, now);
    lp.drain(now);
    match lp.run_until(step, |lp, _| Ok(lp.client.take_completed(call)))? {
        Ok(response) => Ok(response),
        Err(e) => fail(step, e),
    }
}

fn unary_append(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    const STEP: &str = "AppendEntries";
    let started = Instant::now();
    let request = AppendEntriesRequest {
        header: header(),
        term: TERM,
        entries: (1..=3)
            .map(|i| Log::command(i, TERM, vec![b'x'; 100]))
            .collect(),
        ..Default::default()
    };
    let RaftResponse::AppendEntries(r) = call(lp, peer, STEP, request.into())? else {
        return fail(STEP, "not an AppendEntries answer");
    };
    if !(r.success && r.term == TERM && r.last_log == 3) {
        return fail(STEP, format!("unexpected answer {r:?}"));
    }
    let detail = "3 entries: success, last_log=3 (first call: TCP connect, HTTP/2 handshake, PING)";
    report(STEP, started, detail);
    Ok(())
}

fn heartbeat(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    const STEP: &str = "heartbeat";
    let started = Instant::now();
    let before = lp.server.app.heartbeats;
    let request = AppendEntriesRequest {
        header: header(),
        term: TERM,
        ..Default::default()
    };
    let RaftResponse::AppendEntries(r) = call(lp, peer, STEP, request.into())? else {
        return fail(STEP, "not an AppendEntries answer");
    };
    if !r.success || lp.server.app.heartbeats != before + 1 {
        return fail(STEP, "not answered on the server's fast path");
    }
    report(
        STEP,
        started,
        "success, answered as ServerEvent::Heartbeat (fast path)",
    );
    Ok(())
}

fn votes(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    let started = Instant::now();
    let vote = RequestVoteRequest {
        header: header(),
        term: TERM + 1,
        last_log_index: 3,
        last_log_term: TERM,
        ..Default::default()
    };
    match call(lp, peer, "RequestVote", vote.into())? {
        RaftResponse::RequestVote(r) if r.granted && r.term == TERM + 1 => {}
        other => return fail("RequestVote", format!("unexpected answer {other:?}")),
    }
    report(
        "RequestVote",
        started,
        format!("granted at term {}", TERM + 1),
    );

    let started = Instant::now();
    let pre_vote = RequestPreVoteRequest {
        header: header(),
        term: TERM + 1,
        last_log_index: 3,
        last_log_term: TERM,
    };
    match call(lp, peer, "RequestPreVote", pre_vote.into())? {
        RaftResponse::RequestPreVote(r) if r.granted && r.term == TERM + 1 => {}
        other => return fail("RequestPreVote", format!("unexpected answer {other:?}")),
    }
    report(
        "RequestPreVote",
        started,
        format!("granted at term {}", TERM + 1),
    );
    Ok(())
}

fn timeout_now(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    let started = Instant::now();
    let request = TimeoutNowRequest { header: header() };
    match call(lp, peer, "TimeoutNow", request.into())? {
        RaftResponse::TimeoutNow(_) => report("TimeoutNow", started, "answered"),
        other => return fail("TimeoutNow", format!("unexpected answer {other:?}")),
    }
    Ok(())
}

/// The append of log entry `index` (the pipeline carries 4 ..= 103).
fn pipelined_append(index: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(),
        term: TERM,
        prev_log_entry: index - 1,
        prev_log_term: TERM,
        entries: vec![Log::command(index, TERM, vec![b'p'; 1024])],
        leader_commit_index: 3,
        ..Default::default()
    }
}

fn pipeline(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    const STEP: &str = "pipeline";
    let started = Instant::now();
    let pipeline = lp.client.endpoint.open_pipeline(peer, started);
    lp.drain(started);
    let (mut opened, mut sent, mut done, mut most_in_flight) = (false, 0u64, 0u64, 0u64);
    lp.run_until(STEP, |lp, now| {
        while let Some(event) = lp.client.events.pop_front() {
            match event {
                ClientEvent::PipelineOpened { pipeline: p } if p == pipeline => opened = true,
                ClientEvent::Appended {
                    pipeline: p,
                    seq,
                    result,
                } if p == pipeline => {
                    let r = result.or_else(|e| fail(STEP, format!("append {seq}: {e}")))?;
                    // In order: the n-th completion is the n-th append.
                    if seq != done || !r.success || r.last_log != seq + 4 {
                        return fail(STEP, format!("completion {done} was seq {seq}: {r:?}"));
                    }
                    done += 1;
                }
                ClientEvent::PipelineClosed { pipeline: p, error } if p == pipeline => {
                    return fail(STEP, format!("closed early: {error}"));
                }
                _ => {} // PipelineReady: the room is checked below
            }
        }
        // Back-pressure: append while the window has room.
        while opened && sent < PIPELINED && lp.client.endpoint.pipeline_has_room(pipeline) {
            let request = pipelined_append(sent + 4);
            let seq = lp.client.endpoint.append(pipeline, &request, now);
            let seq = seq.or_else(|e| fail(STEP, format!("append: {e}")))?;
            debug_assert_eq!(seq, sent);
            sent += 1;
            most_in_flight = most_in_flight.max(sent - done);
            lp.drain(now);
        }
        Ok((done == PIPELINED).then_some(()))
    })?;
    let elapsed = started.elapsed();
    lp.client.endpoint.close_pipeline(pipeline, Instant::now());
    lp.drain(Instant::now());
    let error = lp.run_until("the pipeline to close", |lp, _| {
        let at = lp.client.events.iter().position(
            |e| matches!(e, ClientEvent::PipelineClosed { pipeline: p, .. } if *p == pipeline),
        );
        Ok(at.and_then(|at| lp.client.events.remove(at)))
    })?;
    if !matches!(
        error,
        ClientEvent::PipelineClosed {
            error: TransportError::PipelineShutdown,
            ..
        }
    ) {
        return fail(STEP, format!("closed with {error:?}"));
    }
    let rate = PIPELINED as f64 / elapsed.as_secs_f64();
    let detail = format!(
        "{PIPELINED} appends of 1 KiB completed in order, up to {most_in_flight} in flight \
         ({rate:.0}/s); close_pipeline -> PipelineShutdown"
    );
    report(STEP, started, detail);
    Ok(())
}

/// The snapshot's in-memory source: a deterministic byte stream.
struct SnapshotSource(u64);

impl SnapshotSource {
    fn read(&mut self, len: usize) -> Bytes {
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            data.extend_from_slice(&self.0.to_le_bytes());
        }
        data.truncate(len);
        Bytes::from(data)
    }
}

fn snapshot(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    const STEP: &str = "InstallSnapshot";
    let started = Instant::now();
    let meta = InstallSnapshotRequest {
        header: header(),
        snapshot_version: 1,
        term: TERM,
        last_log_index: PIPELINED + 3,
        last_log_term: TERM,
        configuration: Bytes::from_static(b"configuration"),
        configuration_index: 1,
        size: SNAPSHOT_SIZE,
        ..Default::default()
    };
    let before = lp.server.counts;
    let call: CallId = lp.client.endpoint.start_snapshot(peer, meta, started);
    lp.drain(started);
    let mut source = SnapshotSource(0x9e37_79b9_7f4a_7c15);
    let (mut pushed, mut crc, mut finished) = (0u64, 0u32, false);
    let mut progress: Option<SnapshotProgress> = None;
    let result = lp.run_until(STEP, |lp, now| {
        // Feed the stream while it wants data: it stays at most two
        // chunks ahead of what HTTP/2 has taken, so the 64 MiB are never
        // all in memory at once.
        while !finished && lp.client.endpoint.snapshot_wants_data(call) {
            if pushed == SNAPSHOT_SIZE {
                lp.client.endpoint.finish_snapshot(call, now);
                finished = true;
            } else {
                let len = SOURCE_PIECE.min((SNAPSHOT_SIZE - pushed) as usize);
                let piece = source.read(len);
                crc = crc32c::crc32c_append(crc, &piece);
                pushed += len as u64;
                let pushed = lp.client.endpoint.push_snapshot_data(call, piece, now);
                pushed.or_else(|status| fail(STEP, format!("push_snapshot_data: {status}")))?;
            }
            lp.drain(now);
        }
        while let Some(event) = lp.client.events.pop_front() {
            match event {
                ClientEvent::Completed { call: c, result } if c == call => return Ok(Some(result)),
                ClientEvent::SnapshotProgress {
                    call: c,
                    progress: p,
                } if c == call => progress = Some(p),
                _ => {} // SnapshotWantsData: checked above
            }
        }
        Ok(None)
    })?;
    let elapsed = started.elapsed();
    let response = result.or_else(|e| fail(STEP, e))?;
    let RaftResponse::InstallSnapshot(r) = response else {
        return fail(STEP, "not an InstallSnapshot answer");
    };
    let Some(received) = lp.server.app.snapshots.last() else {
        return fail(STEP, "the server read no snapshot");
    };
    if let Err(status) = &received.outcome {
        return fail(STEP, format!("the server's read failed: {status}"));
    }
    if !r.success || received.bytes != SNAPSHOT_SIZE || received.crc32c != crc {
        return fail(
            STEP,
            format!(
                "sent {pushed} bytes crc32c {crc:08x}; server read {} of {} crc32c {:08x}; success={}",
                received.bytes, received.declared, received.crc32c, r.success
            ),
        );
    }
    let mib = SNAPSHOT_SIZE as f64 / f64::from(1 << 20);
    let reported = progress.map_or(0, |p| p.bytes);
    let detail = format!(
        "{mib:.0} MiB at {:.0} MiB/s (progress reported {reported} bytes); server read \
         {} bytes, crc32c {:08x} = sent; success",
        mib / elapsed.as_secs_f64(),
        received.bytes,
        received.crc32c,
    );
    report(STEP, started, detail);
    let after = lp.server.counts;
    let flow = format!(
        "server: {} ReleaseCapacity ({} MiB), {} PINGs, {} SetWindows (stream window {} MiB)",
        after.releases - before.releases,
        (after.released - before.released) >> 20,
        after.pings - before.pings,
        after.set_windows - before.set_windows,
        after.stream_window >> 20,
    );
    println!("  {:<24} {:>12}   {flow}", "  flow control", "");
    Ok(())
}

fn close(lp: &mut EventLoop, peer: &str) -> Result<(), Failure> {
    const STEP: &str = "close";
    let started = Instant::now();
    let (client_conns, server_conns) = (lp.client.connections(), lp.server.connections());
    lp.server.stop_listening();
    // GOAWAY on every server connection; every client connection closed.
    lp.server.endpoint.close(started);
    lp.client.endpoint.close(started);
    lp.drain(started);
    lp.run_until(STEP, |lp, _| {
        let closed = lp.client.connections() == 0 && lp.server.connections() == 0;
        Ok(closed.then_some(()))
    })?;
    // A closed endpoint fails new calls at once.
    let now = Instant::now();
    let rpc = OutgoingRpc::TimeoutNow(TimeoutNowRequest { header: header() });
    let call = lp.client.endpoint.start_rpc(peer, rpc, now);
    lp.drain(now);
    match lp.client.take_completed(call) {
        Some(Err(TransportError::Shutdown)) => {}
        other => return fail(STEP, format!("a call after close() gave {other:?}")),
    }
    let answered: Vec<String> = lp
        .server
        .app
        .answered
        .iter()
        .map(|(method, n)| format!("{method} {n}"))
        .collect();
    let detail = format!(
        "both endpoints closed; client dropped {client_conns} connections, server saw \
         {server_conns} go; a new call fails with Shutdown (server answered: {})",
        answered.join(", ")
    );
    report(STEP, started, detail);
    Ok(())
}
