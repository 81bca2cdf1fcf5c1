//! `rust-tokio`: our transport on tokio, `raft_grpc_transport_tokio::
//! GrpcTransport` (the driver on a [`TokioRuntime`]), with its default
//! configuration (pipeline window set to [`WINDOW`]), on a multi-thread
//! tokio runtime with 2 workers in each process.
//!
//! Server: the consumer loop is a task on the runtime, beside the
//! transport's own tasks; it answers one RPC at a time with
//! `raft_grpc_transport_api::reference::answer` (success; snapshot data
//! read chunk by chunk to its end, counted). Heartbeats are answered by the
//! heartbeat handler. The main thread only waits for stdin to close.
//!
//! Client: a transport that listens on nothing; the measurement loop is a
//! task on the runtime too, as are the heartbeats of the open-loop
//! schedule (one task each); the main thread only waits for it.
//!
//! [`TokioRuntime`]: raft_grpc_transport_tokio::TokioRuntime

use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use raft_grpc_transport::message::AppendEntriesRequest;
use raft_grpc_transport_tokio::{Config, GrpcTransport, TokioRuntime};
use tokio::sync::mpsc;

use super::{
    Ticks, WINDOW, append_request, heartbeat_request, latency_report, server_header, snapshot_meta,
};
use crate::protocol::{ClientArgs, ClientReport, Scenario};

fn config() -> Config {
    Config::default().with_pipeline_window(WINDOW as usize)
}

/// The runtime of each process: multi-thread, 2 workers, I/O and timers.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("rust-tokio: runtime: {e}"))
}

/// Serves until stdin closes.
pub fn serve(listen: &str) -> Result<(), String> {
    let runtime = runtime()?;
    let tokio = TokioRuntime::new(runtime.handle().clone());
    let transport = runtime
        .block_on(GrpcTransport::bind_on(tokio, listen, config()))
        .map_err(|e| format!("rust-tokio: bind {listen}: {e}"))?;
    let header = server_header(transport.local_addr());
    transport.set_heartbeat_handler(Some(raft_grpc_transport_api::reference::heartbeat_handler(
        header.clone(),
    )));
    let consumer = transport.consumer();
    runtime.spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    });
    super::announce(transport.local_addr());
    // The runtime's workers go on serving while the main thread waits.
    super::wait_for_stdin_eof();
    Ok(())
}

/// Runs one measurement.
pub fn client(args: &ClientArgs) -> Result<ClientReport, String> {
    let args = args.clone();
    let runtime = runtime()?;
    runtime.block_on(async {
        tokio::spawn(run(args))
            .await
            .map_err(|e| format!("rust-tokio: the measurement task failed: {e}"))?
    })
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("rust-tokio: {what} failed: {e}")
}

async fn append(
    transport: &GrpcTransport,
    target: &str,
    request: &AppendEntriesRequest,
) -> Result<(), String> {
    match transport.append_entries(target, request.clone()).await {
        Ok(response) if response.success => Ok(()),
        Ok(response) => Err(failed("AppendEntries", format!("{response:?}"))),
        Err(e) => Err(failed("AppendEntries", e)),
    }
}

async fn run(args: ClientArgs) -> Result<ClientReport, String> {
    // Inside the runtime: the builder takes the current one.
    let transport = GrpcTransport::builder("127.0.0.1:1", config()).build();
    let target = args.target.as_str();
    let report = match args.scenario {
        Scenario::Unary => {
            let request = append_request(args.payload);
            for _ in 0..args.warmup {
                append(&transport, target, &request).await?;
            }
            let mut latencies = Vec::with_capacity(args.ops as usize);
            args.measuring_starts();
            let start = Instant::now();
            for _ in 0..args.ops {
                let at = Instant::now();
                append(&transport, target, &request).await?;
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
                .await
                .map_err(|e| failed("opening the pipeline", e))?;
            let pipelined = |n: u64| {
                let pipeline = &pipeline;
                let request = &request;
                async move {
                    let send = async {
                        for i in 0..n {
                            pipeline.append(request).await.map_err(|e| {
                                failed("pipeline append()", format!("append {i} of {n}: {e}"))
                            })?;
                        }
                        Ok(())
                    };
                    let receive = async {
                        for i in 0..n {
                            let problem = match pipeline.next().await {
                                Some((_, Ok(r))) if r.success => continue,
                                Some((seq, Ok(r))) => format!("seq {seq}: {r:?}"),
                                Some((seq, Err(e))) => format!("seq {seq}: {e}"),
                                None => "the pipeline closed early".to_owned(),
                            };
                            return Err(failed(
                                "pipeline next()",
                                format!("completion {i} of {n}: {problem}"),
                            ));
                        }
                        Ok(())
                    };
                    // Both sides run to their end, so that when append()
                    // fails the completions say why the pipeline failed.
                    match futures_lite::future::zip(send, receive).await {
                        (Ok(()), Ok(())) => Ok(()),
                        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                        (Err(sent), Err(received)) => Err(format!("{sent}; {received}")),
                    }
                }
            };
            pipelined(args.warmup).await?;
            args.measuring_starts();
            let start = Instant::now();
            pipelined(args.ops).await?;
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
            let elapsed = snapshot(&transport, target, args.snapshot_bytes).await?;
            args.measuring_ends();
            ClientReport {
                ops: 1,
                elapsed_ns: super::nanos(elapsed),
                bytes: args.snapshot_bytes,
                ..Default::default()
            }
        }
        Scenario::HeartbeatIdle => {
            warm_heartbeats(&transport, target, args.warmup).await?;
            args.measuring_starts();
            let start = Instant::now();
            let latencies =
                heartbeats(&transport, target, args.interval_us, Some(args.ops), None).await?;
            let elapsed = start.elapsed();
            args.measuring_ends();
            latency_report(latencies, elapsed, 0)
        }
        Scenario::HeartbeatUnderSnapshot => {
            warm_heartbeats(&transport, target, args.warmup).await?;
            args.measuring_starts();
            let (done_tx, done_rx) = mpsc::channel(1);
            let sender = transport.clone();
            let owned_target = target.to_owned();
            let size = args.snapshot_bytes;
            let install = tokio::spawn(async move {
                let result = snapshot(&sender, &owned_target, size).await;
                let _ = done_tx.send(()).await;
                result
            });
            let latencies =
                heartbeats(&transport, target, args.interval_us, None, Some(done_rx)).await?;
            let elapsed = install
                .await
                .map_err(|e| format!("rust-tokio: the snapshot task failed: {e}"))??;
            args.measuring_ends();
            latency_report(latencies, elapsed, 0)
        }
    };
    transport.close().await;
    Ok(report)
}

async fn snapshot(transport: &GrpcTransport, target: &str, size: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let data = futures_lite::io::repeat(0x5a).take(size);
    match transport
        .install_snapshot(target, snapshot_meta(size), data)
        .await
    {
        Ok(response) if response.success => Ok(start.elapsed()),
        Ok(response) => Err(failed("InstallSnapshot", format!("{response:?}"))),
        Err(e) => Err(failed("InstallSnapshot", e)),
    }
}

async fn warm_heartbeats(transport: &GrpcTransport, target: &str, n: u64) -> Result<(), String> {
    let request = heartbeat_request();
    for _ in 0..n {
        append(transport, target, &request).await?;
    }
    Ok(())
}

/// Sends a heartbeat every `interval_us` (each in its own task, so that a
/// slow one does not delay the next send), `count` of them or until `stop`
/// yields; returns every heartbeat's latency.
async fn heartbeats(
    transport: &GrpcTransport,
    target: &str,
    interval_us: u64,
    count: Option<u64>,
    mut stop: Option<mpsc::Receiver<()>>,
) -> Result<Vec<u64>, String> {
    let mut ticks = Ticks::new(interval_us);
    let mut pending = Vec::new();
    loop {
        if count.is_some_and(|n| pending.len() as u64 >= n) {
            break;
        }
        let at = tokio::time::Instant::from_std(ticks.next_deadline());
        let stopped = match stop.as_mut() {
            Some(stop) => {
                futures_lite::future::or(
                    async {
                        tokio::time::sleep_until(at).await;
                        false
                    },
                    async {
                        let _ = stop.recv().await;
                        true
                    },
                )
                .await
            }
            None => {
                tokio::time::sleep_until(at).await;
                false
            }
        };
        if stopped {
            break;
        }
        let transport = transport.clone();
        let target = target.to_owned();
        pending.push(tokio::spawn(async move {
            let request = heartbeat_request();
            let sent = Instant::now();
            append(&transport, &target, &request).await?;
            Ok::<u64, String>(super::nanos(sent.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(pending.len());
    for task in pending {
        latencies.push(
            task.await
                .map_err(|e| format!("rust-tokio: a heartbeat task failed: {e}"))??,
        );
    }
    Ok(latencies)
}
