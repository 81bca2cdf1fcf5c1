//! `relay`: a Raft RPC relay built on the gRPC transport. It sits between
//! Raft nodes and forwards every RPC it receives to another node, unchanged.
//!
//! ```text
//! cargo run -p raft-grpc-transport-tower --example relay -- \
//!     --route 127.0.0.1:8001=127.0.0.1:7001 \
//!     --route 127.0.0.1:8002=127.0.0.1:7002 \
//!     --route 127.0.0.1:8003=127.0.0.1:7003
//! # relay 127.0.0.1:8001 -> 127.0.0.1:7001
//! # relay 127.0.0.1:8002 -> 127.0.0.1:7002
//! # relay 127.0.0.1:8003 -> 127.0.0.1:7003
//! ```
//!
//! To send all of a cluster's traffic through it, give node i the relay
//! address `R_i` as its advertised address (the one its peers dial, and that
//! it puts in its RPC headers) while it listens on its real address `P_i`,
//! and run the relay with one `--route R_i=P_i` per node. Any node that
//! speaks the Raft service works: this transport, or hashicorp/raft with the
//! Go `raft-grpc-transport`.
//!
//! # `relay --route LISTEN=TARGET [--route …] [options]`
//!
//! For each route it serves the Raft service on `LISTEN` (port 0 picks a
//! free port) and forwards every RPC arriving there to `TARGET`: with the
//! smol transport's own listener, or with `--mount tonic` on a tonic server
//! (the Raft service of `raft-grpc-transport-tower` mounted on it, on a
//! tokio thread of its own), the transport behind it the same. Once every
//! route listens it prints one line per route on stdout, with the bound
//! address:
//!
//! ```text
//! relay 127.0.0.1:8001 -> 127.0.0.1:7001
//! ```
//!
//! then relays until killed. A usage error exits with code 2, a `LISTEN`
//! that cannot be bound with code 1.
//!
//! What passes through, and how:
//!
//! * **Requests and responses unchanged**, every field, the RPC header
//!   (`id`, `addr`, protocol version) included: hashicorp/raft takes the
//!   leader's and candidate's address from the header, so the relay never
//!   puts its own there.
//! * **Errors unchanged**: when `TARGET` answers with an error status, the
//!   caller gets the same gRPC code and message. When the relay cannot reach
//!   `TARGET` (down, refusing, not speaking HTTP/2), the caller gets
//!   `UNAVAILABLE` at once (after at most `--connect-timeout` when it does
//!   not answer at all).
//! * **AppendEntries, RequestVote, RequestPreVote, TimeoutNow** are
//!   forwarded as unary calls, each in its own task, so that any number run
//!   at once; heartbeats and votes travel on the relay's control connection
//!   to `TARGET`, apart from replication and snapshots.
//! * **AppendEntries pipelines**: each incoming pipeline stream is forwarded
//!   through its own outgoing pipeline to `TARGET`, so that its appends
//!   reach `TARGET` in the order they were sent and their answers come back
//!   in that order. An error on either side ends both streams with that
//!   status; a caller that closes its stream closes the outgoing one once
//!   every append in it is answered.
//! * **InstallSnapshot**: the data streams through. The relay holds a few
//!   chunks at a time whatever the snapshot's size (HTTP/2 flow control
//!   holds the sender back while `TARGET` is slower), forwards the metadata
//!   unchanged (`snapshot_version`, `configuration`, `peers`, …) and checks
//!   the incoming data's size and CRC-32C as it goes; the outgoing stream
//!   carries a CRC-32C of its own.
//!
//! Heartbeats are never held up by a snapshot: the relay hands every
//! incoming RPC to its own task the moment it arrives, so nothing queues
//! behind a snapshot in transit. (The transport's heartbeat fast path, a
//! synchronous handler that must not block, is for nodes that answer
//! heartbeats themselves; a relay has to wait for `TARGET`'s answer.)
//!
//! Options (defaults are the transport's `Config`):
//!
//! * `--rpc-timeout SECS` (10): deadline of each forwarded call;
//!   InstallSnapshot scales it by size (one more timeout per 256 KiB).
//!   The relay does not see the caller's own deadline: keep this at most
//!   the callers' timeout so that the relay gives up no later than they do.
//! * `--connect-timeout SECS` (5): a connection to `TARGET` that is not up
//!   by then fails.
//! * `--backoff-max SECS` (5): longest wait before the relay tries an
//!   unreachable `TARGET` again (calls in the meantime fail at once with
//!   `UNAVAILABLE`); lower it when nodes restart often.
//! * `--pipeline-window N` (64): appends in flight on an outgoing pipeline.
//! * `--mount tonic`: serve each `LISTEN` with tonic's server instead of the
//!   transport's own listener (`--mount own`, the default).
//! * `--wire-profile v0.1|v0.2` (v0.2): the field numbering spoken on both
//!   sides; `v0.1` relays between nodes of the Go library's v0.1.0. Under
//!   it a snapshot crosses without `snapshot_version` or checksums, and a
//!   RequestPreVote (which v0.1.0 lacks) is answered `UNIMPLEMENTED` without
//!   reaching `TARGET`.
//!
//! `SECS` may have a fraction (`0.5`). Everything runs under
//! `futures_lite::future::block_on`; the transport's own tasks run on smol's
//! global executor, and with `--mount tonic` each route's tonic server runs
//! on a current-thread tokio runtime of its own.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::{self, block_on};
use raft_grpc_transport::message::{RaftRequest, RaftResponse};
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_smol::{
    Config, GrpcTransport, IncomingPipeline, Responder, Rpc, TransportError,
};

const USAGE: &str = "\
usage:
  relay --route LISTEN=TARGET [--route LISTEN=TARGET ...]
        [--rpc-timeout SECS] [--connect-timeout SECS] [--backoff-max SECS]
        [--pipeline-window N] [--mount own|tonic] [--wire-profile v0.1|v0.2]

Serves the Raft gRPC service on each LISTEN (on the transport's own
listener, or mounted on a tonic server with `--mount tonic`) and forwards
every RPC to its TARGET unchanged (headers included), returning TARGET's
answer or error.
Prints `relay LISTEN -> TARGET` per route once listening (the bound address
when LISTEN has port 0), then relays until killed. Exit code 2 on a usage
error, 1 when a LISTEN cannot be bound.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(options)) => block_on(run(options)),
        Err(message) => {
            eprintln!("relay: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Binds every route, says so, and relays until the process is killed.
async fn run(options: Options) -> ExitCode {
    let mut relays = Vec::new();
    for route in &options.routes {
        let started = Relay::start(
            &route.listen,
            &route.target,
            options.config.clone(),
            options.mount,
        );
        match started.await {
            Ok(relay) => relays.push(relay),
            Err(e) => {
                eprintln!("relay: cannot listen on {}: {e}", route.listen);
                for relay in &relays {
                    relay.close().await;
                }
                return ExitCode::from(1);
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    for relay in &relays {
        let _ = writeln!(stdout, "relay {} -> {}", relay.local_addr(), relay.target());
    }
    let _ = stdout.flush();
    drop(stdout);
    future::pending::<()>().await;
    ExitCode::SUCCESS
}

// ------------------------------------------------------------------- relay

/// One route: serves on a local address and forwards to `target`.
struct Relay {
    transport: GrpcTransport,
    target: Arc<str>,
}

impl Relay {
    /// Binds `listen` and starts forwarding what arrives there to `target`.
    async fn start(
        listen: &str,
        target: &str,
        config: Config,
        mount: Mount,
    ) -> std::io::Result<Relay> {
        let transport = match mount {
            Mount::Own => GrpcTransport::bind(listen, config).await?,
            Mount::Tonic => mount_on_tonic(listen, config)?,
        };
        let target: Arc<str> = Arc::from(target);
        // Each pipeline stream is handed over as it opens; the handler only
        // passes it on (it must not block, and must not hold the transport).
        let (pipelines_tx, pipelines) = async_channel::unbounded();
        transport.set_pipeline_handler(Some(Arc::new(move |incoming| {
            let _ = pipelines_tx.try_send(incoming);
        })));
        smol::spawn(serve(transport.clone(), target.clone(), pipelines)).detach();
        Ok(Relay { transport, target })
    }

    /// The address the relay listens on.
    fn local_addr(&self) -> &str {
        self.transport.local_addr()
    }

    /// Where it forwards to.
    fn target(&self) -> &str {
        &self.target
    }

    /// Stops the route: calls in flight fail with `UNAVAILABLE`, the
    /// listener and connections close, the forwarding tasks end.
    async fn close(&self) {
        self.transport.close().await;
    }
}

/// A transport that listens on nothing itself, its Raft service mounted on
/// a tonic server bound to `listen`, which stops when the transport closes.
fn mount_on_tonic(listen: &str, config: Config) -> std::io::Result<GrpcTransport> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.to_string();
    let transport = GrpcTransport::builder(addr.clone(), config).build();
    let raft = raft_grpc_transport_tower::RaftService::new(&transport);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    let closed = raft.closed();
                    tonic::transport::Server::builder()
                        // Receive windows that follow the link, as the
                        // transport's own listener has them.
                        .http2_adaptive_window(Some(true))
                        .add_service(raft)
                        .serve_with_incoming_shutdown(incoming, closed)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = served {
                eprintln!("relay: the tonic server on {addr} stopped: {e}");
                std::process::exit(1);
            }
        });
    });
    Ok(transport)
}

/// A route's dispatcher: every RPC and every pipeline stream gets its own
/// task at once, so none waits behind another. Ends when the transport
/// closes.
async fn serve(
    transport: GrpcTransport,
    target: Arc<str>,
    pipelines: async_channel::Receiver<IncomingPipeline>,
) {
    let consumer = transport.consumer();
    let rpcs = async {
        while let Some(rpc) = consumer.recv().await {
            let (transport, target) = (transport.clone(), target.clone());
            smol::spawn(async move { forward(&transport, &target, rpc).await }).detach();
        }
    };
    let streams = async {
        while let Ok(incoming) = pipelines.recv().await {
            let (transport, target) = (transport.clone(), target.clone());
            smol::spawn(async move { forward_pipeline(&transport, &target, incoming).await })
                .detach();
        }
    };
    // The consumer ends when the transport closes.
    future::or(rpcs, streams).await;
    // Drop the handler (and the sender it holds) with the route.
    transport.set_pipeline_handler(None);
}

/// Forwards one RPC to `target` and answers the caller with what came back.
async fn forward(transport: &GrpcTransport, target: &str, rpc: Rpc) {
    let Rpc {
        request,
        responder,
        snapshot,
        ..
    } = rpc;
    let result = match request {
        RaftRequest::AppendEntries(request) => transport
            .append_entries(target, request)
            .await
            .map(RaftResponse::AppendEntries),
        RaftRequest::RequestVote(request) => transport
            .request_vote(target, request)
            .await
            .map(RaftResponse::RequestVote),
        RaftRequest::RequestPreVote(request) => transport
            .request_pre_vote(target, request)
            .await
            .map(RaftResponse::RequestPreVote),
        RaftRequest::TimeoutNow(request) => transport
            .timeout_now(target, request)
            .await
            .map(RaftResponse::TimeoutNow),
        // The incoming data is read as the outgoing stream has room for it:
        // a failure of the incoming stream (short, corrupt, the caller gave
        // up) aborts the outgoing one, and the other way round.
        RaftRequest::InstallSnapshot(meta) => match snapshot {
            Some(data) => transport
                .install_snapshot(target, meta, data)
                .await
                .map(RaftResponse::InstallSnapshot),
            None => Err(TransportError::Status(Status::new(
                Code::Internal,
                "relay: InstallSnapshot arrived without its data",
            ))),
        },
    };
    responder.respond(result.map_err(|e| e.status()));
}

/// Forwards one incoming pipeline stream through one outgoing pipeline:
/// appends go out in the order they came in, and each answer goes back to
/// its append (the incoming stream sends answers in order).
async fn forward_pipeline(transport: &GrpcTransport, target: &str, incoming: IncomingPipeline) {
    // Open the outgoing pipeline with the first append, so that a TARGET
    // that cannot be reached fails the caller's first append.
    let Some(first) = incoming.recv().await else {
        return;
    };
    let outgoing = match transport.append_entries_pipeline(target).await {
        Ok(outgoing) => outgoing,
        Err(e) => {
            first.respond(Err(e.status()));
            return;
        }
    };
    // Responders of the appends sent, in send order: the outgoing
    // pipeline completes appends in that order, each exactly once.
    let (sent_tx, sent) = async_channel::unbounded::<Responder>();
    let send = async {
        let mut next = Some(first);
        while let Some(rpc) = next {
            let Rpc {
                request, responder, ..
            } = rpc;
            let RaftRequest::AppendEntries(append) = request else {
                responder.respond(Err(Status::new(
                    Code::Internal,
                    "relay: a pipeline carried something other than AppendEntries",
                )));
                break;
            };
            match outgoing.append(&append).await {
                Ok(_) => {
                    if sent_tx.send(responder).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // The incoming stream answers in order: this error
                    // goes out after the answers of the appends before it,
                    // and ends the stream.
                    responder.respond(Err(e.status()));
                    break;
                }
            }
            next = incoming.recv().await;
        }
        // The caller closed its stream (or it failed): the answers still
        // due are delivered below, then the outgoing pipeline closes.
        drop(sent_tx);
    };
    let receive = async {
        while let Ok(responder) = sent.recv().await {
            let result = match outgoing.next().await {
                Some((_, result)) => result.map(RaftResponse::AppendEntries),
                None => Err(TransportError::PipelineShutdown),
            };
            responder.respond(result.map_err(|e| e.status()));
        }
    };
    future::zip(send, receive).await;
    outgoing.close();
}

// --------------------------------------------------------------- arguments

struct Route {
    listen: String,
    target: String,
}

/// What serves each route's `LISTEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mount {
    /// The transport's own listener.
    Own,
    /// A tonic server with the Raft service mounted on it.
    Tonic,
}

struct Options {
    routes: Vec<Route>,
    config: Config,
    mount: Mount,
}

fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{name}` wants a positive number of seconds, not `{value}`"))
}

/// The options, or `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(None);
    }
    let mut routes = Vec::new();
    let mut config = Config::default();
    let mut mount = Mount::Own;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        // `--name value` or `--name=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        if !matches!(
            name,
            "--route"
                | "--rpc-timeout"
                | "--connect-timeout"
                | "--backoff-max"
                | "--pipeline-window"
                | "--mount"
                | "--wire-profile"
        ) {
            return Err(format!("unexpected argument `{arg}`"));
        }
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .map(String::as_str)
                .ok_or_else(|| format!("`{name}` needs a value"))?,
        };
        match name {
            "--route" => {
                let route = value
                    .split_once('=')
                    .filter(|(listen, target)| !listen.is_empty() && !target.is_empty())
                    .map(|(listen, target)| Route {
                        listen: listen.to_owned(),
                        target: target.to_owned(),
                    })
                    .ok_or_else(|| format!("`--route` wants LISTEN=TARGET, not `{value}`"))?;
                routes.push(route);
            }
            "--rpc-timeout" => config.rpc_timeout = seconds(name, value)?,
            "--connect-timeout" => config.connect_timeout = seconds(name, value)?,
            "--backoff-max" => config.backoff.max = seconds(name, value)?,
            "--wire-profile" => {
                config.wire_profile = value.parse().map_err(|e| format!("`{name}`: {e}"))?;
            }
            "--mount" => {
                mount = match value {
                    "own" => Mount::Own,
                    "tonic" => Mount::Tonic,
                    _ => return Err(format!("`--mount` wants `own` or `tonic`, not `{value}`")),
                };
            }
            _ => {
                config.pipeline_window =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("`{name}` wants a positive integer, not `{value}`")
                    })?;
            }
        }
    }
    if routes.is_empty() {
        return Err("at least one `--route LISTEN=TARGET` is needed".into());
    }
    Ok(Some(Options {
        routes,
        config,
        mount,
    }))
}
