//! `rust-blocking`: our blocking adapter, `BlockingTransport`, with its
//! default configuration (pipeline window set to [`WINDOW`]), used from
//! plain threads as its README shows.
//!
//! Server: one consumer thread answers RPCs one at a time with
//! `Rpc::answer_reference` (AppendEntries: success; InstallSnapshot: every
//! chunk read to the end, counted, success when exactly `size` bytes
//! came). Heartbeats are answered by the heartbeat handler.
//!
//! Client: calls from the main thread; a pipeline appends from one thread
//! and takes completions on another; each heartbeat of the open-loop
//! schedule is sent from a thread of its own.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use raft_grpc_transport::message::AppendEntriesRequest;
use raft_grpc_transport_blocking::{BlockingTransport, Config};

use super::{
    Ticks, WINDOW, append_request, heartbeat_request, latency_report, server_header, snapshot_meta,
};
use crate::protocol::{ClientArgs, ClientReport, Scenario};

fn config() -> Config {
    Config::default().with_pipeline_window(WINDOW as usize)
}

/// Serves until stdin closes.
pub fn serve(listen: &str) -> Result<(), String> {
    let transport = BlockingTransport::bind(listen, config())
        .map_err(|e| format!("rust-blocking: bind {listen}: {e}"))?;
    let header = server_header(transport.local_addr());
    transport.set_heartbeat_handler(Some(raft_grpc_transport_api::reference::heartbeat_handler(
        header.clone(),
    )));
    let consumer = transport.consumer();
    thread::spawn(move || {
        for rpc in consumer {
            rpc.answer_reference(header.clone());
        }
    });
    super::announce(transport.local_addr());
    super::wait_for_stdin_eof();
    Ok(())
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("rust-blocking: {what} failed: {e}")
}

fn append(
    transport: &BlockingTransport,
    target: &str,
    request: &AppendEntriesRequest,
) -> Result<(), String> {
    match transport.append_entries(target, request.clone()) {
        Ok(response) if response.success => Ok(()),
        Ok(response) => Err(failed("AppendEntries", format!("{response:?}"))),
        Err(e) => Err(failed("AppendEntries", e)),
    }
}

/// Runs one measurement.
pub fn client(args: &ClientArgs) -> Result<ClientReport, String> {
    let transport = BlockingTransport::unbound("127.0.0.1:1", config(), None);
    let target = args.target.as_str();
    let report = match args.scenario {
        Scenario::Unary => {
            let request = append_request(args.payload);
            for _ in 0..args.warmup {
                append(&transport, target, &request)?;
            }
            let mut latencies = Vec::with_capacity(args.ops as usize);
            args.measuring_starts();
            let start = Instant::now();
            for _ in 0..args.ops {
                let at = Instant::now();
                append(&transport, target, &request)?;
                latencies.push(super::nanos(at.elapsed()));
            }
            let elapsed = start.elapsed();
            args.measuring_ends();
            latency_report(latencies, elapsed, args.ops * args.payload)
        }
        Scenario::Pipeline => {
            let request = append_request(args.payload);
            let pipeline = transport
                .append_entries_pipeline(target)
                .map_err(|e| failed("opening the pipeline", e))?;
            let pipelined = |n: u64| {
                thread::scope(|scope| {
                    let sender = scope.spawn(|| {
                        for _ in 0..n {
                            pipeline
                                .append(&request)
                                .map_err(|e| failed("pipeline append()", e))?;
                        }
                        Ok::<(), String>(())
                    });
                    for _ in 0..n {
                        match pipeline.next_completion() {
                            Some((_, Ok(r))) if r.success => {}
                            Some((_, Ok(r))) => {
                                return Err(failed("pipeline completion", format!("{r:?}")));
                            }
                            Some((_, Err(e))) => return Err(failed("pipeline completion", e)),
                            None => {
                                return Err(failed("pipeline completion", "pipeline closed early"));
                            }
                        }
                    }
                    sender
                        .join()
                        .map_err(|_| "rust-blocking: sender panicked".to_owned())?
                })
            };
            pipelined(args.warmup)?;
            args.measuring_starts();
            let start = Instant::now();
            pipelined(args.ops)?;
            let elapsed = start.elapsed();
            args.measuring_ends();
            pipeline.close();
            ClientReport {
                ops: args.ops,
                elapsed_ns: super::nanos(elapsed),
                bytes: args.ops * args.payload,
                ..Default::default()
            }
        }
        Scenario::Snapshot => {
            args.measuring_starts();
            let elapsed = snapshot(&transport, target, args.snapshot_bytes)?;
            args.measuring_ends();
            ClientReport {
                ops: 1,
                elapsed_ns: super::nanos(elapsed),
                bytes: args.snapshot_bytes,
                ..Default::default()
            }
        }
        Scenario::HeartbeatIdle => {
            warm_heartbeats(&transport, target, args.warmup)?;
            args.measuring_starts();
            let start = Instant::now();
            let latencies = heartbeats(&transport, target, args.interval_us, Some(args.ops), None)?;
            let elapsed = start.elapsed();
            args.measuring_ends();
            latency_report(latencies, elapsed, 0)
        }
        Scenario::HeartbeatUnderSnapshot => {
            warm_heartbeats(&transport, target, args.warmup)?;
            args.measuring_starts();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let sender = transport.clone();
            let owned_target = target.to_owned();
            let size = args.snapshot_bytes;
            let install = thread::spawn(move || {
                let result = snapshot(&sender, &owned_target, size);
                let _ = done_tx.send(());
                result
            });
            let latencies = heartbeats(&transport, target, args.interval_us, None, Some(done_rx))?;
            let elapsed = install
                .join()
                .map_err(|_| "rust-blocking: snapshot thread panicked".to_owned())??;
            args.measuring_ends();
            latency_report(latencies, elapsed, 0)
        }
    };
    transport.close();
    Ok(report)
}

fn snapshot(transport: &BlockingTransport, target: &str, size: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let data = std::io::repeat(0x5a).take(size);
    match transport.install_snapshot(target, snapshot_meta(size), data) {
        Ok(response) if response.success => Ok(start.elapsed()),
        Ok(response) => Err(failed("InstallSnapshot", format!("{response:?}"))),
        Err(e) => Err(failed("InstallSnapshot", e)),
    }
}

fn warm_heartbeats(transport: &BlockingTransport, target: &str, n: u64) -> Result<(), String> {
    let request = heartbeat_request();
    for _ in 0..n {
        append(transport, target, &request)?;
    }
    Ok(())
}

/// Sends a heartbeat every `interval_us`, each from its own thread, `count`
/// of them or until `stop` yields; returns every heartbeat's latency.
fn heartbeats(
    transport: &BlockingTransport,
    target: &str,
    interval_us: u64,
    count: Option<u64>,
    stop: Option<std::sync::mpsc::Receiver<()>>,
) -> Result<Vec<u64>, String> {
    let mut ticks = Ticks::new(interval_us);
    let mut pending = Vec::new();
    loop {
        if count.is_some_and(|n| pending.len() as u64 >= n) {
            break;
        }
        let at = ticks.next_deadline();
        let wait = at.saturating_duration_since(Instant::now());
        match &stop {
            Some(stop) => match stop.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            },
            None => thread::sleep(wait),
        }
        let transport = transport.clone();
        let target = target.to_owned();
        pending.push(thread::spawn(move || {
            let request = heartbeat_request();
            let sent = Instant::now();
            append(&transport, &target, &request)?;
            Ok::<u64, String>(super::nanos(sent.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(pending.len());
    for thread in pending {
        latencies.push(
            thread
                .join()
                .map_err(|_| "rust-blocking: heartbeat thread panicked".to_owned())??,
        );
    }
    Ok(latencies)
}
