//! Streams that another HTTP/2 stack accepted, served by the transport's
//! endpoint.
//!
//! This module owns the seam between the core's `ServerEndpoint` and an
//! HTTP/2 server the driver does not run (hyper under tonic or axum, say):
//! [`HostedServer`] opens a [`HostedStream`] per request that stack
//! accepted, and each stream is polled by whoever polls that request (its
//! response future, then its response body). Requests reach the same
//! consumer queue, heartbeat handler, pipeline handler and snapshot readers
//! as on the transport's own connections; every decision (statuses,
//! deadlines, back-pressure, answer order, limits) stays the endpoint's.
//!
//! The other stack owns the connections, so the endpoint sees one virtual
//! connection per peer address with streams open, formed when its first
//! stream opens and forgotten when its last one ends: the per-connection
//! budget and the connection limits count those. What the endpoint asks of
//! a connection is read for such a stack: GOAWAY and close retire the
//! virtual connection (the streams it still has fail or finish; the next
//! request forms a new one), while PINGs and window changes are left to the
//! stack that owns the real connection (its own settings rule there).
//! Receive flow control becomes a credit per stream: a stream takes at most
//! one stream window of request data beyond what the endpoint released, so
//! that what a peer makes the node hold is bounded as on the driver's own
//! connections.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use bytes::Bytes;
use raft_grpc_transport::call::ServerTransmit;
use raft_grpc_transport::http2::CANCEL;
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::server::{PeerInfo, ServerOutput, StreamId};

use crate::server::ServerShared;

/// What the request side of a hosted stream brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInput {
    /// Request body bytes, as the stack delivered them.
    Data(Bytes),
    /// The request body ended.
    End,
    /// The peer reset the stream (or its body failed) with this HTTP/2
    /// error code.
    Reset(u32),
}

/// The hosted side of the endpoint's state: virtual connections and the
/// wakers of the streams on them.
#[derive(Default)]
pub(crate) struct HostedState {
    conns: HashMap<ConnId, HostedConn>,
    /// The live virtual connection of each peer address.
    by_peer: HashMap<Option<SocketAddr>, ConnId>,
    streams: HashMap<StreamId, HostedSlot>,
    /// The stream whose poll runs the current update: its wakes are noted,
    /// not sent (it looks before it sleeps).
    serving: Option<StreamId>,
}

struct HostedConn {
    peer: Option<SocketAddr>,
    streams: usize,
}

#[derive(Default)]
struct HostedSlot {
    waker: Option<Waker>,
    /// Request bytes the endpoint released since the stream last looked.
    released: usize,
    woken: bool,
}

impl HostedState {
    /// Whether `output` is for a hosted stream or virtual connection.
    pub(crate) fn owns(&self, output: &ServerOutput) -> bool {
        match *output {
            ServerOutput::Transmit { stream, .. }
            | ServerOutput::ReleaseCapacity { stream, .. } => self.streams.contains_key(&stream),
            ServerOutput::GoAway { conn }
            | ServerOutput::Close { conn }
            | ServerOutput::Refuse { conn, .. }
            | ServerOutput::Ping { conn }
            | ServerOutput::SetWindows { conn, .. } => self.conns.contains_key(&conn),
        }
    }

    /// Carries out one of the endpoint's outputs for a hosted connection;
    /// `lost` collects the connections to report lost.
    pub(crate) fn output(&mut self, output: ServerOutput, lost: &mut Vec<ConnId>) {
        match output {
            ServerOutput::Transmit { stream, .. } => self.wake(stream),
            ServerOutput::ReleaseCapacity { stream, bytes, .. } => {
                if let Some(slot) = self.streams.get_mut(&stream) {
                    slot.released += bytes;
                }
                self.wake(stream);
            }
            // Its streams finish (or fail, for a close); no new one joins.
            ServerOutput::GoAway { conn } | ServerOutput::Refuse { conn, .. } => {
                if self.retire(conn) {
                    lost.push(conn);
                }
            }
            ServerOutput::Close { conn } => {
                self.retire(conn);
                self.conns.remove(&conn);
                lost.push(conn);
            }
            // The stack that owns the real connection runs its PINGs and
            // windows.
            ServerOutput::Ping { .. } | ServerOutput::SetWindows { .. } => {}
        }
    }

    /// Takes `conn` out of the address map; true when it has no stream
    /// left (and is forgotten).
    fn retire(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        if self.by_peer.get(&c.peer) == Some(&conn) {
            self.by_peer.remove(&c.peer);
        }
        if c.streams == 0 {
            self.conns.remove(&conn);
            return true;
        }
        false
    }

    fn wake(&mut self, stream: StreamId) {
        let serving = self.serving == Some(stream);
        if let Some(slot) = self.streams.get_mut(&stream) {
            slot.woken = true;
            if !serving {
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// The stream is done with: its connection is forgotten with its last
    /// stream (returned, to report lost).
    fn close_stream(&mut self, stream: StreamId, conn: ConnId) -> Option<ConnId> {
        self.streams.remove(&stream)?;
        let c = self.conns.get_mut(&conn)?;
        c.streams -= 1;
        if c.streams > 0 {
            return None;
        }
        let peer = c.peer;
        self.conns.remove(&conn);
        if self.by_peer.get(&peer) == Some(&conn) {
            self.by_peer.remove(&peer);
        }
        Some(conn)
    }
}

/// Opens streams for requests that another HTTP/2 stack accepted, on a
/// transport's endpoint (see
/// [`GrpcTransport::hosted`](crate::GrpcTransport::hosted)).
///
/// Cheap to clone; every clone serves the same endpoint.
#[derive(Clone)]
pub struct HostedServer {
    shared: Arc<ServerShared>,
}

impl std::fmt::Debug for HostedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedServer").finish_non_exhaustive()
    }
}

impl HostedServer {
    pub(crate) fn new(shared: Arc<ServerShared>) -> Self {
        HostedServer { shared }
    }

    /// Whether the transport closed (its endpoint answers every request
    /// `UNAVAILABLE` from then on).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Ready once the transport closes (by `close`, or with its last
    /// handle): a shutdown signal for the stack that hosts its streams.
    /// It does not keep the transport open.
    pub async fn closed(&self) {
        loop {
            let listener = self.shared.shutdown.listen();
            if self.shared.is_closed() {
                return;
            }
            listener.await;
        }
    }

    /// A request arrived with this head from `peer` (its address keys the
    /// virtual connection; `None` puts every such request on one);
    /// `end_of_stream` when its HEADERS frame ended the stream. The
    /// endpoint decides at once whether the call goes on (method, headers,
    /// authorizer, limits); its answer comes out of
    /// [`HostedStream::exchange`] either way.
    pub fn open_stream(
        &self,
        peer: PeerInfo,
        head: &http::request::Parts,
        end_of_stream: bool,
    ) -> HostedStream {
        let (id, conn, window) = self.shared.update(|s, now| {
            let key = peer.remote_addr;
            let conn = match s.hosted.by_peer.get(&key) {
                Some(&conn) => conn,
                None => {
                    let conn = s.endpoint.handle_peer_connection(peer, now);
                    s.endpoint.handle_handshake_done(conn, now);
                    s.hosted.conns.insert(
                        conn,
                        HostedConn {
                            peer: key,
                            streams: 0,
                        },
                    );
                    s.hosted.by_peer.insert(key, conn);
                    conn
                }
            };
            let id = s.endpoint.handle_request_head(conn, head, now);
            s.hosted.streams.insert(id, HostedSlot::default());
            if let Some(c) = s.hosted.conns.get_mut(&conn) {
                c.streams += 1;
            }
            if end_of_stream {
                s.endpoint.handle_end_of_stream(id, now);
            }
            (id, conn, s.endpoint.config().windows.initial_stream)
        });
        HostedStream {
            shared: self.shared.clone(),
            id,
            conn,
            credit: window as usize,
            finished: false,
        }
    }
}

/// One request that another HTTP/2 stack accepted: its request data goes
/// in and its answer (head, data, trailers) comes out through
/// [`exchange`](Self::exchange). Dropped before its answer is out, it
/// counts as reset by the peer.
pub struct HostedStream {
    shared: Arc<ServerShared>,
    id: StreamId,
    conn: ConnId,
    /// Request bytes it may still take before the endpoint releases some.
    credit: usize,
    finished: bool,
}

impl std::fmt::Debug for HostedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedStream")
            .field("stream", &self.id)
            .field("credit", &self.credit)
            .field("finished", &self.finished)
            .finish()
    }
}

/// What one [`HostedStream::exchange`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchanged {
    /// More is ready to transmit than `room` allowed, or the endpoint made
    /// more while it ran: exchange again (with nothing new) before
    /// sleeping.
    pub again: bool,
    /// The stream's answer is all out (or it was reset): nothing more
    /// comes from it.
    pub finished: bool,
}

impl HostedStream {
    /// Request bytes the stream takes now: read at most this much of the
    /// request body before the next [`exchange`](Self::exchange) (what is
    /// left unread stays in the stack's flow-control window, which holds
    /// the peer back).
    pub fn request_room(&self) -> usize {
        self.credit
    }

    /// Whether its answer is all out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Hands the endpoint what the request side brought (`inputs`, taken),
    /// then appends to `out` what the stream has to send, with at most
    /// `room` bytes of data; records `cx`'s waker, woken when the stream
    /// has more to send or more request room.
    pub fn exchange(
        &mut self,
        cx: &Context<'_>,
        inputs: &mut Vec<RequestInput>,
        room: usize,
        out: &mut VecDeque<ServerTransmit>,
    ) -> Exchanged {
        if self.finished {
            inputs.clear();
            return Exchanged {
                again: false,
                finished: true,
            };
        }
        let id = self.id;
        let mut state = self.shared.lock();
        let now = Instant::now();
        state.hosted.serving = Some(id);
        if let Some(slot) = state.hosted.streams.get_mut(&id) {
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            slot.woken = false;
        }
        for input in inputs.drain(..) {
            match input {
                RequestInput::Data(data) => {
                    self.credit = self.credit.saturating_sub(data.len());
                    state.endpoint.handle_data(id, data, now);
                }
                RequestInput::End => state.endpoint.handle_end_of_stream(id, now),
                RequestInput::Reset(code) => state.endpoint.handle_reset(id, code, now),
            }
        }
        let mut left = room;
        while let Some(transmit) = state.endpoint.poll_transmit(id, left, now) {
            if let ServerTransmit::Data(data) = &transmit {
                left = left.saturating_sub(data.len());
            }
            out.push_back(transmit);
        }
        let conn = self.conn;
        let (deferred, (released, again, finished)) = self.shared.dispatch_then(state, None, |s| {
            s.hosted.serving = None;
            let (released, woken) = match s.hosted.streams.get_mut(&id) {
                Some(slot) => (
                    std::mem::take(&mut slot.released),
                    std::mem::take(&mut slot.woken),
                ),
                None => (0, false),
            };
            let finished = s.endpoint.stream_finished(id);
            if finished {
                if let Some(conn) = s.hosted.close_stream(id, conn) {
                    s.endpoint
                        .handle_connection_lost(conn, LAST_STREAM_ENDED, now);
                }
            }
            let again = woken && !finished && s.endpoint.has_transmit(id);
            (released, again, finished)
        });
        self.shared.run_deferred(deferred);
        self.credit += released;
        self.finished = finished;
        Exchanged { again, finished }
    }
}

/// What the endpoint is told when a virtual connection is forgotten.
const LAST_STREAM_ENDED: &str = "its last hosted stream ended";

impl Drop for HostedStream {
    /// A stream given up before its answer is out was reset by the peer
    /// (the stack dropped it).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (id, conn) = (self.id, self.conn);
        self.shared.update(|s, now| {
            s.endpoint.handle_reset(id, CANCEL, now);
            if let Some(conn) = s.hosted.close_stream(id, conn) {
                s.endpoint
                    .handle_connection_lost(conn, LAST_STREAM_ENDED, now);
            }
        });
    }
}
