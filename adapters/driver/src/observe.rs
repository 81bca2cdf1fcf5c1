//! What the driver tells an operator: `tracing` spans and events, with the
//! cargo feature `tracing`, and metrics, with the cargo feature `metrics`
//! (both off by default).
//!
//! This module owns every place the transport reports itself: a span per
//! outgoing call (`raft_grpc.call`: peer, method, then the gRPC code and
//! the duration in microseconds), per outgoing snapshot
//! (`raft_grpc.snapshot`, with progress events at debug level every
//! 64 MiB), per pipeline (`raft_grpc.pipeline`:
//! appends sent, how it ended) and per incoming RPC
//! (`raft_grpc.incoming`: peer, method, code, duration from its delivery to
//! its answer); events for connections (connected, connect failed with the
//! reconnect backoff, lost, GOAWAY received; accepted, handshake failed)
//! and for the errors the transport survives (a failed accept). Heartbeats
//! are reported at trace level and pipelined appends at debug, everything
//! else at info (outcomes), debug (progress) or warn (errors survived).
//!
//! With the cargo feature `metrics` (off by default), the same places
//! record the metrics that the `metrics` module lists, through the handles
//! of [`ClientMeters`] and [`ServerMeters`]; the server's gRPC family comes
//! from the endpoint's records (`raft_grpc_transport::record`).
//!
//! Without the features every function here is empty and every type zero
//! sized: the call sites cost nothing.

#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::time::Instant;

use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::message::RaftRequest;

#[cfg(any(feature = "tracing", feature = "metrics"))]
use raft_grpc_transport::status::Code;
use raft_grpc_transport::status::Status;
use raft_grpc_transport_api::TransportError;

/// Snapshot bytes between two progress events.
#[cfg(feature = "tracing")]
pub(crate) const SNAPSHOT_PROGRESS_STEP: u64 = 64 << 20;

/// The method a request travels as (pipelined appends say AppendEntries).
pub(crate) fn request_method(request: &RaftRequest) -> RpcMethod {
    match request {
        RaftRequest::AppendEntries(_) => RpcMethod::AppendEntries,
        RaftRequest::RequestVote(_) => RpcMethod::RequestVote,
        RaftRequest::RequestPreVote(_) => RpcMethod::RequestPreVote,
        RaftRequest::TimeoutNow(_) => RpcMethod::TimeoutNow,
        RaftRequest::InstallSnapshot(_) => RpcMethod::InstallSnapshot,
    }
}

/// The metric handles of a transport's client half, registered when it is
/// built (empty without the `metrics` feature).
pub(crate) struct ClientMeters {
    #[cfg(feature = "metrics")]
    grpc: crate::metrics::GrpcHandles,
    /// The slots (peer, slot) that were connected once: a later
    /// connection of theirs is a reconnect.
    #[cfg(feature = "metrics")]
    connected_once: std::sync::Mutex<std::collections::HashSet<(String, usize)>>,
}

impl ClientMeters {
    pub(crate) fn new() -> ClientMeters {
        ClientMeters {
            #[cfg(feature = "metrics")]
            grpc: crate::metrics::GrpcHandles::client(),
            #[cfg(feature = "metrics")]
            connected_once: Default::default(),
        }
    }

    /// The metrics of outgoing connection attempts to `peer` on the slot
    /// `slot` gives with the lanes it carries (asked only with the
    /// feature: without it, nothing is looked up).
    pub(crate) fn slot(
        &self,
        peer: &str,
        slot: impl FnOnce() -> Option<(usize, &'static str)>,
    ) -> SlotMeter<'_> {
        #[cfg(feature = "metrics")]
        {
            SlotMeter {
                meters: self,
                peer: peer.to_owned(),
                slot: slot(),
                up: None,
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (peer, slot);
            SlotMeter {
                _meters: std::marker::PhantomData,
            }
        }
    }
}

/// One outgoing connection's metrics: attempt, up, down.
pub(crate) struct SlotMeter<'a> {
    #[cfg(feature = "metrics")]
    meters: &'a ClientMeters,
    #[cfg(feature = "metrics")]
    peer: String,
    #[cfg(feature = "metrics")]
    slot: Option<(usize, &'static str)>,
    /// The connections gauge while it is up.
    #[cfg(feature = "metrics")]
    up: Option<metrics::Gauge>,
    #[cfg(not(feature = "metrics"))]
    _meters: std::marker::PhantomData<&'a ClientMeters>,
}

impl SlotMeter<'_> {
    /// The attempt failed.
    pub(crate) fn connect_failed(&self) {
        #[cfg(feature = "metrics")]
        if let Some((_, lanes)) = self.slot {
            crate::metrics::connect_failed(&self.peer, lanes);
        }
    }

    /// The connection is up.
    pub(crate) fn connected(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some((slot, lanes)) = self.slot {
            let again = !self
                .meters
                .connected_once
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((self.peer.clone(), slot));
            if again {
                crate::metrics::reconnected(&self.peer, lanes);
            }
            let gauge = crate::metrics::client_connections(&self.peer, lanes);
            gauge.increment(1.0);
            self.up = Some(gauge);
        }
    }
}

impl Drop for SlotMeter<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some(gauge) = self.up.take() {
            gauge.decrement(1.0);
        }
    }
}

/// The metric handles of a transport's server half, registered when it is
/// built (empty without the `metrics` feature).
pub(crate) struct ServerMeters {
    #[cfg(feature = "metrics")]
    grpc: crate::metrics::GrpcHandles,
    #[cfg(feature = "metrics")]
    snapshot_received: metrics::Counter,
    #[cfg(feature = "metrics")]
    connections: metrics::Gauge,
}

impl ServerMeters {
    /// Whether the endpoint should make RPC records (with the feature).
    pub(crate) const RECORDS: bool = cfg!(feature = "metrics");

    pub(crate) fn new() -> ServerMeters {
        ServerMeters {
            #[cfg(feature = "metrics")]
            grpc: crate::metrics::GrpcHandles::server(),
            #[cfg(feature = "metrics")]
            snapshot_received: crate::metrics::snapshot_received(),
            #[cfg(feature = "metrics")]
            connections: crate::metrics::server_connections(),
        }
    }

    /// One of the endpoint's records (see [`raft_grpc_transport::record`]).
    pub(crate) fn record(&self, record: raft_grpc_transport::record::RpcRecord) {
        #[cfg(feature = "metrics")]
        {
            use raft_grpc_transport::record::RpcRecord;
            let handles = self.grpc.method(record.method());
            match record {
                RpcRecord::Started { .. } => handles.started.increment(1),
                RpcRecord::Messages { received, sent, .. } => {
                    if received > 0 {
                        handles.received.increment(received);
                    }
                    if sent > 0 {
                        handles.sent.increment(sent);
                    }
                }
                RpcRecord::Handled { code, duration, .. } => {
                    handles.handled(code, duration.as_secs_f64())
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = record;
    }

    /// The application read `bytes` of an incoming snapshot.
    pub(crate) fn snapshot_received(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.snapshot_received.increment(bytes as u64);
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// An incoming connection is served until the guard drops.
    pub(crate) fn connection_served(&self) -> ServedConnection {
        #[cfg(feature = "metrics")]
        {
            self.connections.increment(1.0);
            ServedConnection {
                gauge: self.connections.clone(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        ServedConnection {}
    }
}

/// An incoming connection counted in `raft_grpc_server_connections`.
pub(crate) struct ServedConnection {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl Drop for ServedConnection {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

/// The metrics of one outgoing call (with the `metrics` feature).
#[cfg(feature = "metrics")]
struct CallMeter<'a> {
    handles: &'a crate::metrics::MethodHandles,
    started: Instant,
    /// Messages sent so far (a snapshot's metadata, then its chunks).
    sent: u64,
    /// The heartbeat histogram's peer, for a heartbeat.
    heartbeat_peer: Option<String>,
    /// Snapshot bytes to this peer, for a snapshot.
    snapshot_bytes: Option<metrics::Counter>,
}

/// One outgoing unary call or snapshot, from its start to its outcome.
pub(crate) struct OutgoingCall<'a> {
    #[cfg(feature = "metrics")]
    meter: CallMeter<'a>,
    #[cfg(not(feature = "metrics"))]
    _meters: std::marker::PhantomData<&'a ClientMeters>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// When it started; `None` when no subscriber wants its span (then
    /// nothing more is done for it).
    #[cfg(feature = "tracing")]
    started: Option<Instant>,
    #[cfg(feature = "tracing")]
    heartbeat: bool,
}

impl<'a> OutgoingCall<'a> {
    /// A call of `method` to `peer` starts (`heartbeat`: reported at trace
    /// level).
    pub(crate) fn start(
        meters: &'a ClientMeters,
        peer: &str,
        method: RpcMethod,
        heartbeat: bool,
    ) -> OutgoingCall<'a> {
        #[cfg(feature = "metrics")]
        let meter = {
            let handles = meters.grpc.method(method);
            handles.started.increment(1);
            let snapshot = method == RpcMethod::InstallSnapshot;
            CallMeter {
                handles,
                started: Instant::now(),
                sent: 1,
                heartbeat_peer: heartbeat.then(|| peer.to_owned()),
                snapshot_bytes: snapshot.then(|| crate::metrics::snapshot_sent(peer)),
            }
        };
        #[cfg(not(feature = "metrics"))]
        let _ = meters;
        #[cfg(feature = "tracing")]
        {
            let span = if heartbeat {
                tracing::trace_span!(
                    "raft_grpc.call",
                    peer,
                    method = method.name(),
                    heartbeat,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                )
            } else if method == RpcMethod::InstallSnapshot {
                tracing::info_span!(
                    "raft_grpc.snapshot",
                    peer,
                    method = method.name(),
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty,
                    bytes = tracing::field::Empty
                )
            } else {
                tracing::info_span!(
                    "raft_grpc.call",
                    peer,
                    method = method.name(),
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                )
            };
            OutgoingCall {
                #[cfg(feature = "metrics")]
                meter,
                #[cfg(not(feature = "metrics"))]
                _meters: std::marker::PhantomData,
                started: (!span.is_disabled()).then(Instant::now),
                span,
                heartbeat,
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (peer, method, heartbeat);
            OutgoingCall {
                #[cfg(feature = "metrics")]
                meter,
                #[cfg(not(feature = "metrics"))]
                _meters: std::marker::PhantomData,
            }
        }
    }

    /// A snapshot's data went out: `sent` of `total` bytes so far; a debug
    /// event every 64 MiB (`SNAPSHOT_PROGRESS_STEP`).
    pub(crate) fn snapshot_progress(&mut self, before: u64, sent: u64, total: u64) {
        #[cfg(feature = "metrics")]
        {
            self.meter.sent += 1;
            if let Some(bytes) = &self.meter.snapshot_bytes {
                bytes.increment(sent.saturating_sub(before));
            }
        }
        #[cfg(feature = "tracing")]
        if sent / SNAPSHOT_PROGRESS_STEP != before / SNAPSHOT_PROGRESS_STEP || sent == total {
            let Some(started) = self.started else {
                return;
            };
            let elapsed = started.elapsed().as_secs_f64();
            let rate = if elapsed > 0.0 {
                sent as f64 / elapsed
            } else {
                0.0
            };
            self.span.in_scope(|| {
                tracing::debug!(
                    sent,
                    total,
                    bytes_per_second = rate as u64,
                    "snapshot progress"
                )
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (before, sent, total);
    }

    /// The call ended with `result` (its error, or none).
    pub(crate) fn finish(self, error: Option<&TransportError>) {
        #[cfg(feature = "metrics")]
        {
            let meter = &self.meter;
            let seconds = meter.started.elapsed().as_secs_f64();
            meter.handles.sent.increment(meter.sent);
            if error.is_none() {
                meter.handles.received.increment(1);
                if let Some(peer) = &meter.heartbeat_peer {
                    crate::metrics::heartbeat(peer, seconds);
                }
            }
            meter
                .handles
                .handled(error.map_or(Code::Ok, TransportError::code), seconds);
        }
        #[cfg(feature = "tracing")]
        {
            let Some(started) = self.started else {
                return;
            };
            let code = error.map_or(Code::Ok, TransportError::code);
            let duration_us = started.elapsed().as_micros() as u64;
            self.span.record("code", code.as_str());
            self.span.record("duration_us", duration_us);
            self.span.in_scope(|| match error {
                None if self.heartbeat => tracing::trace!("call done"),
                None => tracing::info!("call done"),
                Some(error) => tracing::info!(%error, "call failed"),
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = error;
    }
}

/// One AppendEntries pipeline, from its opening to its end.
pub(crate) struct PipelineTrace {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// Appends accepted.
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    appends: std::sync::atomic::AtomicU64,
    #[cfg(feature = "metrics")]
    meter: PipelineMeter,
}

/// The metrics of one pipeline (with the `metrics` feature).
#[cfg(feature = "metrics")]
struct PipelineMeter {
    handles: crate::metrics::MethodHandles,
    in_flight: metrics::Gauge,
    started: Instant,
    /// Completions the caller took.
    completed: std::sync::atomic::AtomicU64,
}

impl PipelineTrace {
    /// A pipeline to `peer` opens.
    pub(crate) fn open(meters: &ClientMeters, peer: &str) -> PipelineTrace {
        #[cfg(feature = "metrics")]
        let meter = {
            let handles = meters.grpc.method(RpcMethod::AppendEntriesPipeline).clone();
            handles.started.increment(1);
            PipelineMeter {
                handles,
                in_flight: crate::metrics::pipeline_in_flight(peer),
                started: Instant::now(),
                completed: std::sync::atomic::AtomicU64::new(0),
            }
        };
        #[cfg(not(feature = "metrics"))]
        let _ = meters;
        #[cfg(feature = "tracing")]
        let span = {
            let span =
                tracing::info_span!("raft_grpc.pipeline", peer, appends = tracing::field::Empty);
            span.in_scope(|| tracing::debug!("pipeline open"));
            span
        };
        #[cfg(not(feature = "tracing"))]
        let _ = peer;
        PipelineTrace {
            #[cfg(feature = "tracing")]
            span,
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            appends: std::sync::atomic::AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            meter,
        }
    }

    /// An append was accepted.
    pub(crate) fn appended(&self) {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.meter.handles.sent.increment(1);
            self.meter.in_flight.increment(1.0);
        }
    }

    /// The caller took an append's completion (`ok`: its response).
    pub(crate) fn completed(&self, ok: bool) {
        #[cfg(feature = "metrics")]
        {
            self.meter
                .completed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.meter.in_flight.decrement(1.0);
            if ok {
                self.meter.handles.received.increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = ok;
    }

    /// It ended; `error` is what ended it, if not its caller.
    pub(crate) fn end(&self, error: Option<&TransportError>) {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        let appends = self.appends.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            let meter = &self.meter;
            let completed = meter.completed.load(std::sync::atomic::Ordering::Relaxed);
            // What the caller never took is no longer in flight.
            let untaken = appends.saturating_sub(completed);
            if untaken > 0 {
                meter.in_flight.decrement(untaken as f64);
            }
            meter.handles.handled(
                error.map_or(Code::Ok, TransportError::code),
                meter.started.elapsed().as_secs_f64(),
            );
        }
        #[cfg(feature = "tracing")]
        {
            self.span.record("appends", appends);
            self.span.in_scope(|| match error {
                None => tracing::info!(appends, "pipeline closed"),
                Some(error) => tracing::info!(appends, %error, "pipeline failed"),
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = error;
    }
}

/// A peer's socket address as a span field: the address, or nothing.
#[cfg(feature = "tracing")]
struct Remote(Option<std::net::SocketAddr>);

#[cfg(feature = "tracing")]
impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => Ok(()),
        }
    }
}

/// What an incoming RPC is, for the level of its span.
pub(crate) enum Incoming {
    /// A heartbeat: trace.
    Heartbeat,
    /// An append of a pipeline stream: debug (a span per append at info
    /// would flood an info-level log).
    Pipelined,
    /// Any other call: info.
    Call,
}

/// One incoming RPC, from its delivery to its answer.
pub(crate) struct IncomingCall {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// When it started; `None` when no subscriber wants its span (then
    /// nothing more is done for it).
    #[cfg(feature = "tracing")]
    started: Option<Instant>,
}

impl IncomingCall {
    /// A request of `method` from `peer` is handed to the application;
    /// `kind` says what it is (asked only if the feature is on).
    pub(crate) fn delivered(
        peer: Option<std::net::SocketAddr>,
        method: RpcMethod,
        kind: impl FnOnce() -> Incoming,
    ) -> IncomingCall {
        #[cfg(feature = "tracing")]
        {
            let method = method.name();
            // Formatted only if a subscriber records the span.
            let peer = Remote(peer);
            let span = match kind() {
                Incoming::Heartbeat => tracing::trace_span!(
                    "raft_grpc.incoming",
                    peer = %peer,
                    method,
                    heartbeat = true,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                ),
                Incoming::Pipelined => tracing::debug_span!(
                    "raft_grpc.incoming",
                    peer = %peer,
                    method,
                    pipelined = true,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                ),
                Incoming::Call => tracing::info_span!(
                    "raft_grpc.incoming",
                    peer = %peer,
                    method,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                ),
            };
            IncomingCall {
                started: (!span.is_disabled()).then(Instant::now),
                span,
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (peer, method, kind);
            IncomingCall {}
        }
    }

    /// The application answered with `status` (OK for a response).
    pub(crate) fn answered(self, status: Option<&Status>) {
        #[cfg(feature = "tracing")]
        {
            let Some(started) = self.started else {
                return;
            };
            let code = status.map_or(Code::Ok, Status::code);
            self.span.record("code", code.as_str());
            self.span
                .record("duration_us", started.elapsed().as_micros() as u64);
            self.span.in_scope(|| match status {
                None => tracing::debug!("answered"),
                Some(status) => tracing::info!(%status, "answered with an error"),
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = status;
    }
}

/// An outgoing connection to `peer` is up (handshake done).
pub(crate) fn connected(peer: &str) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "raft_grpc::connection", peer, "connected");
    #[cfg(not(feature = "tracing"))]
    let _ = peer;
}

/// Connecting to `peer` failed (`detail`); the next attempt waits out the
/// peer's backoff.
pub(crate) fn connect_failed(peer: &str, detail: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "raft_grpc::connection", peer, detail, "connect failed; backing off");
    #[cfg(not(feature = "tracing"))]
    let _ = (peer, detail);
}

/// An outgoing connection to `peer` ended (`detail`: how, when it broke).
pub(crate) fn connection_lost(peer: &str, detail: Option<&str>) {
    #[cfg(feature = "tracing")]
    match detail {
        Some(detail) => {
            tracing::warn!(target: "raft_grpc::connection", peer, detail, "connection lost")
        }
        None => tracing::info!(target: "raft_grpc::connection", peer, "connection closed"),
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (peer, detail);
}

/// The peer of outgoing connection `conn` sent GOAWAY with `code`.
pub(crate) fn goaway_received(conn: raft_grpc_transport::pool::ConnId, code: u32) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "raft_grpc::connection", conn = ?conn, code, "GOAWAY received");
    #[cfg(not(feature = "tracing"))]
    let _ = (conn, code);
}

/// An incoming connection from `remote` was accepted.
pub(crate) fn accepted(remote: Option<std::net::SocketAddr>) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "raft_grpc::connection", remote = ?remote, "accepted");
    #[cfg(not(feature = "tracing"))]
    let _ = remote;
}

/// An incoming connection's TLS or HTTP/2 handshake failed.
pub(crate) fn handshake_failed(remote: Option<std::net::SocketAddr>, detail: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "raft_grpc::connection", remote = ?remote, detail, "incoming handshake failed");
    #[cfg(not(feature = "tracing"))]
    let _ = (remote, detail);
}

/// Accepting a connection failed (out of file descriptors, say); the
/// listener keeps serving after a short pause.
pub(crate) fn accept_failed(error: &std::io::Error) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "raft_grpc::connection", %error, "accept failed; retrying in 10 ms");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
}
