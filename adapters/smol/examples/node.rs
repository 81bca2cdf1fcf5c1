//! `node`: a diagnostic Raft node and client for the gRPC transport, in the
//! spirit of grpcurl.
//!
//! It serves the Raft service with a reference responder, or calls a Raft
//! node (this one, another build of this transport, or a Go node running
//! hashicorp/raft with `raft-grpc-transport`) and prints what comes back.
//!
//! ```text
//! cargo run -p raft-grpc-transport-smol --example node -- serve --listen 127.0.0.1:7000 --id n1
//! cargo run -p raft-grpc-transport-smol --example node -- call --target 127.0.0.1:7000 --rpc append-entries --entries 3
//! ```
//!
//! # `node serve --listen ADDR [--id ID] [--wire-profile P] [--metrics-listen ADDR] [TLS options]`
//!
//! Binds `ADDR` (port 0 picks a free port), prints `listening on ADDR` with
//! the bound address on stdout once connections are accepted, then serves
//! until killed. Every response's header carries protocol version 3, the
//! node's ID (`--id`, default `node`) and its bound address. It answers:
//!
//! * AppendEntries (unary, pipelined, and heartbeats): success, the
//!   request's term, `last_log` = index of the last entry sent, or
//!   `prev_log_entry` when there is none;
//! * RequestVote and RequestPreVote: granted, the request's term;
//! * InstallSnapshot: reads all the data; success when exactly the declared
//!   size arrived intact, with the request's term;
//! * TimeoutNow: an empty response.
//!
//! RPCs are answered concurrently (a snapshot being received does not hold
//! up heartbeats or votes).
//!
//! `--wire-profile v0.1` reads requests in the field numbering of the Go
//! library's v0.1.0 (default `v0.2`: v0.2.0 and later); the same option of
//! `call` sends them so. Under v0.1 a `request-pre-vote` call fails at once
//! with `UNIMPLEMENTED` (v0.1.0 has no such method).
//!
//! With `--metrics-listen ADDR` (an `IP:PORT`) it also serves the
//! transport's metrics in the Prometheus text format at
//! `http://ADDR/metrics` (every name is listed in the driver's `metrics`
//! module), and prints `metrics on http://ADDR/metrics` after the
//! `listening on` line. Histograms (`*_seconds`) are exported with buckets
//! from 100 µs to 10 s.
//!
//! With `--tls-cert PEM --tls-key PEM` it serves TLS (ALPN `h2`) with that
//! certificate chain and key; `--tls-client-ca PEM` also requires every
//! client to present a certificate that chains to those roots (mutual TLS).
//!
//! # `node call --target ADDR --rpc RPC [options]`
//!
//! Makes the call(s) from a client transport that listens on nothing, and
//! prints one JSON object per response on its own line, with the protobuf
//! field names in the protobuf's field order:
//!
//! ```text
//! {"header":{"protocol_version":3,"id":"n1","addr":"127.0.0.1:7000"},"term":1,"last_log":3,"success":true,"no_retry_backoff":false}
//! ```
//!
//! or, for a call that failed, its gRPC status code's canonical name and
//! message:
//!
//! ```text
//! {"error":{"code":"UNAVAILABLE","message":"..."}}
//! ```
//!
//! Bytes fields (the header's `id` and `addr`, RequestVoteResponse's
//! `peers`) are printed as JSON strings of the bytes decoded as UTF-8, with
//! invalid sequences replaced by U+FFFD. The exit code is 0 when every call
//! succeeded, 1 when any failed, and 2 for a usage error.
//!
//! `RPC` is one of:
//!
//! * `append-entries`: one AppendEntries carrying `--entries N` (default 1)
//!   entries numbered 1..=N of `--entry-size BYTES` (default 16) each, after
//!   `prev_log_entry` 0. With 0 entries it is a heartbeat.
//! * `request-vote`, `request-pre-vote`, `timeout-now`: one call.
//! * `install-snapshot`: streams `--snapshot-size BYTES` (default 1 MiB) of
//!   generated data, never holding more than a chunk of it in memory. When
//!   stderr is a terminal a progress line there shows the bytes sent, the
//!   rate and the time left; otherwise nothing is added.
//! * `pipeline`: opens an AppendEntries pipeline and sends `--count M`
//!   (default 10) appends, append k carrying one entry of index k (of
//!   `--entry-size` bytes) after `prev_log_entry` k-1; prints the M
//!   responses in order as they complete.
//!
//! `--count M` (default 1, except for `pipeline`) repeats a unary call M
//! times, one line each. `--stats` (no value) prints, after the calls, one
//! line per peer with the client's view of it:
//!
//! ```text
//! {"stats":{"peer":"127.0.0.1:7000","slots":["ready, 0 streams open","idle","idle"],"draining":0,"connect_failures":0,"calls_in_flight":0,"pipelines":0,"appends_in_flight":0,"bytes_sent":27,"bytes_received":36}}
//! ```
//!
//! (`last_error` is there too while connects to it fail). `--term T` (default 1) is the term of every
//! request. Options that an RPC does not use are accepted and ignored.
//!
//! With `--tls-ca PEM` the calls go over TLS, trusting server certificates
//! that chain to those roots and verifying the target's host (or
//! `--tls-server-name NAME`) in them; `--tls-cert PEM --tls-key PEM`
//! presents a client certificate (mutual TLS). A TLS failure is a failed
//! call: `UNAVAILABLE`, with the TLS error in the message.
//!
//! Everything runs under `futures_lite::future::block_on`; the transport's
//! own tasks run on smol's global executor.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bytes::Bytes;
use futures_lite::future::{self, block_on};
use futures_lite::{AsyncReadExt, io};
use raft_grpc_transport::WireProfile;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, Log,
    RequestPreVoteRequest, RequestVoteRequest, RpcHeader, TimeoutNowRequest,
};
use raft_grpc_transport_api::TransportError;
// The TLS types are the driver's `tls` module (`raft_grpc_transport_smol::tls`
// with the smol crate's `tls` feature); this package's examples have it
// through their dev-dependency on the driver.
use raft_grpc_transport_driver::tls::{TlsClient, TlsServer};
use raft_grpc_transport_smol::{Config, GrpcTransport, Pipeline};

const USAGE: &str = "\
usage:
  node serve --listen ADDR [--id ID] [--wire-profile v0.1|v0.2]
             [--metrics-listen IP:PORT]
             [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
  node call --target ADDR --rpc RPC [--entries N] [--entry-size BYTES]
            [--count M] [--snapshot-size BYTES] [--term T] [--wire-profile v0.1|v0.2]
            [--stats] [--tls-ca PEM [--tls-cert PEM --tls-key PEM] [--tls-server-name NAME]]

RPC: append-entries | request-vote | request-pre-vote | timeout-now
     | install-snapshot | pipeline

serve prints `listening on ADDR` and serves a reference responder until
killed. call prints one JSON object per response (or
{\"error\":{\"code\":...,\"message\":...}}) per line; exit code 1 if any call
failed, 2 on a usage error.";

/// The Raft protocol version every header carries.
const PROTOCOL_VERSION: i64 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Serve {
            listen,
            id,
            tls,
            profile,
            metrics,
        }) => block_on(serve(&listen, &id, &tls, profile, metrics)),
        Ok(Command::Call(call)) => block_on(run_call(&call)),
        Err(message) => {
            eprintln!("node: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------- arguments

enum Command {
    Help,
    Serve {
        listen: String,
        id: String,
        tls: TlsFiles,
        profile: WireProfile,
        /// `--metrics-listen`: where to serve the Prometheus metrics.
        metrics: Option<std::net::SocketAddr>,
    },
    Call(Call),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RpcKind {
    AppendEntries,
    RequestVote,
    RequestPreVote,
    TimeoutNow,
    InstallSnapshot,
    Pipeline,
}

impl RpcKind {
    fn from_name(name: &str) -> Option<RpcKind> {
        Some(match name {
            "append-entries" => RpcKind::AppendEntries,
            "request-vote" => RpcKind::RequestVote,
            "request-pre-vote" => RpcKind::RequestPreVote,
            "timeout-now" => RpcKind::TimeoutNow,
            "install-snapshot" => RpcKind::InstallSnapshot,
            "pipeline" => RpcKind::Pipeline,
            _ => return None,
        })
    }
}

/// The PEM files of the TLS options.
#[derive(Default)]
struct TlsFiles {
    /// `--tls-cert`: our certificate chain.
    cert: Option<String>,
    /// `--tls-key`: its private key.
    key: Option<String>,
    /// `--tls-client-ca` (serve) or `--tls-ca` (call): the roots the peer's
    /// certificate must chain to.
    roots: Option<String>,
    /// `--tls-server-name` (call).
    server_name: Option<String>,
}

impl TlsFiles {
    /// Takes a TLS option; false if `name` is not one.
    fn take(&mut self, name: &str, value: &str) -> bool {
        let slot = match name {
            "--tls-cert" => &mut self.cert,
            "--tls-key" => &mut self.key,
            "--tls-client-ca" | "--tls-ca" => &mut self.roots,
            "--tls-server-name" => &mut self.server_name,
            _ => return false,
        };
        *slot = Some(value.to_owned());
        true
    }

    /// `--tls-cert` and `--tls-key` go together.
    fn identity(&self) -> Result<Option<(&str, &str)>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err("`--tls-cert` and `--tls-key` go together".into()),
        }
    }

    fn read(path: &str, option: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("cannot read {option} {path}: {e}"))
    }

    /// The server side, if any TLS option was given.
    fn server(&self) -> Result<Option<TlsServer>, String> {
        let Some((cert, key)) = self.identity()? else {
            return match self.roots {
                Some(_) => Err("`--tls-client-ca` needs `--tls-cert` and `--tls-key`".into()),
                None => Ok(None),
            };
        };
        let (cert, key) = (
            Self::read(cert, "--tls-cert")?,
            Self::read(key, "--tls-key")?,
        );
        let tls = match &self.roots {
            Some(roots) => {
                TlsServer::mutual_from_pem(&cert, &key, &Self::read(roots, "--tls-client-ca")?)
            }
            None => TlsServer::from_pem(&cert, &key),
        };
        tls.map(Some).map_err(|e| e.to_string())
    }

    /// The client side, if `--tls-ca` was given.
    fn client(&self) -> Result<Option<TlsClient>, String> {
        let identity = self.identity()?;
        let Some(roots) = &self.roots else {
            return match (identity, &self.server_name) {
                (None, None) => Ok(None),
                _ => Err("the TLS options of `call` need `--tls-ca PEM`".into()),
            };
        };
        let mut tls = TlsClient::from_pem_roots(&Self::read(roots, "--tls-ca")?)
            .map_err(|e| e.to_string())?;
        if let Some((cert, key)) = identity {
            let (cert, key) = (
                Self::read(cert, "--tls-cert")?,
                Self::read(key, "--tls-key")?,
            );
            tls = tls
                .with_client_cert_pem(&cert, &key)
                .map_err(|e| e.to_string())?;
        }
        if let Some(name) = &self.server_name {
            tls = tls.with_server_name(name).map_err(|e| e.to_string())?;
        }
        Ok(Some(tls))
    }
}

struct Call {
    target: String,
    rpc: RpcKind,
    entries: u64,
    entry_size: usize,
    count: u64,
    snapshot_size: u64,
    term: u64,
    tls: TlsFiles,
    profile: WireProfile,
    /// `--stats`: print the client's per-peer state after the calls.
    stats: bool,
}

/// Options that take no value.
const FLAGS: [&str; 1] = ["--stats"];

/// `--name value` and `--name=value` pairs, in order (`FLAGS` take no
/// value: theirs is empty).
fn options<'a>(args: &'a [String], allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        if !allowed.contains(&name) {
            return Err(format!("unexpected argument `{arg}`"));
        }
        if FLAGS.contains(&name) {
            if inline.is_some() {
                return Err(format!("`{name}` takes no value"));
            }
            out.push((name, ""));
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .map(String::as_str)
                .ok_or_else(|| format!("`{name}` needs a value"))?,
        };
        out.push((name, value));
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{name}` wants a non-negative integer, not `{value}`"))
}

fn wire_profile(value: &str) -> Result<WireProfile, String> {
    value.parse().map_err(|e| format!("`--wire-profile`: {e}"))
}

fn parse(args: &[String]) -> Result<Command, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command".into());
    };
    match command.as_str() {
        "serve" => {
            let mut listen = None;
            let mut id = "node".to_owned();
            let mut tls = TlsFiles::default();
            let mut profile = WireProfile::default();
            let mut metrics = None;
            let allowed = [
                "--listen",
                "--id",
                "--wire-profile",
                "--metrics-listen",
                "--tls-cert",
                "--tls-key",
                "--tls-client-ca",
            ];
            for (name, value) in options(rest, &allowed)? {
                match name {
                    "--listen" => listen = Some(value.to_owned()),
                    "--id" => id = value.to_owned(),
                    "--wire-profile" => profile = wire_profile(value)?,
                    "--metrics-listen" => {
                        metrics = Some(value.parse().map_err(|e| {
                            format!("`--metrics-listen` takes an IP:PORT, not {value:?}: {e}")
                        })?)
                    }
                    _ => {
                        tls.take(name, value);
                    }
                }
            }
            let listen = listen.ok_or("serve needs `--listen ADDR`")?;
            tls.identity()?;
            if tls.roots.is_some() && tls.cert.is_none() {
                return Err("`--tls-client-ca` needs `--tls-cert` and `--tls-key`".into());
            }
            Ok(Command::Serve {
                listen,
                id,
                tls,
                profile,
                metrics,
            })
        }
        "call" => {
            let allowed = [
                "--target",
                "--rpc",
                "--entries",
                "--entry-size",
                "--count",
                "--snapshot-size",
                "--term",
                "--wire-profile",
                "--tls-ca",
                "--tls-cert",
                "--tls-key",
                "--tls-server-name",
                "--stats",
            ];
            let (mut target, mut rpc, mut count) = (None, None, None);
            let mut call = Call {
                target: String::new(),
                rpc: RpcKind::AppendEntries,
                entries: 1,
                entry_size: 16,
                count: 1,
                snapshot_size: 1 << 20,
                term: 1,
                tls: TlsFiles::default(),
                profile: WireProfile::default(),
                stats: false,
            };
            for (name, value) in options(rest, &allowed)? {
                match name {
                    "--target" => target = Some(value.to_owned()),
                    "--rpc" => {
                        rpc = Some(
                            RpcKind::from_name(value)
                                .ok_or_else(|| format!("unknown RPC `{value}`"))?,
                        )
                    }
                    "--entries" => call.entries = number(name, value)?,
                    "--entry-size" => call.entry_size = number(name, value)?,
                    "--count" => count = Some(number(name, value)?),
                    "--snapshot-size" => call.snapshot_size = number(name, value)?,
                    "--term" => call.term = number(name, value)?,
                    "--wire-profile" => call.profile = wire_profile(value)?,
                    "--stats" => call.stats = true,
                    _ => {
                        call.tls.take(name, value);
                    }
                }
            }
            call.target = target.ok_or("call needs `--target ADDR`")?;
            call.rpc = rpc.ok_or("call needs `--rpc RPC`")?;
            call.count = count.unwrap_or(if call.rpc == RpcKind::Pipeline { 10 } else { 1 });
            call.tls.identity()?;
            if call.tls.roots.is_none()
                && (call.tls.cert.is_some() || call.tls.server_name.is_some())
            {
                return Err("the TLS options of `call` need `--tls-ca PEM`".into());
            }
            Ok(Command::Call(call))
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

// -------------------------------------------------------------------- serve

/// Serves the metrics at `http://ADDR/metrics` with the Prometheus
/// exporter (on a thread and a tokio runtime of its own). It must be
/// installed before the transport is built: the transport registers its
/// metrics then.
fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: [f64; 16] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .and_then(|builder| builder.install())
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

async fn serve(
    listen: &str,
    id: &str,
    tls: &TlsFiles,
    profile: WireProfile,
    metrics: Option<std::net::SocketAddr>,
) -> ExitCode {
    if let Some(addr) = metrics {
        if let Err(e) = serve_metrics(addr) {
            eprintln!("node: {e}");
            return ExitCode::FAILURE;
        }
    }
    let config = Config::default().with_wire_profile(profile);
    let mut builder = GrpcTransport::builder(listen, config);
    match tls.server() {
        Ok(Some(tls)) => builder = builder.tls_server(tls),
        Ok(None) => {}
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::FAILURE;
        }
    }
    let transport = match builder.bind().await {
        Ok(transport) => transport,
        Err(e) => {
            eprintln!("node: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = transport.local_addr().to_owned();
    // The listener is bound (connections queue in its backlog) and its
    // accept loop is spawned: peers can connect from now on.
    // (Should nobody read our stdout, keep serving anyway.)
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
    if let Some(metrics) = metrics {
        let _ =
            writeln!(stdout, "metrics on http://{metrics}/metrics").and_then(|()| stdout.flush());
    }
    drop(stdout);
    let header = RpcHeader::new(PROTOCOL_VERSION, id.to_owned(), addr);
    let consumer = transport.consumer();
    while let Some(rpc) = consumer.recv().await {
        smol::spawn(raft_grpc_transport_api::reference::answer(
            rpc,
            header.clone(),
        ))
        .detach();
    }
    ExitCode::SUCCESS
}

/// Runs `install` and, when stderr is a terminal, redraws a progress line
/// there (bytes sent, rate, time left) every 200 ms from the transport's
/// snapshot progress, erased at the end. Off a terminal it adds nothing.
/// The line is drawn from a thread of its own: the snapshot's sending loop
/// does not yield while the connection takes its data as fast as it comes.
async fn with_progress_bar<T>(client: &GrpcTransport, install: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return install.await;
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drawer = {
        let (client, done) = (client.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if let Some(progress) = client.snapshot_progress().first() {
                    let _ = write!(std::io::stderr(), "\r{}", progress_line(progress));
                }
            }
        })
    };
    let result = install.await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = drawer.join();
    let _ = write!(std::io::stderr(), "\r\x1b[2K");
    result
}

/// `[#########           ] 45.0 MiB / 100.0 MiB  512.3 MiB/s  0:00 left`.
fn progress_line(progress: &raft_grpc_transport::snapshot::SnapshotProgress) -> String {
    const WIDTH: u64 = 30;
    const MIB: f64 = (1u64 << 20) as f64;
    let filled = (progress.bytes * WIDTH)
        .checked_div(progress.total)
        .unwrap_or(WIDTH);
    let rate = progress.bytes_per_second();
    let left = if rate > 0.0 {
        (progress.total.saturating_sub(progress.bytes) as f64 / rate) as u64
    } else {
        0
    };
    format!(
        "[{}{}] {:.1} MiB / {:.1} MiB  {:.1} MiB/s  {}:{:02} left",
        "#".repeat(filled as usize),
        " ".repeat(WIDTH.saturating_sub(filled) as usize),
        progress.bytes as f64 / MIB,
        progress.total as f64 / MIB,
        rate / MIB,
        left / 60,
        left % 60,
    )
}

async fn run_call(call: &Call) -> ExitCode {
    let config = Config::default().with_wire_profile(call.profile);
    let mut builder = GrpcTransport::builder("client", config);
    match call.tls.client() {
        Ok(Some(tls)) => builder = builder.tls_client(tls),
        Ok(None) => {}
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::FAILURE;
        }
    }
    let client = builder.build();
    let header = RpcHeader::new(PROTOCOL_VERSION, "client", client.local_addr().to_owned());
    let mut failed = false;
    let mut report = |line: Result<String, TransportError>| {
        let line = line.unwrap_or_else(|e| {
            failed = true;
            error_json(&e)
        });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    };
    let target = call.target.as_str();
    let data = Bytes::from(vec![b'x'; call.entry_size]);
    match call.rpc {
        RpcKind::Pipeline => pipeline(&client, call, &header, &data, &mut report).await,
        rpc => {
            for _ in 0..call.count {
                let line = match rpc {
                    RpcKind::AppendEntries => client
                        .append_entries(
                            target,
                            AppendEntriesRequest {
                                header: header.clone(),
                                term: call.term,
                                prev_log_entry: 0,
                                entries: (1..=call.entries)
                                    .map(|i| Log::command(i, call.term, data.clone()))
                                    .collect(),
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|r| append_entries_json(&r)),
                    RpcKind::RequestVote => client
                        .request_vote(
                            target,
                            RequestVoteRequest {
                                header: header.clone(),
                                term: call.term,
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|r| {
                            Json::new()
                                .header(&r.header)
                                .u64("term", r.term)
                                .bytes("peers", &r.peers)
                                .bool("granted", r.granted)
                                .end()
                        }),
                    RpcKind::RequestPreVote => client
                        .request_pre_vote(
                            target,
                            RequestPreVoteRequest {
                                header: header.clone(),
                                term: call.term,
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|r| {
                            Json::new()
                                .header(&r.header)
                                .u64("term", r.term)
                                .bool("granted", r.granted)
                                .end()
                        }),
                    RpcKind::TimeoutNow => client
                        .timeout_now(
                            target,
                            TimeoutNowRequest {
                                header: header.clone(),
                            },
                        )
                        .await
                        .map(|r| Json::new().header(&r.header).end()),
                    RpcKind::InstallSnapshot => with_progress_bar(
                        &client,
                        client.install_snapshot(
                            target,
                            InstallSnapshotRequest {
                                header: header.clone(),
                                snapshot_version: 1,
                                term: call.term,
                                size: call.snapshot_size,
                                ..Default::default()
                            },
                            // Generated on the fly: nothing is held in memory.
                            io::repeat(0x5a).take(call.snapshot_size),
                        ),
                    )
                    .await
                    .map(|r| {
                        Json::new()
                            .header(&r.header)
                            .u64("term", r.term)
                            .bool("success", r.success)
                            .end()
                    }),
                    RpcKind::Pipeline => unreachable!("handled above"),
                };
                report(line);
            }
        }
    }
    if call.stats {
        let mut stdout = std::io::stdout().lock();
        for peer in client.stats() {
            let _ = writeln!(stdout, "{}", stats_json(&peer)).and_then(|()| stdout.flush());
        }
    }
    client.close().await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Sends `call.count` appends down one pipeline while printing completions
/// as they arrive, in order. An append that cannot be sent is reported and
/// ends the sending; the appends already sent are still awaited.
async fn pipeline(
    client: &GrpcTransport,
    call: &Call,
    header: &RpcHeader,
    data: &Bytes,
    report: &mut impl FnMut(Result<String, TransportError>),
) {
    let pipeline: Pipeline = match client.append_entries_pipeline(&call.target).await {
        Ok(pipeline) => pipeline,
        Err(e) => return report(Err(e)),
    };
    enum Step {
        Sent(Result<u64, TransportError>),
        Done(Option<(u64, Result<AppendEntriesResponse, TransportError>)>),
    }
    let (mut sent, mut done) = (0u64, 0u64);
    let mut sending = call.count > 0;
    while sending || done < sent {
        let k = sent + 1;
        let request = AppendEntriesRequest {
            header: header.clone(),
            term: call.term,
            prev_log_entry: k - 1,
            entries: vec![Log::command(k, call.term, data.clone())],
            ..Default::default()
        };
        // `append` waits while the window is full, so completions are taken
        // meanwhile. Both futures are cancel-safe: a lost race sends or
        // takes nothing.
        let append = async { Step::Sent(pipeline.append(&request).await) };
        let next = async { Step::Done(pipeline.next().await) };
        let step = match (sending, done < sent) {
            (true, true) => future::or(next, append).await,
            (true, false) => append.await,
            _ => next.await,
        };
        match step {
            Step::Sent(Ok(_)) => {
                sent += 1;
                sending = sent < call.count;
            }
            Step::Sent(Err(e)) => {
                report(Err(e));
                sending = false;
            }
            Step::Done(Some((_, result))) => {
                done += 1;
                report(result.map(|r| append_entries_json(&r)));
            }
            Step::Done(None) => {
                // Closed with appends unanswered: cannot happen while we
                // hold the pipeline, but do not wait forever if it does.
                report(Err(TransportError::PipelineShutdown));
                break;
            }
        }
    }
    pipeline.close();
}

// --------------------------------------------------------------------- JSON

fn append_entries_json(r: &AppendEntriesResponse) -> String {
    Json::new()
        .header(&r.header)
        .u64("term", r.term)
        .u64("last_log", r.last_log)
        .bool("success", r.success)
        .bool("no_retry_backoff", r.no_retry_backoff)
        .end()
}

fn error_json(e: &TransportError) -> String {
    let status = e.status();
    let error = Json::new()
        .str("code", e.code().as_str())
        .str("message", status.message())
        .end();
    Json::new().raw("error", &error).end()
}

/// A JSON object written field by field.
/// One peer's state as `{"stats":{…}}`: its connection slots (lane order:
/// control first, snapshot last), calls in flight, gRPC bytes each way.
fn stats_json(peer: &raft_grpc_transport::client::PeerStats) -> String {
    use raft_grpc_transport::pool::SlotState;
    let slots: Vec<String> = peer
        .connections
        .slots
        .iter()
        .map(|slot| {
            let state = match slot {
                SlotState::Idle => "idle".to_owned(),
                SlotState::Connecting { .. } => "connecting".to_owned(),
                SlotState::Ready { streams, .. } => format!("ready, {streams} streams open"),
                SlotState::Failed { .. } => "failed, backing off".to_owned(),
            };
            let mut quoted = String::new();
            quote(&mut quoted, &state);
            quoted
        })
        .collect();
    let mut json = Json::new()
        .str("peer", &peer.peer)
        .raw("slots", &format!("[{}]", slots.join(",")))
        .u64("draining", peer.connections.draining as u64)
        .u64("connect_failures", u64::from(peer.connections.failures));
    if let Some(error) = &peer.connections.last_error {
        json = json.str("last_error", &error.to_string());
    }
    let object = json
        .u64("calls_in_flight", peer.calls_in_flight as u64)
        .u64("pipelines", peer.pipelines as u64)
        .u64("appends_in_flight", peer.appends_in_flight as u64)
        .u64("bytes_sent", peer.bytes_sent)
        .u64("bytes_received", peer.bytes_received)
        .end();
    Json::new().raw("stats", &object).end()
}

struct Json {
    out: String,
}

impl Json {
    fn new() -> Json {
        Json {
            out: String::from("{"),
        }
    }

    fn raw(mut self, name: &str, value: &str) -> Json {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        quote(&mut self.out, name);
        self.out.push(':');
        self.out.push_str(value);
        self
    }

    fn u64(self, name: &str, value: u64) -> Json {
        self.raw(name, &value.to_string())
    }

    fn bool(self, name: &str, value: bool) -> Json {
        self.raw(name, if value { "true" } else { "false" })
    }

    fn str(self, name: &str, value: &str) -> Json {
        let mut quoted = String::with_capacity(value.len() + 2);
        quote(&mut quoted, value);
        self.raw(name, &quoted)
    }

    /// Bytes as a string: UTF-8, invalid sequences replaced by U+FFFD.
    fn bytes(self, name: &str, value: &[u8]) -> Json {
        self.str(name, &String::from_utf8_lossy(value))
    }

    fn header(self, header: &RpcHeader) -> Json {
        let object = Json::new()
            .raw("protocol_version", &header.protocol_version.to_string())
            .bytes("id", &header.id)
            .bytes("addr", &header.addr)
            .end();
        self.raw("header", &object)
    }

    fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// Appends `s` as a JSON string literal.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // The other control characters, and the two line separators
            // JavaScript does not accept raw.
            c if c < ' ' || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
