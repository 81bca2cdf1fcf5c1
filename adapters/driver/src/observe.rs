//! What the driver tells an operator: `tracing` spans and events, with the
//! cargo feature `tracing` (off by default).
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
//! are reported at trace level, everything else at info (outcomes), debug
//! (progress) or warn (errors survived).
//!
//! Without the feature every function here is empty and every type zero
//! sized: the call sites cost nothing.

#[cfg(feature = "tracing")]
use std::time::Instant;

use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::message::RaftRequest;

#[cfg(feature = "tracing")]
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

/// One outgoing unary call or snapshot, from its start to its outcome.
pub(crate) struct OutgoingCall {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    /// When it started; `None` when no subscriber wants its span (then
    /// nothing more is done for it).
    #[cfg(feature = "tracing")]
    started: Option<Instant>,
    #[cfg(feature = "tracing")]
    heartbeat: bool,
}

impl OutgoingCall {
    /// A call of `method` to `peer` starts (`heartbeat`: reported at trace
    /// level).
    pub(crate) fn start(peer: &str, method: RpcMethod, heartbeat: bool) -> OutgoingCall {
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
                started: (!span.is_disabled()).then(Instant::now),
                span,
                heartbeat,
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (peer, method, heartbeat);
            OutgoingCall {}
        }
    }

    /// A snapshot's data went out: `sent` of `total` bytes so far; a debug
    /// event every 64 MiB (`SNAPSHOT_PROGRESS_STEP`).
    pub(crate) fn snapshot_progress(&self, before: u64, sent: u64, total: u64) {
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
    #[cfg(feature = "tracing")]
    appends: std::sync::atomic::AtomicU64,
}

impl PipelineTrace {
    /// A pipeline to `peer` opens.
    pub(crate) fn open(peer: &str) -> PipelineTrace {
        #[cfg(feature = "tracing")]
        {
            let span =
                tracing::info_span!("raft_grpc.pipeline", peer, appends = tracing::field::Empty);
            span.in_scope(|| tracing::debug!("pipeline open"));
            PipelineTrace {
                span,
                appends: std::sync::atomic::AtomicU64::new(0),
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = peer;
            PipelineTrace {}
        }
    }

    /// An append was accepted.
    pub(crate) fn appended(&self) {
        #[cfg(feature = "tracing")]
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// It ended; `error` is what ended it, if not its caller.
    pub(crate) fn end(&self, error: Option<&TransportError>) {
        #[cfg(feature = "tracing")]
        {
            let appends = self.appends.load(std::sync::atomic::Ordering::Relaxed);
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
    /// A request of `method` from `peer` is handed to the application
    /// (`heartbeat`: to the heartbeat handler).
    pub(crate) fn delivered(
        peer: Option<std::net::SocketAddr>,
        method: RpcMethod,
        heartbeat: bool,
    ) -> IncomingCall {
        #[cfg(feature = "tracing")]
        {
            let method = method.name();
            // Formatted only if a subscriber records the span.
            let peer = Remote(peer);
            let span = if heartbeat {
                tracing::trace_span!(
                    "raft_grpc.incoming",
                    peer = %peer,
                    method,
                    heartbeat,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                )
            } else {
                tracing::info_span!(
                    "raft_grpc.incoming",
                    peer = %peer,
                    method,
                    code = tracing::field::Empty,
                    duration_us = tracing::field::Empty
                )
            };
            IncomingCall {
                started: (!span.is_disabled()).then(Instant::now),
                span,
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (peer, method, heartbeat);
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
