//! `rust-smol`: our async adapter, `raft_grpc_transport_smol::GrpcTransport`,
//! with its default configuration (pipeline window set to [`WINDOW`]).
//! `rust-smol-tls` is the same over TLS (the adapter's `tls` feature; the
//! certificates of [`super::tls`]).
//!
//! Server: the consumer loop is a task on smol's global executor, beside
//! the transport's own tasks (as the README's quick start does); it answers
//! one RPC at a time with `raft_grpc_transport_api::reference::answer` (success;
//! snapshot data read chunk by chunk to its end, counted). Heartbeats are
//! answered by the heartbeat handler.
//!
//! Client: a transport that listens on nothing; the measurement loop is a
//! task on smol's global executor too, so it shares the executor thread with
//! the connection tasks (the main thread only waits for it).

use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::AsyncReadExt;
use raft_grpc_transport::message::AppendEntriesRequest;
use raft_grpc_transport_smol::tls::{TlsClient, TlsServer};
use raft_grpc_transport_smol::{Config, GrpcTransport};

use super::{
    Ticks, WINDOW, append_request, heartbeat_request, latency_report, server_header, snapshot_meta,
};
use crate::protocol::{ClientArgs, ClientReport, Scenario};

fn config() -> Config {
    Config::default().with_pipeline_window(WINDOW as usize)
}

/// Serves until stdin closes (over TLS with `tls`).
pub fn serve(listen: &str, tls: bool) -> Result<(), String> {
    let mut builder = GrpcTransport::builder(listen, config());
    if tls {
        let server = TlsServer::from_pem(
            super::tls::SERVER_CERT.as_bytes(),
            super::tls::SERVER_KEY.as_bytes(),
        )
        .map_err(|e| format!("rust-smol-tls: {e}"))?;
        builder = builder.tls_server(server);
    }
    let transport =
        ::smol::block_on(builder.bind()).map_err(|e| format!("rust-smol: bind {listen}: {e}"))?;
    let header = server_header(transport.local_addr());
    transport.set_heartbeat_handler(Some(raft_grpc_transport_api::reference::heartbeat_handler(
        header.clone(),
    )));
    let consumer = transport.consumer();
    ::smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    })
    .detach();
    super::announce(transport.local_addr());
    super::wait_for_stdin_eof();
    Ok(())
}

/// Runs one measurement (over TLS with `tls`).
pub fn client(args: &ClientArgs, tls: bool) -> Result<ClientReport, String> {
    let args = args.clone();
    ::smol::block_on(::smol::spawn(run(args, tls)))
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("rust-smol: {what} failed: {e}")
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

async fn run(args: ClientArgs, tls: bool) -> Result<ClientReport, String> {
    let mut builder = GrpcTransport::builder("127.0.0.1:1", config());
    if tls {
        let client = TlsClient::from_pem_roots(super::tls::CA.as_bytes())
            .map_err(|e| format!("rust-smol-tls: {e}"))?;
        builder = builder.tls_client(client);
    }
    let transport = builder.build();
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
            let (done_tx, done_rx) = ::smol::channel::bounded(1);
            let sender = transport.clone();
            let owned_target = target.to_owned();
            let size = args.snapshot_bytes;
            let install = ::smol::spawn(async move {
                let result = snapshot(&sender, &owned_target, size).await;
                let _ = done_tx.send(()).await;
                result
            });
            let latencies =
                heartbeats(&transport, target, args.interval_us, None, Some(done_rx)).await?;
            let elapsed = install.await?;
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
    stop: Option<::smol::channel::Receiver<()>>,
) -> Result<Vec<u64>, String> {
    let mut ticks = Ticks::new(interval_us);
    let mut pending = Vec::new();
    loop {
        if count.is_some_and(|n| pending.len() as u64 >= n) {
            break;
        }
        let at = ticks.next_deadline();
        let stopped = match &stop {
            Some(stop) => {
                futures_lite::future::or(
                    async {
                        Timer::at(at).await;
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
                Timer::at(at).await;
                false
            }
        };
        if stopped {
            break;
        }
        let transport = transport.clone();
        let target = target.to_owned();
        pending.push(::smol::spawn(async move {
            let request = heartbeat_request();
            let sent = Instant::now();
            append(&transport, &target, &request).await?;
            Ok::<u64, String>(super::nanos(sent.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(pending.len());
    for task in pending {
        latencies.push(task.await?);
    }
    Ok(latencies)
}
