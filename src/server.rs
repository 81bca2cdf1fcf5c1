//! The server side of the transport, as one state machine.
//!
//! [`ServerEndpoint`] owns every incoming stream of a node, on every
//! connection: it runs one [`ServerCall`] per stream (head validation,
//! decoding, the response, the deadline), and decides everything between
//! those calls and the application:
//! * **where a request goes**: a heartbeat to the fast path
//!   ([`ServerEvent::Heartbeat`], when
//!   [`set_heartbeat_fast_path`](ServerEndpoint::set_heartbeat_fast_path) is on),
//!   the appends of a pipeline stream to that stream's own queue (when
//!   [`set_pipelines_apart`](ServerEndpoint::set_pipelines_apart) is on),
//!   everything else to the consumer queue
//!   ([`poll_rpc`](ServerEndpoint::poll_rpc));
//! * **back-pressure**: the consumer queue holds at most
//!   [`ServerConfig::consumer_queue`] requests and an incoming snapshot at
//!   most [`ServerConfig::snapshot_buffer`] chunks ahead of its reader;
//!   beyond that a stream stops taking data, its receive capacity is not
//!   released ([`ServerOutput::ReleaseCapacity`]), and HTTP/2 flow control
//!   holds the peer back. What one stream can make the node hold is its
//!   window plus those bounds;
//! * **limits on what a peer can make the node hold**: connections in all
//!   and per IP address ([`ServerOutput::Refuse`]), idle connections
//!   (GOAWAY, then closed), streams that owe request data and send none,
//!   answers waiting for the client's window (the stream stops reading),
//!   and a budget of bytes held per connection (see [`ServerConfig`]);
//! * **the race between delivery and the caller**: a request still in a
//!   queue when its caller resets the stream, its deadline passes, its
//!   connection drops or the endpoint closes is removed, never delivered
//!   late; a request taken by the application is answered exactly once
//!   ([`respond`](ServerEndpoint::respond) refuses a second answer, or one
//!   for a call that is over);
//! * **answer order**: requests of a pipeline may be answered in any
//!   order; the endpoint sends the answers back in request order;
//! * **receive windows that follow the link**: while data arrives, a PING
//!   measures the bandwidth-delay product and the connection's windows grow
//!   with it, up to a cap ([`WindowConfig`], [`crate::flow`]);
//! * **shutdown**: [`close`](ServerEndpoint::close) answers every request
//!   it still holds, delivered or not, with `UNAVAILABLE` ("transport shut
//!   down"), fails the readers of incoming snapshots with it, sends GOAWAY
//!   on every connection and refuses later streams.
//!
//! It owns no sockets and no HTTP/2 library: a driver reports what arrived
//! and carries out what the endpoint asks.
//!
//! # The contract
//!
//! * Driver inputs: [`handle_connection`](ServerEndpoint::handle_connection)
//!   (accepted), [`handle_handshake_done`](ServerEndpoint::handle_handshake_done),
//!   [`handle_request_head`](ServerEndpoint::handle_request_head),
//!   [`handle_data`](ServerEndpoint::handle_data),
//!   [`handle_end_of_stream`](ServerEndpoint::handle_end_of_stream),
//!   [`handle_reset`](ServerEndpoint::handle_reset),
//!   [`handle_ping_ack`](ServerEndpoint::handle_ping_ack),
//!   [`handle_connection_lost`](ServerEndpoint::handle_connection_lost),
//!   [`handle_timeout`](ServerEndpoint::handle_timeout).
//! * Application commands: [`poll_rpc`](ServerEndpoint::poll_rpc),
//!   [`poll_pipeline_rpc`](ServerEndpoint::poll_pipeline_rpc),
//!   [`read_snapshot`](ServerEndpoint::read_snapshot),
//!   [`respond`](ServerEndpoint::respond),
//!   [`drop_pipeline`](ServerEndpoint::drop_pipeline),
//!   [`close`](ServerEndpoint::close).
//! * After every one of them, drain [`poll_output`](ServerEndpoint::poll_output)
//!   (instructions for the driver) and [`poll_event`](ServerEndpoint::poll_event)
//!   (news for the application), then arm a timer at
//!   [`poll_timeout`](ServerEndpoint::poll_timeout). When a stream has
//!   something to send ([`ServerOutput::Transmit`]) or gets send capacity,
//!   pull [`poll_transmit`](ServerEndpoint::poll_transmit) with the capacity
//!   HTTP/2 granted (reserve [`send_wanted`](ServerEndpoint::send_wanted))
//!   until it returns `None`.
//!
//! Receive flow control is the endpoint's: pass every DATA frame to
//! `handle_data` as it arrives and release exactly what
//! [`ServerOutput::ReleaseCapacity`] says.
//!
//! ```
//! use std::time::Instant;
//! use raft_grpc_transport::framing::MessageEncoder;
//! use raft_grpc_transport::head::{RequestHead, RpcMethod};
//! use raft_grpc_transport::message::*;
//! use raft_grpc_transport::server::{ServerConfig, ServerEndpoint, ServerOutput};
//!
//! let now = Instant::now();
//! let mut server = ServerEndpoint::new(ServerConfig::default());
//! let conn = server.handle_connection(now);
//! server.handle_handshake_done(conn, now);
//! let head = RequestHead::new(RpcMethod::RequestVote, "me".parse().unwrap(), None);
//! let stream = server.handle_request_head(conn, &head.to_request().into_parts().0, now);
//! let request = RequestVoteRequest { term: 5, ..Default::default() };
//! server.handle_data(stream, MessageEncoder::default().encode(&request).unwrap().to_bytes(), now);
//! server.handle_end_of_stream(stream, now);
//!
//! // The consumer takes the request; its answer goes out on the stream.
//! let rpc = server.poll_rpc(now).unwrap();
//! assert_eq!(rpc.request, RaftRequest::RequestVote(request));
//! let answer = RequestVoteResponse { term: 5, granted: true, ..Default::default() };
//! server.respond(rpc.id, Ok(RaftResponse::RequestVote(answer)), now).unwrap();
//! while let Some(output) = server.poll_output() {
//!     if let ServerOutput::Transmit { stream, .. } = output {
//!         while let Some(_transmit) = server.poll_transmit(stream, 65_535, now) {}
//!     }
//! }
//! assert!(server.stream_finished(stream));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::call::{
    RespondError, ServerCall, ServerCallConfig, ServerEvent as CallEvent, ServerTransmit,
};
use crate::error::shutdown_status;
use crate::flow::WindowTuner;
use crate::head::{RequestRejection, RpcMethod, trailers_only};
use crate::heartbeat::is_heartbeat;
use crate::message::{AppendEntriesRequest, RaftRequest, RaftResponse};
use crate::pool::ConnId;
use crate::record::RpcRecord;
use crate::status::{Code, Status};

/// Configuration of a [`ServerEndpoint`]. Its defaults are the transport's
/// ([`crate::config::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Limits of each call.
    pub call: ServerCallConfig,
    /// Requests waiting for the consumer before streams stop reading.
    pub consumer_queue: usize,
    /// Snapshot chunks buffered ahead of an incoming snapshot's reader.
    pub snapshot_buffer: usize,
    /// An accepted connection that has not finished its HTTP/2 handshake
    /// after this long is closed.
    pub handshake_timeout: Duration,
    /// Heartbeats go to the fast path ([`ServerEvent::Heartbeat`]) instead
    /// of the consumer queue.
    pub heartbeat_fast_path: bool,
    /// Each pipeline stream's appends go to a queue of their own
    /// ([`ServerEvent::PipelineOpened`]) instead of the consumer queue.
    pub pipelines_apart: bool,
    /// The receive windows a connection starts with (as its HTTP/2
    /// settings say), and how far they may grow with the link.
    pub windows: WindowConfig,
    /// Connections held at once (default 512): one more is refused with
    /// GOAWAY `ENHANCE_YOUR_CALM` once its handshake is done
    /// ([`ServerOutput::Refuse`]).
    pub max_connections: usize,
    /// Connections held at once from one IP address (default 32; a node
    /// of this transport opens 3 to each peer): one more is refused as
    /// beyond [`max_connections`](Self::max_connections).
    pub max_connections_per_ip: usize,
    /// A connection without open streams for this long gets GOAWAY
    /// (`NO_ERROR`; the peer reconnects when it next calls), and is closed
    /// if it is still there, without streams, another
    /// [`handshake_timeout`](Self::handshake_timeout) later (default 10
    /// min; `None` keeps idle connections for ever). Every connection that
    /// got GOAWAY is closed that way once its last stream is done.
    pub idle_timeout: Option<Duration>,
    /// A stream that owes request data (a unary call's request, the rest
    /// of a message begun) and gets none for this long fails with
    /// `DEADLINE_EXCEEDED` (default 30 s; `None` waits for ever). A
    /// pipeline between appends owes nothing, and a stream held back by
    /// the server itself is not waiting for the client.
    pub request_data_timeout: Option<Duration>,
    /// Bytes the endpoint holds for one connection's streams after taking
    /// their data from HTTP/2 (default 32 MiB, at least
    /// [`ServerCallConfig::max_request_len`]): messages not yet complete,
    /// requests waiting in a queue, snapshot chunks ahead of their reader,
    /// answers waiting for the client's receive window.
    /// Over it, streams stop taking data while queued requests or chunks
    /// will drain; a stream that would grow a budget filled by incomplete
    /// messages alone fails with `RESOURCE_EXHAUSTED`. With the receive
    /// windows, this bounds what one connection can make the node hold.
    pub max_buffered_per_connection: usize,
}

crate::config::setters!(ServerConfig {
    with_call => call: ServerCallConfig,
    with_consumer_queue => consumer_queue: usize,
    with_snapshot_buffer => snapshot_buffer: usize,
    with_handshake_timeout => handshake_timeout: Duration,
    with_heartbeat_fast_path => heartbeat_fast_path: bool,
    with_pipelines_apart => pipelines_apart: bool,
    with_windows => windows: WindowConfig,
    with_max_connections => max_connections: usize,
    with_max_connections_per_ip => max_connections_per_ip: usize,
    with_idle_timeout => idle_timeout: Option<Duration>,
    with_request_data_timeout => request_data_timeout: Option<Duration>,
    with_max_buffered_per_connection => max_buffered_per_connection: usize,
});

/// The receive windows of a server connection: they start as the HTTP/2
/// settings say and grow with a bandwidth-delay estimate
/// ([`crate::flow::WindowTuner`]) up to `max_stream`, so that a snapshot
/// over a long link is not held to one window per round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowConfig {
    /// The initial stream window (SETTINGS_INITIAL_WINDOW_SIZE).
    pub initial_stream: u32,
    /// The initial connection window.
    pub initial_connection: u32,
    /// The most a stream window grows to (at most `initial_stream`: fixed
    /// windows).
    pub max_stream: u32,
}

crate::config::setters!(WindowConfig {
    with_initial_stream => initial_stream: u32,
    with_initial_connection => initial_connection: u32,
    with_max_stream => max_stream: u32,
});

impl Default for WindowConfig {
    fn default() -> Self {
        crate::config::Config::default().server().windows
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        crate::config::Config::default().server()
    }
}

/// Identifies one incoming stream of a [`ServerEndpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Identifies one request to answer: its stream, and its position on the
/// stream (0 for unary calls; a pipeline's appends count up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The stream.
    pub stream: StreamId,
    /// The request's position on it.
    pub seq: u64,
}

/// An incoming request handed to the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IncomingRpc {
    /// Answer it with [`ServerEndpoint::respond`].
    pub id: RequestId,
    /// The request. An InstallSnapshot's data follows through
    /// [`ServerEndpoint::read_snapshot`].
    pub request: RaftRequest,
    /// Who sent it: the peer of the connection it came on.
    pub peer: Arc<PeerInfo>,
}

/// Who is at the other end of a connection, as far as the driver learned:
/// its address when it accepted the connection, and the certificate chain
/// that TLS verified when the peer authenticated with a certificate.
///
/// ```
/// use bytes::Bytes;
/// use raft_grpc_transport::server::PeerInfo;
///
/// let peer = PeerInfo::new(Some("10.0.0.2:51234".parse().unwrap()))
///     .with_certificates(vec![Bytes::from_static(b"DER of the leaf")]);
/// assert_eq!(peer.remote_addr.unwrap().port(), 51234);
/// assert_eq!(peer.certificates.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's socket address (`None` when the stream has none: an
    /// in-memory pipe, a stream handed over without it).
    pub remote_addr: Option<SocketAddr>,
    /// The certificate chain the peer presented and TLS verified, DER,
    /// leaf first; empty without TLS client authentication.
    pub certificates: Vec<Bytes>,
}

impl PeerInfo {
    /// A peer at `remote_addr`, without certificates.
    pub fn new(remote_addr: Option<SocketAddr>) -> PeerInfo {
        PeerInfo {
            remote_addr,
            certificates: Vec::new(),
        }
    }

    /// The same peer, with the certificate chain TLS verified.
    #[must_use]
    pub fn with_certificates(mut self, certificates: Vec<Bytes>) -> PeerInfo {
        self.certificates = certificates;
        self
    }
}

/// What an [`Authorizer`] decides on: one new stream's peer, method and
/// request metadata (its HTTP/2 headers: `authorization`, say).
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthorizationRequest<'a> {
    /// Who opened the stream.
    pub peer: &'a PeerInfo,
    /// The method called.
    pub method: RpcMethod,
    /// The request's headers.
    pub metadata: &'a http::HeaderMap,
}

/// Decides, once per stream and before its first request reaches the
/// application, whether the call may go on: `Err(status)` answers the call
/// with that status at once (`PERMISSION_DENIED` or `UNAUTHENTICATED`, as a
/// rule; an `OK` status is taken as `PERMISSION_DENIED`). It runs on the
/// driver's thread and must not block.
pub type Authorizer = Arc<dyn Fn(&AuthorizationRequest<'_>) -> Result<(), Status> + Send + Sync>;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// `stream` has something to send: pull
    /// [`poll_transmit`](ServerEndpoint::poll_transmit). It is given once
    /// until `poll_transmit` is called for the stream: a driver that cannot
    /// send at once must remember it.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The stream.
        stream: StreamId,
    },
    /// Release this much receive capacity on `stream`: the endpoint took
    /// the data.
    ReleaseCapacity {
        /// The connection.
        conn: ConnId,
        /// The stream.
        stream: StreamId,
        /// Bytes.
        bytes: usize,
    },
    /// Shut the connection down gracefully: GOAWAY, no new streams, close
    /// once its streams are done. It may come before the connection's
    /// HTTP/2 handshake is done (a connection accepted after `close`, or
    /// `close` during a handshake): send it once the handshake is.
    GoAway {
        /// The connection.
        conn: ConnId,
    },
    /// Close the connection now (its handshake took too long, or it stayed
    /// after the GOAWAY of an idle connection).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Refuse the connection (one beyond
    /// [`ServerConfig::max_connections`] or
    /// [`ServerConfig::max_connections_per_ip`]): once its HTTP/2
    /// handshake is done, send GOAWAY with `error_code`
    /// ([`ENHANCE_YOUR_CALM`](crate::http2::ENHANCE_YOUR_CALM)) and close
    /// it without serving a stream. It comes right after
    /// [`handle_peer_connection`](ServerEndpoint::handle_peer_connection);
    /// the handshake deadline still applies.
    Refuse {
        /// The connection.
        conn: ConnId,
        /// The GOAWAY's HTTP/2 error code.
        error_code: u32,
    },
    /// Send an HTTP/2 PING on the connection (to measure the link) and
    /// report its answer with
    /// [`handle_ping_ack`](ServerEndpoint::handle_ping_ack). At most one
    /// is in flight.
    Ping {
        /// The connection.
        conn: ConnId,
    },
    /// Grow the connection's receive windows: SETTINGS_INITIAL_WINDOW_SIZE
    /// to `stream_window` (for its streams, open ones too) and the
    /// connection window to `connection_window`.
    SetWindows {
        /// The connection.
        conn: ConnId,
        /// The new initial stream window.
        stream_window: u32,
        /// The new connection window.
        connection_window: u32,
    },
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A heartbeat for the fast path: answer it at once with
    /// [`respond`](ServerEndpoint::respond).
    Heartbeat {
        /// Its id.
        id: RequestId,
        /// The request.
        request: AppendEntriesRequest,
        /// Who sent it.
        peer: Arc<PeerInfo>,
    },
    /// A request entered the consumer queue: take it with
    /// [`poll_rpc`](ServerEndpoint::poll_rpc).
    RpcQueued,
    /// A pipeline stream opened while pipelines go apart: take its appends
    /// with [`poll_pipeline_rpc`](ServerEndpoint::poll_pipeline_rpc).
    PipelineOpened {
        /// The stream.
        pipeline: StreamId,
    },
    /// An append entered a pipeline's own queue, or the pipeline ended.
    PipelineReady {
        /// The stream.
        pipeline: StreamId,
    },
    /// Data, the end or a failure is ready for the reader of this
    /// InstallSnapshot: call [`read_snapshot`](ServerEndpoint::read_snapshot).
    SnapshotReady {
        /// The InstallSnapshot request.
        id: RequestId,
    },
}

/// What [`ServerEndpoint::read_snapshot`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRead {
    /// The next piece of data, as it arrived.
    Data(Bytes),
    /// Every declared byte arrived and was verified.
    End,
    /// The stream failed: fewer or more bytes than declared, a bad
    /// checksum, a reset, a deadline, the connection, or shutdown.
    Failed(Status),
    /// Nothing yet: wait for [`ServerEvent::SnapshotReady`].
    Pending,
}

/// What [`ServerEndpoint::poll_pipeline_rpc`] found.
// Taken once and matched at once: boxing the request would cost an
// allocation per append for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineRead {
    /// The next append, in the order the peer sent them.
    Rpc(IncomingRpc),
    /// Nothing yet: wait for [`ServerEvent::PipelineReady`].
    Pending,
    /// The stream is over: no append will come.
    Ended,
}

/// An incoming snapshot's data on its way to the reader.
#[derive(Debug)]
struct SnapshotBuffer {
    seq: u64,
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    bytes: usize,
    end: bool,
    failed: Option<Status>,
    /// The reader saw the end or the failure.
    done: bool,
    /// The reader is gone: data is dropped as it arrives.
    reader_gone: bool,
}

#[derive(Debug)]
struct Stream {
    conn: ConnId,
    /// The connection's peer when the stream opened.
    peer: Arc<PeerInfo>,
    call: ServerCall,
    /// DATA received and not yet passed to the call (its capacity not yet
    /// released).
    pending: VecDeque<Bytes>,
    pending_end: bool,
    /// Requests decoded so far (the next one's seq).
    next_seq: u64,
    /// The next request whose answer goes out.
    next_answer: u64,
    /// Answers that came before those of earlier requests.
    early: BTreeMap<u64, Result<RaftResponse, Status>>,
    /// Requests of this stream still waiting in a queue.
    queued: usize,
    /// Their encoded size.
    queued_bytes: usize,
    snapshot: Option<SnapshotBuffer>,
    /// The appends of a pipeline that goes apart (with their encoded
    /// size), and whether it ended.
    apart: Option<(VecDeque<(IncomingRpc, usize)>, bool)>,
    /// A Transmit output is pending for it.
    transmit_queued: bool,
    /// Since when the stream owes request data and has got none (see
    /// [`ServerConfig::request_data_timeout`]).
    waiting_since: Option<Instant>,
    /// What this stream counts in its connection's budget: bytes of
    /// incomplete messages, and of decoded requests and chunks it holds.
    held_partial: usize,
    held_decoded: usize,
    /// What was recorded of it (with records on, for a call to a method
    /// of the service).
    record: Option<StreamRecord>,
}

/// What the endpoint recorded of one stream so far.
#[derive(Debug)]
struct StreamRecord {
    method: RpcMethod,
    opened: Instant,
    received: u64,
    sent: u64,
    handled: bool,
}

impl Stream {
    /// Bytes of decoded requests and snapshot chunks the stream holds for
    /// the application, and of answers waiting for the client's window.
    fn decoded_len(&self) -> usize {
        self.queued_bytes + self.snapshot.as_ref().map_or(0, |b| b.bytes) + self.call.send_wanted()
    }

    /// When it fails for owing request data too long.
    fn data_deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        self.waiting_since?.checked_add(timeout?)
    }
}

#[derive(Debug)]
struct Connection {
    peer: Arc<PeerInfo>,
    streams: BTreeSet<StreamId>,
    /// When its handshake must be done (until it is).
    handshake_deadline: Option<Instant>,
    going_away: bool,
    /// Refused (over a connection limit): it serves no stream.
    refused: bool,
    /// Since when it has no open stream (after its handshake).
    idle_since: Option<Instant>,
    /// When to close it if it is still there (after an idle GOAWAY).
    close_at: Option<Instant>,
    windows: WindowTuner,
    /// The streams' budget counts: see [`ServerConfig::max_buffered_per_connection`].
    held_partial: usize,
    held_decoded: usize,
    /// Streams that stopped taking data for the budget, to retry when
    /// decoded requests or chunks drain.
    budget_waiting: Vec<StreamId>,
}

impl Connection {
    /// When it is closed: its handshake is late, or it stayed after its
    /// GOAWAY (one of the two at most is set).
    fn close_deadline(&self) -> Option<Instant> {
        self.handshake_deadline.or(self.close_at)
    }

    /// When it gets GOAWAY for having no stream.
    fn idle_deadline(&self, idle: Option<Duration>) -> Option<Instant> {
        if self.going_away {
            return None;
        }
        self.idle_since?.checked_add(idle?)
    }
}

/// The server side of the transport, for every connection of a node. See
/// the module docs for the contract.
#[derive(Debug)]
pub struct ServerEndpoint {
    config: ServerConfig,
    closed: bool,
    next_conn: u64,
    next_stream: u64,
    conns: BTreeMap<ConnId, Connection>,
    streams: BTreeMap<StreamId, Stream>,
    /// Requests for the consumer (with their encoded size), oldest first.
    consumer: VecDeque<(IncomingRpc, usize)>,
    /// Streams holding a request that found the consumer queue full, in
    /// the order they found it so.
    blocked: VecDeque<StreamId>,
    outputs: VecDeque<ServerOutput>,
    events: VecDeque<ServerEvent>,
    authorizer: AuthorizerSlot,
    /// Streams to process again (their connection's budget has room), and
    /// whether a `process` is draining them.
    retry: VecDeque<StreamId>,
    retrying: bool,
    /// Records for RPC metrics, when asked for (see [`crate::record`]).
    records: Option<VecDeque<RpcRecord>>,
}

/// An optional [`Authorizer`], printable.
#[derive(Default)]
struct AuthorizerSlot(Option<Authorizer>);

impl std::fmt::Debug for AuthorizerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl ServerEndpoint {
    /// An endpoint with no connections.
    pub fn new(config: ServerConfig) -> Self {
        ServerEndpoint {
            config: ServerConfig {
                consumer_queue: config.consumer_queue.max(1),
                snapshot_buffer: config.snapshot_buffer.max(1),
                max_buffered_per_connection: config
                    .max_buffered_per_connection
                    .max(config.call.max_request_len),
                ..config
            },
            closed: false,
            next_conn: 1,
            next_stream: 1,
            conns: BTreeMap::new(),
            streams: BTreeMap::new(),
            consumer: VecDeque::new(),
            blocked: VecDeque::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            authorizer: AuthorizerSlot::default(),
            retry: VecDeque::new(),
            retrying: false,
            records: None,
        }
    }

    /// Asks `authorizer` about every stream opened from now on (`None`:
    /// every call may go on).
    pub fn set_authorizer(&mut self, authorizer: Option<Authorizer>) {
        self.authorizer = AuthorizerSlot(authorizer);
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends heartbeats to the fast path ([`ServerEvent::Heartbeat`]), or
    /// back to the consumer queue. Applies to requests decoded from now on.
    pub fn set_heartbeat_fast_path(&mut self, on: bool) {
        self.config.heartbeat_fast_path = on;
    }

    /// Gives each pipeline stream opened from now on a queue of its own
    /// ([`ServerEvent::PipelineOpened`]), or sends their appends to the
    /// consumer queue.
    pub fn set_pipelines_apart(&mut self, on: bool) {
        self.config.pipelines_apart = on;
    }

    /// Records every call to a method of the service for RPC metrics from
    /// now on (`false`: stops, and drops the records not yet taken); see
    /// [`crate::record`]. Off by default: an endpoint nobody asks for
    /// records keeps none.
    pub fn set_rpc_records(&mut self, on: bool) {
        match (on, self.records.is_some()) {
            (true, false) => self.records = Some(VecDeque::new()),
            (false, true) => self.records = None,
            _ => {}
        }
    }

    /// The next record for RPC metrics (see
    /// [`set_rpc_records`](Self::set_rpc_records)), oldest first.
    pub fn poll_rpc_record(&mut self) -> Option<RpcRecord> {
        self.records.as_mut()?.pop_front()
    }

    /// The next instruction for the driver.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    /// The next news for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (idle, data) = (self.config.idle_timeout, self.config.request_data_timeout);
        let conns = self.conns.values().flat_map(|c| {
            [c.close_deadline(), c.idle_deadline(idle)]
                .into_iter()
                .flatten()
        });
        let streams = self.streams.values().flat_map(|s| {
            [s.call.poll_timeout(), s.data_deadline(data)]
                .into_iter()
                .flatten()
        });
        conns.chain(streams).min()
    }

    /// Whether `stream` is over on the wire (answered and transmitted, or
    /// reset, or its connection gone): the driver drops its handles then.
    pub fn stream_finished(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_none_or(|s| s.call.is_finished())
    }

    /// The method `stream` calls, while the endpoint knows the stream
    /// (`None` for one refused at its head, or forgotten).
    pub fn stream_method(&self, stream: StreamId) -> Option<RpcMethod> {
        self.streams.get(&stream)?.call.method()
    }

    /// Streams open on `conn`.
    pub fn open_streams(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.streams.len())
    }

    /// Requests waiting in the consumer queue.
    pub fn queued_rpcs(&self) -> usize {
        self.consumer.len()
    }

    /// Connections held (refused ones not counted).
    pub fn connections(&self) -> usize {
        self.conns.values().filter(|c| !c.refused).count()
    }

    /// Request bytes held for `conn`'s streams (see
    /// [`ServerConfig::max_buffered_per_connection`]).
    pub fn buffered(&self, conn: ConnId) -> usize {
        self.conns
            .get(&conn)
            .map_or(0, |c| c.held_partial + c.held_decoded)
    }

    // ---- driver inputs ----

    /// A connection was accepted; its HTTP/2 handshake starts. Report
    /// [`handle_handshake_done`](Self::handle_handshake_done) or
    /// [`handle_connection_lost`](Self::handle_connection_lost).
    pub fn handle_connection(&mut self, now: Instant) -> ConnId {
        self.handle_peer_connection(PeerInfo::default(), now)
    }

    /// [`handle_connection`](Self::handle_connection), with what the driver
    /// knows of the peer (its address). A connection beyond
    /// [`ServerConfig::max_connections`] or
    /// [`ServerConfig::max_connections_per_ip`] is refused
    /// ([`ServerOutput::Refuse`]).
    pub fn handle_peer_connection(&mut self, peer: PeerInfo, now: Instant) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let deadline = now.checked_add(self.config.handshake_timeout);
        let ip = peer.remote_addr.map(|a| a.ip());
        let live = self.conns.values().filter(|c| !c.refused);
        let (total, same_ip) = live.fold((0, 0), |(total, same), c| {
            let same_ip = ip.is_some() && c.peer.remote_addr.map(|a| a.ip()) == ip;
            (total + 1, same + usize::from(same_ip))
        });
        let refused = !self.closed
            && (total >= self.config.max_connections
                || same_ip >= self.config.max_connections_per_ip);
        let mut connection = self.new_connection(deadline);
        connection.peer = Arc::new(peer);
        connection.refused = refused;
        self.conns.insert(conn, connection);
        if self.closed {
            self.go_away(conn);
        } else if refused {
            self.outputs.push_back(ServerOutput::Refuse {
                conn,
                error_code: crate::http2::ENHANCE_YOUR_CALM,
            });
        }
        conn
    }

    fn new_connection(&self, handshake_deadline: Option<Instant>) -> Connection {
        let w = self.config.windows;
        Connection {
            peer: Arc::default(),
            streams: BTreeSet::new(),
            handshake_deadline,
            going_away: false,
            refused: false,
            idle_since: None,
            close_at: None,
            windows: WindowTuner::new(w.initial_stream, w.max_stream),
            held_partial: 0,
            held_decoded: 0,
            budget_waiting: Vec::new(),
        }
    }

    /// The driver learned more of the connection's peer (the certificate
    /// chain of its TLS handshake): streams opened from now on carry
    /// `peer`.
    pub fn handle_peer_identity(&mut self, conn: ConnId, peer: PeerInfo) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Arc::new(peer);
        }
    }

    /// The connection's HTTP/2 handshake is done: streams may arrive.
    pub fn handle_handshake_done(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.handshake_deadline = None;
            if c.refused {
                // Its GOAWAY goes out now; a peer that does not read it
                // does not keep the connection either.
                c.close_at = now.checked_add(self.config.handshake_timeout);
            } else if c.streams.is_empty() {
                c.idle_since = Some(now);
            }
        }
    }

    /// A stream opened with this request head. A head that is refused (not
    /// POST, not gRPC, an unknown method, or by the
    /// [authorizer](Self::set_authorizer)), that arrives after
    /// [`close`](Self::close), or on a connection that is refused or that
    /// the endpoint does not know (lost already) is answered at once;
    /// either way the stream's answer comes out of
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn handle_request_head(
        &mut self,
        conn: ConnId,
        head: &http::request::Parts,
        now: Instant,
    ) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        let rejected = |rejection: RequestRejection| ServerCall::rejected(rejection.to_response());
        // A connection the endpoint does not know (never reported, or lost
        // already: a driver's race) serves no stream.
        let (peer, refusal) = match self.conns.get(&conn) {
            Some(c) if c.refused => (
                c.peer.clone(),
                Some(Status::new(
                    Code::ResourceExhausted,
                    "too many connections: this one is refused",
                )),
            ),
            Some(c) => (c.peer.clone(), None),
            None => (
                Arc::default(),
                Some(Status::new(Code::Unavailable, "the connection is closed")),
            ),
        };
        let call = if self.closed {
            ServerCall::rejected(trailers_only(&shutdown_status()))
        } else if let Some(status) = refusal {
            ServerCall::rejected(trailers_only(&status))
        } else {
            match ServerCall::new(head, self.config.call, now) {
                Ok(call) => match (&self.authorizer.0, call.method()) {
                    (Some(authorize), Some(method)) => {
                        let request = AuthorizationRequest {
                            peer: &peer,
                            method,
                            metadata: &head.headers,
                        };
                        match authorize(&request) {
                            Ok(()) => call,
                            Err(status) if status.code() == Code::Ok => {
                                ServerCall::rejected(trailers_only(&Status::new(
                                    Code::PermissionDenied,
                                    status.message(),
                                )))
                            }
                            Err(status) => ServerCall::rejected(trailers_only(&status)),
                        }
                    }
                    _ => call,
                },
                Err(rejection) => rejected(rejection),
            }
        };
        let apart = (self.config.pipelines_apart
            && call.method() == Some(RpcMethod::AppendEntriesPipeline)
            && !call.is_answered())
        .then(|| (VecDeque::new(), false));
        if apart.is_some() {
            self.events
                .push_back(ServerEvent::PipelineOpened { pipeline: id });
        }
        let record = match &mut self.records {
            Some(records) => RpcMethod::from_path(head.uri.path()).ok().map(|method| {
                records.push_back(RpcRecord::Started { method });
                StreamRecord {
                    method,
                    opened: now,
                    received: 0,
                    sent: 0,
                    handled: false,
                }
            }),
            None => None,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.streams.insert(id);
            c.idle_since = None;
            // A call that raced the GOAWAY is served; the close waits.
            c.close_at = None;
        }
        self.streams.insert(
            id,
            Stream {
                conn,
                peer,
                call,
                pending: VecDeque::new(),
                pending_end: false,
                next_seq: 0,
                next_answer: 0,
                early: BTreeMap::new(),
                queued: 0,
                queued_bytes: 0,
                snapshot: None,
                apart,
                transmit_queued: false,
                waiting_since: None,
                held_partial: 0,
                held_decoded: 0,
                record,
            },
        );
        self.process(id, now);
        id
    }

    /// Request DATA arrived on `stream`. Its capacity is released when the
    /// endpoint takes it ([`ServerOutput::ReleaseCapacity`]).
    pub fn handle_data(&mut self, stream: StreamId, data: Bytes, now: Instant) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let conn = s.conn;
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.windows.on_data(data.len(), now) {
                self.outputs.push_back(ServerOutput::Ping { conn });
            }
        }
        s.pending.push_back(data);
        // The client is sending: a wait for its data starts again.
        s.waiting_since = None;
        self.process(stream, now);
    }

    /// The peer answered our PING on `conn`.
    pub fn handle_ping_ack(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(window) = c.windows.on_ping_ack(now) {
            let connection_window = window.max(self.config.windows.initial_connection);
            self.outputs.push_back(ServerOutput::SetWindows {
                conn,
                stream_window: window,
                connection_window,
            });
        }
    }

    /// The client finished sending on `stream` (END_STREAM).
    pub fn handle_end_of_stream(&mut self, stream: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.pending_end = true;
        self.process(stream, now);
    }

    /// The client reset `stream` with this HTTP/2 error code.
    pub fn handle_reset(&mut self, stream: StreamId, error_code: u32, now: Instant) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.call.handle_reset(error_code, now);
        self.process(stream, now);
    }

    /// The connection closed or broke (`detail` says how): its streams
    /// fail with `UNAVAILABLE`.
    pub fn handle_connection_lost(&mut self, conn: ConnId, detail: &str, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for stream in c.streams {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.call.handle_connection_lost(Status::new(
                    Code::Unavailable,
                    format!("connection lost: {detail}"),
                ));
                self.process(stream, now);
            }
        }
    }

    /// Time passed: call deadlines, snapshot stalls, slow handshakes.
    /// Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |d: Option<Instant>| d.is_some_and(|d| now >= d);
        let (idle, data) = (self.config.idle_timeout, self.config.request_data_timeout);
        let late: Vec<(ConnId, &str)> = self
            .conns
            .iter()
            .filter(|(_, c)| due(c.close_deadline()))
            .map(|(id, c)| match c.handshake_deadline {
                Some(_) => (*id, "HTTP/2 handshake timed out"),
                None => (*id, "closed after its GOAWAY"),
            })
            .collect();
        for (conn, detail) in late {
            self.outputs.push_back(ServerOutput::Close { conn });
            self.handle_connection_lost(conn, detail, now);
        }
        let idling: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| due(c.idle_deadline(idle)))
            .map(|(id, _)| *id)
            .collect();
        for conn in idling {
            self.go_away(conn);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.close_at = now.checked_add(self.config.handshake_timeout);
            }
        }
        let silent: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| due(s.data_deadline(data)))
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            if let Some(s) = self.streams.get_mut(&id) {
                s.waiting_since = None;
                s.call.abandon(Status::new(
                    Code::DeadlineExceeded,
                    format!("no request data for {:?}", data.unwrap_or_default()),
                ));
            }
            self.process(id, now);
        }
        let due: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.call.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(s) = self.streams.get_mut(&id) {
                if s.snapshot.as_ref().is_some_and(|b| !b.chunks.is_empty()) {
                    // The reader has data it has not taken: not a stall.
                    s.call.hold_stall(now);
                }
                s.call.handle_timeout(now);
            }
            self.process(id, now);
        }
    }

    /// Bytes of response data `stream` wants to send: how much capacity to
    /// reserve.
    pub fn send_wanted(&self, stream: StreamId) -> usize {
        self.streams
            .get(&stream)
            .map_or(0, |s| s.call.send_wanted())
    }

    /// Whether `stream` has something to put on the wire now (its head,
    /// data or trailers): what a driver that serves many streams from one
    /// poll checks before it polls that stream again.
    pub fn has_transmit(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|s| s.call.has_transmit())
    }

    /// The next thing to put on `stream`, using at most `capacity` bytes of
    /// send window for data.
    pub fn poll_transmit(
        &mut self,
        stream: StreamId,
        capacity: usize,
        now: Instant,
    ) -> Option<ServerTransmit> {
        let s = self.streams.get_mut(&stream)?;
        s.transmit_queued = false;
        let wanted = s.call.wants_data();
        let transmit = s.call.poll_transmit(capacity);
        // Finished, or answers drained below the unsent bound: the stream
        // goes on (its pending data is taken, its timers follow). Answers
        // that left make room in the connection's budget.
        if s.call.is_finished() || (!wanted && s.call.wants_data()) {
            self.process(stream, now);
        } else if matches!(transmit, Some(ServerTransmit::Data(_))) && s.held_decoded > 0 {
            self.account(stream);
            self.process_retries(now);
        }
        transmit
    }

    // ---- application commands ----

    /// Takes the next request for the consumer: from now on it is
    /// delivered, and must be answered with [`respond`](Self::respond).
    pub fn poll_rpc(&mut self, now: Instant) -> Option<IncomingRpc> {
        let (rpc, bytes) = self.consumer.pop_front()?;
        if let Some(s) = self.streams.get_mut(&rpc.id.stream) {
            s.queued -= 1;
            s.queued_bytes -= bytes;
        }
        self.process(rpc.id.stream, now);
        // Room: the streams that waited for it go on, oldest first.
        while self.consumer.len() < self.config.consumer_queue {
            let Some(blocked) = self.blocked.pop_front() else {
                break;
            };
            self.process(blocked, now);
        }
        Some(rpc)
    }

    /// Takes the next append of a pipeline that goes apart.
    pub fn poll_pipeline_rpc(&mut self, pipeline: StreamId, now: Instant) -> PipelineRead {
        let Some(s) = self.streams.get_mut(&pipeline) else {
            return PipelineRead::Ended;
        };
        let Some((queue, ended)) = &mut s.apart else {
            return PipelineRead::Ended;
        };
        match queue.pop_front() {
            Some((rpc, bytes)) => {
                s.queued -= 1;
                s.queued_bytes -= bytes;
                self.process(pipeline, now);
                PipelineRead::Rpc(rpc)
            }
            None if *ended => PipelineRead::Ended,
            None => PipelineRead::Pending,
        }
    }

    /// The application gave up a pipeline that goes apart (it dropped its
    /// handle): the stream ends with `UNAVAILABLE`.
    pub fn drop_pipeline(&mut self, pipeline: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(&pipeline) else {
            return;
        };
        if let Some((queue, ended)) = &mut s.apart {
            s.queued -= queue.len();
            s.queued_bytes -= queue.iter().map(|(_, bytes)| bytes).sum::<usize>();
            queue.clear();
            *ended = true;
        }
        let _ = s.call.respond_error(Status::new(
            Code::Unavailable,
            "the pipeline handler dropped this stream",
        ));
        self.process(pipeline, now);
    }

    /// The next piece of an incoming snapshot's data, for the reader of the
    /// InstallSnapshot request `id`.
    pub fn read_snapshot(&mut self, id: RequestId, now: Instant) -> SnapshotRead {
        let Some(s) = self.streams.get_mut(&id.stream) else {
            return SnapshotRead::Failed(Status::new(
                Code::Unavailable,
                "the snapshot stream is gone",
            ));
        };
        let Some(buffer) = s.snapshot.as_mut().filter(|b| b.seq == id.seq) else {
            return SnapshotRead::Failed(Status::new(
                Code::FailedPrecondition,
                "not an InstallSnapshot request",
            ));
        };
        if let Some(chunk) = buffer.chunks.pop_front() {
            buffer.bytes -= chunk.len();
            // Room for more: the stream goes on.
            self.process(id.stream, now);
            return SnapshotRead::Data(chunk);
        }
        let read = if let Some(status) = &buffer.failed {
            SnapshotRead::Failed(status.clone())
        } else if buffer.end {
            SnapshotRead::End
        } else {
            return SnapshotRead::Pending;
        };
        buffer.done = true;
        self.process(id.stream, now);
        read
    }

    /// The reader of the InstallSnapshot request `id` is gone: the rest of
    /// the data is dropped as it arrives (the request still needs its
    /// answer).
    pub fn release_snapshot(&mut self, id: RequestId, now: Instant) {
        let Some(s) = self.streams.get_mut(&id.stream) else {
            return;
        };
        if let Some(buffer) = s.snapshot.as_mut().filter(|b| b.seq == id.seq) {
            buffer.reader_gone = true;
            buffer.chunks.clear();
            buffer.bytes = 0;
        }
        self.process(id.stream, now);
    }

    /// Answers the request `id` (an error's message reaches the caller as
    /// text). Pipeline requests may be answered in any order: answers go
    /// out in request order, and an error ends the stream with its status.
    pub fn respond(
        &mut self,
        id: RequestId,
        result: Result<RaftResponse, Status>,
        now: Instant,
    ) -> Result<(), RespondError> {
        let Some(s) = self.streams.get_mut(&id.stream) else {
            return Err(RespondError::Finished(Status::new(
                Code::Unavailable,
                "the call is over",
            )));
        };
        if s.call.is_answered() {
            return Err(RespondError::Finished(
                s.call.final_status().unwrap_or_else(Status::ok),
            ));
        }
        if id.seq >= s.next_seq {
            return Err(RespondError::NothingToAnswer);
        }
        if id.seq < s.next_answer || s.early.contains_key(&id.seq) {
            return Err(RespondError::AlreadyAnswered);
        }
        if let (Ok(response), Some(method)) = (&result, s.call.method()) {
            if !response.answers(method) {
                return Err(RespondError::WrongType(
                    response.proto_name(),
                    method.name(),
                ));
            }
        }
        s.early.insert(id.seq, result);
        let mut outcome = Ok(());
        while let Some(result) = s.early.remove(&s.next_answer) {
            s.next_answer += 1;
            let answered = match result {
                Ok(response) => s.call.respond(response),
                Err(status) => s.call.respond_error(status),
            };
            if answered.is_err() {
                outcome = answered;
                s.early.clear();
                break;
            }
        }
        self.process(id.stream, now);
        outcome
    }

    /// Shuts the endpoint down: every request it holds, delivered or not,
    /// is answered with `UNAVAILABLE` ("transport shut down"); the readers
    /// of incoming snapshots get that error; every connection gets GOAWAY;
    /// later streams are refused. Idempotent.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                let _ = s.call.respond_error(shutdown_status());
                if let Some((_, ended)) = &mut s.apart {
                    *ended = true;
                    self.events
                        .push_back(ServerEvent::PipelineReady { pipeline: id });
                }
                if let Some(buffer) = &mut s.snapshot {
                    buffer.failed.get_or_insert_with(shutdown_status);
                    self.events.push_back(ServerEvent::SnapshotReady {
                        id: RequestId {
                            stream: id,
                            seq: buffer.seq,
                        },
                    });
                }
            }
            self.drop_queued(id);
            self.process(id, now);
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.go_away(conn);
        }
    }

    // ---- internals ----

    fn go_away(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.going_away {
                c.going_away = true;
                self.outputs.push_back(ServerOutput::GoAway { conn });
            }
        }
    }

    /// Removes a stream's requests from the queues: they will never be
    /// delivered.
    fn drop_queued(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.queued == 0 {
            return;
        }
        self.consumer.retain(|(rpc, _)| rpc.id.stream != id);
        if let Some((queue, _)) = &mut s.apart {
            queue.clear();
        }
        s.queued = 0;
        s.queued_bytes = 0;
    }

    /// Feeds a stream's pending data to its call, moves what the call
    /// decoded to where it goes, and queues what the driver must do; then
    /// the same for the streams its progress let go on (see
    /// [`ServerConfig::max_buffered_per_connection`]).
    fn process(&mut self, id: StreamId, now: Instant) {
        self.process_stream(id, now);
        self.process_retries(now);
    }

    /// Processes the streams that waited for room in their connection's
    /// budget and have it now.
    fn process_retries(&mut self, now: Instant) {
        if self.retrying {
            return;
        }
        self.retrying = true;
        while let Some(next) = self.retry.pop_front() {
            self.process_stream(next, now);
        }
        self.retrying = false;
    }

    fn process_stream(&mut self, id: StreamId, now: Instant) {
        let budget = self.config.max_buffered_per_connection;
        let mut released = 0;
        loop {
            let Some(s) = self.streams.get_mut(&id) else {
                return;
            };
            if s.call.is_answered() {
                // Nothing more is read: what arrives is dropped and its
                // capacity given back; what waits in a queue can never be
                // answered, so it is never delivered.
                released += s.pending.drain(..).map(|d| d.len()).sum::<usize>();
                if let Some((_, ended @ false)) = &mut s.apart {
                    *ended = true;
                    self.events
                        .push_back(ServerEvent::PipelineReady { pipeline: id });
                }
                if s.queued > 0 {
                    self.drop_queued(id);
                    self.blocked.retain(|b| *b != id);
                    continue;
                }
            }
            while s.call.wants_data() && !s.pending.is_empty() {
                if let Some(c) = self.conns.get_mut(&s.conn) {
                    // The connection's count, with this stream's as it is now.
                    let partial = c.held_partial.saturating_sub(s.held_partial)
                        + s.call.partial_request_len();
                    let decoded = c.held_decoded.saturating_sub(s.held_decoded) + s.decoded_len();
                    let next = s.pending.front().map_or(0, Bytes::len);
                    if partial + decoded + next > budget {
                        if decoded > 0 {
                            // Queued requests and chunks drain: wait for them.
                            if !c.budget_waiting.contains(&id) {
                                c.budget_waiting.push(id);
                            }
                        } else {
                            // Only incomplete messages fill it: nothing would.
                            s.call.abandon(Status::new(
                                Code::ResourceExhausted,
                                format!(
                                    "request data buffered for this connection is over its \
                                     budget of {budget} bytes"
                                ),
                            ));
                        }
                        break;
                    }
                }
                let Some(data) = s.pending.pop_front() else {
                    break;
                };
                released += data.len();
                s.call.handle_data(data, now);
            }
            if s.pending.is_empty() && s.pending_end && s.call.wants_data() {
                s.pending_end = false;
                s.call.handle_end_of_stream(now);
            }
            if !self.route_events(id) {
                break;
            }
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let conn = s.conn;
        // A wait for the client's data starts when the stream owes some
        // and has taken all that came.
        if s.pending.is_empty() && s.call.awaits_request_data() {
            s.waiting_since.get_or_insert(now);
        } else {
            s.waiting_since = None;
        }
        self.account(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if released > 0 {
            self.outputs.push_back(ServerOutput::ReleaseCapacity {
                conn,
                stream: id,
                bytes: released,
            });
        }
        if s.call.has_transmit() && !s.transmit_queued {
            s.transmit_queued = true;
            self.outputs
                .push_back(ServerOutput::Transmit { conn, stream: id });
        }
        note_progress(&mut self.records, s, now);
        // A reader that has not seen how its snapshot ended keeps the
        // record (not the stream) alive until it does, or goes.
        let reader_waits = s
            .snapshot
            .as_ref()
            .is_some_and(|b| !b.done && !b.reader_gone);
        if s.call.is_finished() && s.queued == 0 && !reader_waits {
            self.forget(id, now);
        }
    }

    /// Brings the stream's part of its connection's budget count up to
    /// date; when decoded data drained, the streams that waited for room
    /// are processed again.
    fn account(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let (partial, decoded) = (s.call.partial_request_len(), s.decoded_len());
        let Some(c) = self.conns.get_mut(&s.conn) else {
            // Its connection is gone: nothing counts any more.
            (s.held_partial, s.held_decoded) = (0, 0);
            return;
        };
        c.held_partial = c.held_partial.saturating_sub(s.held_partial) + partial;
        let drained = decoded < s.held_decoded;
        c.held_decoded = c.held_decoded.saturating_sub(s.held_decoded) + decoded;
        (s.held_partial, s.held_decoded) = (partial, decoded);
        if drained
            && !c.budget_waiting.is_empty()
            && c.held_partial + c.held_decoded < self.config.max_buffered_per_connection
        {
            self.retry.extend(c.budget_waiting.drain(..));
        }
    }

    /// Moves the call's decoded events to where they go. Returns whether
    /// anything moved (so more data may be fed).
    fn route_events(&mut self, id: StreamId) -> bool {
        let mut moved = false;
        loop {
            let Some(s) = self.streams.get_mut(&id) else {
                return moved;
            };
            let Some(event) = s.call.peek_event() else {
                return moved;
            };
            match event {
                CallEvent::Request(request) => {
                    let fast = self.config.heartbeat_fast_path
                        && matches!(request, RaftRequest::AppendEntries(r) if is_heartbeat(r));
                    let request_id = RequestId {
                        stream: id,
                        seq: s.next_seq,
                    };
                    if fast {
                        let Some(CallEvent::Request(RaftRequest::AppendEntries(request))) =
                            s.call.poll_event()
                        else {
                            unreachable!("peeked a heartbeat");
                        };
                        s.next_seq += 1;
                        self.events.push_back(ServerEvent::Heartbeat {
                            id: request_id,
                            request,
                            peer: s.peer.clone(),
                        });
                    } else if let Some((queue, _)) = &mut s.apart {
                        if queue.len() >= self.config.consumer_queue {
                            return moved;
                        }
                        let Some(CallEvent::Request(request)) = s.call.poll_event() else {
                            unreachable!("peeked a request");
                        };
                        s.next_seq += 1;
                        s.queued += 1;
                        let bytes = request.encoded_len();
                        s.queued_bytes += bytes;
                        let rpc = IncomingRpc {
                            id: request_id,
                            request,
                            peer: s.peer.clone(),
                        };
                        queue.push_back((rpc, bytes));
                        self.events
                            .push_back(ServerEvent::PipelineReady { pipeline: id });
                    } else {
                        if self.consumer.len() >= self.config.consumer_queue {
                            if !self.blocked.contains(&id) {
                                self.blocked.push_back(id);
                            }
                            return moved;
                        }
                        let Some(CallEvent::Request(request)) = s.call.poll_event() else {
                            unreachable!("peeked a request");
                        };
                        if matches!(request, RaftRequest::InstallSnapshot(_)) {
                            s.snapshot = Some(SnapshotBuffer {
                                seq: request_id.seq,
                                chunks: VecDeque::new(),
                                bytes: 0,
                                end: false,
                                failed: None,
                                done: false,
                                reader_gone: false,
                            });
                        }
                        s.next_seq += 1;
                        s.queued += 1;
                        let bytes = request.encoded_len();
                        s.queued_bytes += bytes;
                        let rpc = IncomingRpc {
                            id: request_id,
                            request,
                            peer: s.peer.clone(),
                        };
                        self.consumer.push_back((rpc, bytes));
                        self.events.push_back(ServerEvent::RpcQueued);
                    }
                }
                CallEvent::SnapshotData(_) => {
                    let Some(buffer) = &mut s.snapshot else {
                        // No reader (cannot happen: the request comes
                        // first); drop the data.
                        s.call.poll_event();
                        moved = true;
                        continue;
                    };
                    if buffer.reader_gone {
                        s.call.poll_event();
                        moved = true;
                        continue;
                    }
                    if buffer.chunks.len() >= self.config.snapshot_buffer {
                        return moved;
                    }
                    let Some(CallEvent::SnapshotData(data)) = s.call.poll_event() else {
                        unreachable!("peeked snapshot data");
                    };
                    buffer.bytes += data.len();
                    buffer.chunks.push_back(data);
                    let id = RequestId {
                        stream: id,
                        seq: buffer.seq,
                    };
                    self.events.push_back(ServerEvent::SnapshotReady { id });
                }
                CallEvent::SnapshotEnd => {
                    s.call.poll_event();
                    if let Some(buffer) = &mut s.snapshot {
                        buffer.end = true;
                        let id = RequestId {
                            stream: id,
                            seq: buffer.seq,
                        };
                        self.events.push_back(ServerEvent::SnapshotReady { id });
                    }
                }
                CallEvent::Failed(status) => {
                    let status = status.clone();
                    s.call.poll_event();
                    if let Some(buffer) = &mut s.snapshot {
                        buffer.failed.get_or_insert(status);
                        let id = RequestId {
                            stream: id,
                            seq: buffer.seq,
                        };
                        self.events.push_back(ServerEvent::SnapshotReady { id });
                    }
                    if let Some((_, ended)) = &mut s.apart {
                        *ended = true;
                        self.events
                            .push_back(ServerEvent::PipelineReady { pipeline: id });
                    }
                    // Never delivered late.
                    self.drop_queued(id);
                    self.blocked.retain(|b| *b != id);
                }
            }
            moved = true;
        }
    }

    /// Forgets a stream that is over.
    fn forget(&mut self, id: StreamId, now: Instant) {
        if let Some(mut s) = self.streams.remove(&id) {
            note_progress(&mut self.records, &mut s, now);
            if let (Some(records), Some(r)) = (&mut self.records, &s.record) {
                if !r.handled {
                    // Cannot happen: a stream is forgotten once its call is
                    // finished, with its status decided.
                    records.push_back(RpcRecord::Handled {
                        method: r.method,
                        code: Code::Unknown,
                        duration: now.saturating_duration_since(r.opened),
                    });
                }
            }
            if let Some(c) = self.conns.get_mut(&s.conn) {
                c.streams.remove(&id);
                c.held_partial = c.held_partial.saturating_sub(s.held_partial);
                c.held_decoded = c.held_decoded.saturating_sub(s.held_decoded);
                c.budget_waiting.retain(|w| *w != id);
                if c.streams.is_empty() && c.handshake_deadline.is_none() {
                    if c.going_away || c.refused {
                        // Its last call is done: the peer has the grace
                        // period to leave.
                        c.close_at = now.checked_add(self.config.handshake_timeout);
                    } else {
                        c.idle_since = Some(now);
                    }
                }
                if s.held_decoded > 0 && !c.budget_waiting.is_empty() {
                    self.retry.extend(c.budget_waiting.drain(..));
                }
            }
        }
        self.blocked.retain(|b| *b != id);
    }
}

/// Records what `s` did since its last record: messages in and out, and
/// its status once it is decided (see [`crate::record`]).
fn note_progress(records: &mut Option<VecDeque<RpcRecord>>, s: &mut Stream, now: Instant) {
    let (Some(records), Some(r)) = (records.as_mut(), s.record.as_mut()) else {
        return;
    };
    let (received, sent) = (s.call.messages_received(), s.call.messages_sent());
    if received > r.received || sent > r.sent {
        records.push_back(RpcRecord::Messages {
            method: r.method,
            received: received - r.received,
            sent: sent - r.sent,
        });
        (r.received, r.sent) = (received, sent);
    }
    if !r.handled {
        if let Some(code) = s.call.final_code() {
            r.handled = true;
            records.push_back(RpcRecord::Handled {
                method: r.method,
                code,
                duration: now.saturating_duration_since(r.opened),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::uri::Authority;

    use super::*;
    use crate::framing::MessageEncoder;
    use crate::head::RequestHead;
    use crate::message::*;
    use crate::snapshot::SnapshotSender;

    fn endpoint(config: ServerConfig) -> (ServerEndpoint, ConnId, Instant) {
        let now = Instant::now();
        let mut server = ServerEndpoint::new(config);
        let conn = server.handle_connection(now);
        server.handle_handshake_done(conn, now);
        (server, conn, now)
    }

    fn open(
        server: &mut ServerEndpoint,
        conn: ConnId,
        method: RpcMethod,
        timeout: Option<Duration>,
        now: Instant,
    ) -> StreamId {
        let head = RequestHead {
            method,
            authority: Authority::from_static("me"),
            timeout,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        server.handle_request_head(conn, &head.to_request().into_parts().0, now)
    }

    fn framed<M: RaftMessage>(message: &M) -> Bytes {
        MessageEncoder::new(usize::MAX, usize::MAX)
            .encode(message)
            .unwrap()
            .to_bytes()
    }

    fn vote(term: u64) -> Bytes {
        framed(&RequestVoteRequest {
            term,
            ..Default::default()
        })
    }

    fn append(index: u64) -> AppendEntriesRequest {
        AppendEntriesRequest {
            header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
            term: 1,
            prev_log_entry: index - 1,
            entries: vec![Log::command(index, 1, Bytes::from_static(b"x"))],
            ..Default::default()
        }
    }

    fn heartbeat() -> AppendEntriesRequest {
        AppendEntriesRequest {
            header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
            term: 4,
            ..Default::default()
        }
    }

    /// Everything the driver is asked to do, in order.
    fn outputs(server: &mut ServerEndpoint) -> Vec<ServerOutput> {
        std::iter::from_fn(|| server.poll_output()).collect()
    }

    fn events(server: &mut ServerEndpoint) -> Vec<ServerEvent> {
        std::iter::from_fn(|| server.poll_event()).collect()
    }

    #[test]
    fn has_transmit_follows_what_poll_transmit_would_give() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let id = open(&mut server, conn, RpcMethod::RequestVote, None, now);
        assert!(!server.has_transmit(id), "nothing to say before a request");
        server.handle_data(id, vote(2), now);
        server.handle_end_of_stream(id, now);
        let rpc = server.poll_rpc(now).unwrap();
        assert!(!server.has_transmit(id), "nothing until it is answered");
        let answer = RaftResponse::RequestVote(RequestVoteResponse {
            term: 2,
            granted: true,
            ..Default::default()
        });
        server.respond(rpc.id, Ok(answer), now).unwrap();
        assert!(server.has_transmit(id));
        while server.poll_transmit(id, usize::MAX, now).is_some() {}
        assert!(!server.has_transmit(id), "all out");
        assert!(
            !server.has_transmit(StreamId(999)),
            "an unknown stream has nothing"
        );
    }

    /// Bytes released on `stream` by these outputs.
    fn released(outputs: &[ServerOutput], stream: StreamId) -> usize {
        outputs
            .iter()
            .map(|o| match o {
                ServerOutput::ReleaseCapacity {
                    stream: s, bytes, ..
                } if *s == stream => *bytes,
                _ => 0,
            })
            .sum()
    }

    /// What `stream` puts on the wire: the response messages' bodies and
    /// the status (from the trailers or a Trailers-Only head).
    fn wire(
        server: &mut ServerEndpoint,
        stream: StreamId,
        now: Instant,
    ) -> (Vec<u8>, Option<Status>) {
        let (mut data, mut status) = (Vec::new(), None);
        while let Some(t) = server.poll_transmit(stream, usize::MAX, now) {
            match t {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => {
                    if end_of_stream {
                        status = Status::from_headers(head.headers());
                    }
                }
                ServerTransmit::Data(d) => data.extend_from_slice(&d),
                ServerTransmit::Trailers(t) => status = Some(Status::from_trailers(&t)),
            }
        }
        (data, status)
    }

    fn unary_vote(server: &mut ServerEndpoint, conn: ConnId, term: u64, now: Instant) -> StreamId {
        let stream = open(
            server,
            conn,
            RpcMethod::RequestVote,
            Some(Duration::from_secs(10)),
            now,
        );
        server.handle_data(stream, vote(term), now);
        server.handle_end_of_stream(stream, now);
        stream
    }

    fn granted(term: u64) -> Result<RaftResponse, Status> {
        Ok(RaftResponse::RequestVote(RequestVoteResponse {
            term,
            granted: true,
            ..Default::default()
        }))
    }

    #[test]
    fn rpcs_carry_their_connections_peer_and_the_authorizer_refuses_before_the_consumer() {
        let now = Instant::now();
        let mut server = ServerEndpoint::new(ServerConfig::default());
        let addr: SocketAddr = "10.0.0.2:51234".parse().unwrap();
        let conn = server.handle_peer_connection(PeerInfo::new(Some(addr)), now);
        server.handle_handshake_done(conn, now);
        // TLS told the driver who the peer is.
        let chain = vec![Bytes::from_static(b"leaf"), Bytes::from_static(b"ca")];
        server.handle_peer_identity(
            conn,
            PeerInfo::new(Some(addr)).with_certificates(chain.clone()),
        );
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        server.set_authorizer(Some(Arc::new(move |request: &AuthorizationRequest<'_>| {
            log.lock()
                .unwrap()
                .push((request.method, request.peer.certificates.len()));
            match request.method {
                RpcMethod::TimeoutNow => Err(Status::new(Code::PermissionDenied, "no transfers")),
                RpcMethod::RequestPreVote => Err(Status::ok()),
                _ => Ok(()),
            }
        })));

        let allowed = unary_vote(&mut server, conn, 4, now);
        let denied = open(&mut server, conn, RpcMethod::TimeoutNow, None, now);
        server.handle_data(
            denied,
            framed(&crate::message::TimeoutNowRequest::default()),
            now,
        );
        server.handle_end_of_stream(denied, now);
        let denied_ok = open(&mut server, conn, RpcMethod::RequestPreVote, None, now);

        let rpc = server.poll_rpc(now).expect("the allowed vote");
        assert_eq!(rpc.peer.remote_addr, Some(addr));
        assert_eq!(rpc.peer.certificates, chain);
        assert!(
            server.poll_rpc(now).is_none(),
            "refused calls never reach the consumer"
        );
        server.respond(rpc.id, granted(4), now).unwrap();
        assert_eq!(wire(&mut server, allowed, now).1, Some(Status::ok()));
        assert_eq!(
            wire(&mut server, denied, now).1,
            Some(Status::new(Code::PermissionDenied, "no transfers"))
        );
        assert_eq!(
            wire(&mut server, denied_ok, now).1.map(|s| s.code()),
            Some(Code::PermissionDenied),
            "an OK refusal is a refusal"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (RpcMethod::RequestVote, 2),
                (RpcMethod::TimeoutNow, 2),
                (RpcMethod::RequestPreVote, 2)
            ],
            "once per stream"
        );
    }

    fn records(server: &mut ServerEndpoint) -> Vec<RpcRecord> {
        std::iter::from_fn(|| server.poll_rpc_record()).collect()
    }

    /// The records, with durations left out (they are checked apart).
    fn counted(server: &mut ServerEndpoint) -> Vec<(RpcMethod, &'static str, u64, u64)> {
        records(server)
            .into_iter()
            .map(|r| match r {
                RpcRecord::Started { method } => (method, "started", 0, 0),
                RpcRecord::Messages {
                    method,
                    received,
                    sent,
                } => (method, "messages", received, sent),
                RpcRecord::Handled { method, code, .. } => (method, code.as_str(), 0, 0),
            })
            .collect()
    }

    #[test]
    fn rpc_records_count_calls_messages_and_codes_of_the_services_methods_only() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        // Off by default: nothing is kept.
        let stream = unary_vote(&mut server, conn, 1, now);
        let rpc = server.poll_rpc(now).unwrap();
        server.respond(rpc.id, granted(1), now).unwrap();
        wire(&mut server, stream, now);
        assert_eq!(server.poll_rpc_record(), None);

        server.set_rpc_records(true);
        server.set_authorizer(Some(Arc::new(
            |request: &AuthorizationRequest<'_>| match request.method {
                RpcMethod::TimeoutNow => Err(Status::new(Code::PermissionDenied, "no transfers")),
                _ => Ok(()),
            },
        )));
        // A vote answered 250 ms after its head.
        let stream = unary_vote(&mut server, conn, 2, now);
        let rpc = server.poll_rpc(now).unwrap();
        let later = now + Duration::from_millis(250);
        server.respond(rpc.id, granted(2), later).unwrap();
        assert_eq!(wire(&mut server, stream, later).1, Some(Status::ok()));
        let got = records(&mut server);
        let (handled, rest) = got.split_last().unwrap();
        assert_eq!(
            *handled,
            RpcRecord::Handled {
                method: RpcMethod::RequestVote,
                code: Code::Ok,
                duration: Duration::from_millis(250),
            }
        );
        assert_eq!(
            rest[0],
            RpcRecord::Started {
                method: RpcMethod::RequestVote
            }
        );
        let messages = rest[1..]
            .iter()
            .map(|r| match r {
                RpcRecord::Messages { received, sent, .. } => (*received, *sent),
                other => panic!("only messages between start and end: {other:?}"),
            })
            .fold((0, 0), |(r, s), (a, b)| (r + a, s + b));
        assert_eq!(messages, (1, 1), "one message each way");
        // Refused by the authorizer: started and handled at once.
        open(&mut server, conn, RpcMethod::TimeoutNow, None, now);
        assert_eq!(
            counted(&mut server),
            vec![
                (RpcMethod::TimeoutNow, "started", 0, 0),
                (RpcMethod::TimeoutNow, "PERMISSION_DENIED", 0, 0)
            ]
        );
        // A path that names no method of the service makes no record.
        let mut head = RequestHead::new(RpcMethod::RequestVote, Authority::from_static("me"), None)
            .to_request()
            .into_parts()
            .0;
        head.uri = "/proto.raft.v1.RaftTransportService/Nope".parse().unwrap();
        let unknown = server.handle_request_head(conn, &head, now);
        assert_eq!(
            wire(&mut server, unknown, now).1.map(|s| s.code()),
            Some(Code::Unimplemented)
        );
        assert_eq!(server.poll_rpc_record(), None);
        // A pipeline: each append's messages as they go, then its end.
        let pipeline = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        for index in 1..=3 {
            server.handle_data(pipeline, framed(&append(index)), now);
        }
        let mut answered = 0;
        while let Some(rpc) = server.poll_rpc(now) {
            let answer = AppendEntriesResponse {
                term: 1,
                success: true,
                ..Default::default()
            };
            server
                .respond(rpc.id, Ok(RaftResponse::AppendEntries(answer)), now)
                .unwrap();
            answered += 1;
        }
        assert_eq!(answered, 3);
        let before_end = counted(&mut server);
        assert_eq!(
            before_end[0],
            (RpcMethod::AppendEntriesPipeline, "started", 0, 0)
        );
        let totals = before_end[1..].iter().fold((0, 0), |(r, s), m| {
            assert_eq!(
                m.1, "messages",
                "not handled before its end: {before_end:?}"
            );
            (r + m.2, s + m.3)
        });
        assert_eq!(totals, (3, 3));
        server.handle_end_of_stream(pipeline, now);
        wire(&mut server, pipeline, now);
        assert_eq!(
            counted(&mut server),
            vec![(RpcMethod::AppendEntriesPipeline, "OK", 0, 0)]
        );
        // A lost connection decides the status of the calls on it.
        open(&mut server, conn, RpcMethod::InstallSnapshot, None, now);
        server.handle_connection_lost(conn, "reset", now);
        assert_eq!(
            counted(&mut server),
            vec![
                (RpcMethod::InstallSnapshot, "started", 0, 0),
                (RpcMethod::InstallSnapshot, "UNAVAILABLE", 0, 0)
            ]
        );
        server.set_rpc_records(false);
        assert_eq!(server.poll_rpc_record(), None);
    }

    #[test]
    fn a_pipeline_sends_its_response_head_before_any_answer() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let pipeline = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        assert!(
            outputs(&mut server).contains(&ServerOutput::Transmit {
                conn,
                stream: pipeline
            }),
            "a transmit is wanted at once"
        );
        let Some(ServerTransmit::Head {
            head,
            end_of_stream: false,
        }) = server.poll_transmit(pipeline, 65_535, now)
        else {
            panic!("the response head first")
        };
        assert_eq!(head.status(), http::StatusCode::OK);
        assert!(
            Status::from_headers(head.headers()).is_none(),
            "not Trailers-Only"
        );
        assert!(server.poll_transmit(pipeline, 65_535, now).is_none());
        // A unary call still waits for its answer (or Trailers-Only).
        let vote = open(&mut server, conn, RpcMethod::RequestVote, None, now);
        assert!(!server.has_transmit(vote));
    }

    #[test]
    fn the_consumer_queue_is_bounded_and_streams_wait_their_turn() {
        let (mut server, conn, now) = endpoint(ServerConfig {
            consumer_queue: 2,
            ..ServerConfig::default()
        });
        let streams: Vec<StreamId> = (1..=4)
            .map(|t| unary_vote(&mut server, conn, t, now))
            .collect();
        assert_eq!(server.queued_rpcs(), 2);
        let queued = events(&mut server)
            .iter()
            .filter(|e| **e == ServerEvent::RpcQueued)
            .count();
        assert_eq!(queued, 2);
        // Taking one lets the oldest waiting stream in.
        let mut terms = Vec::new();
        while let Some(rpc) = server.poll_rpc(now) {
            let RaftRequest::RequestVote(r) = &rpc.request else {
                panic!()
            };
            terms.push(r.term);
            server.respond(rpc.id, granted(r.term), now).unwrap();
        }
        assert_eq!(terms, vec![1, 2, 3, 4], "in arrival order");
        for stream in streams {
            assert_eq!(wire(&mut server, stream, now).1, Some(Status::ok()));
            assert!(server.stream_finished(stream));
        }
    }

    #[test]
    fn a_pipeline_is_held_back_by_flow_control_while_the_queue_is_full() {
        let (mut server, conn, now) = endpoint(ServerConfig {
            consumer_queue: 2,
            ..ServerConfig::default()
        });
        let stream = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        let messages: Vec<Bytes> = (1..=6).map(|i| framed(&append(i))).collect();
        let three: usize = messages[..3].iter().map(Bytes::len).sum();
        for m in &messages {
            server.handle_data(stream, m.clone(), now);
        }
        // Two queued, the third decoded and waiting in its call; the rest
        // is not released, so the peer's window stays spent.
        assert_eq!(server.queued_rpcs(), 2);
        assert_eq!(released(&outputs(&mut server), stream), three);
        let mut ids = Vec::new();
        while let Some(rpc) = server.poll_rpc(now) {
            ids.push(rpc.id);
        }
        let rest: usize = messages[3..].iter().map(Bytes::len).sum();
        assert_eq!(released(&outputs(&mut server), stream), rest);
        assert_eq!(ids.len(), 6);
        // Answered backwards: they go out in request order.
        for id in ids.iter().rev() {
            let response = AppendEntriesResponse {
                last_log: id.seq + 1,
                success: true,
                ..Default::default()
            };
            server
                .respond(*id, Ok(RaftResponse::AppendEntries(response)), now)
                .unwrap();
        }
        server.handle_end_of_stream(stream, now);
        let (data, status) = wire(&mut server, stream, now);
        assert_eq!(status, Some(Status::ok()));
        let mut decoder = crate::framing::MessageDecoder::new(usize::MAX);
        decoder.push(Bytes::from(data));
        let mut order = Vec::new();
        while let Some(body) = decoder.next_message().unwrap() {
            order.push(AppendEntriesResponse::decode(body).unwrap().last_log);
        }
        assert_eq!(order, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_request_whose_caller_gave_up_is_never_delivered() {
        let (mut server, conn, now) = endpoint(ServerConfig {
            consumer_queue: 1,
            ..ServerConfig::default()
        });
        let first = unary_vote(&mut server, conn, 1, now);
        // Waits for room: its deadline passes.
        let late = open(
            &mut server,
            conn,
            RpcMethod::RequestVote,
            Some(Duration::from_secs(1)),
            now,
        );
        server.handle_data(late, vote(2), now);
        // Queued behind nothing, then reset by its caller.
        let reset = open(&mut server, conn, RpcMethod::RequestVote, None, now);
        server.handle_data(reset, vote(3), now);
        server.handle_reset(reset, crate::http2::CANCEL, now);
        let later = now + Duration::from_secs(2);
        assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(1)));
        server.handle_timeout(later);
        assert_eq!(
            wire(&mut server, late, later).1.unwrap().code(),
            Code::DeadlineExceeded
        );
        let rpc = server.poll_rpc(later).unwrap();
        assert_eq!(rpc.id.stream, first);
        assert_eq!(
            server.poll_rpc(later),
            None,
            "neither of the others arrives"
        );
        assert!(server.stream_finished(reset));
    }

    #[test]
    fn close_answers_everything_with_the_shutdown_status() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let delivered = unary_vote(&mut server, conn, 1, now);
        let queued = unary_vote(&mut server, conn, 2, now);
        let rpc = server.poll_rpc(now).unwrap();
        assert_eq!(rpc.id.stream, delivered);
        server.close(now);
        assert!(outputs(&mut server).contains(&ServerOutput::GoAway { conn }));
        for stream in [delivered, queued] {
            assert_eq!(wire(&mut server, stream, now).1, Some(shutdown_status()));
        }
        assert_eq!(server.poll_rpc(now), None);
        assert!(matches!(
            server.respond(rpc.id, granted(1), now),
            Err(RespondError::Finished(_))
        ));
        // A stream that arrives later is refused the same way.
        let late = unary_vote(&mut server, conn, 3, now);
        assert_eq!(wire(&mut server, late, now).1, Some(shutdown_status()));
        let _ = outputs(&mut server);
        // A connection accepted later is sent away at once.
        let conn2 = server.handle_connection(now);
        assert_eq!(
            outputs(&mut server),
            vec![ServerOutput::GoAway { conn: conn2 }]
        );
        server.close(now);
        assert_eq!(outputs(&mut server), vec![], "idempotent");
    }

    #[test]
    fn heartbeats_take_the_fast_path_only_when_it_is_on() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let send = |server: &mut ServerEndpoint, request: &AppendEntriesRequest| {
            let s = open(server, conn, RpcMethod::AppendEntries, None, now);
            server.handle_data(s, framed(request), now);
            server.handle_end_of_stream(s, now);
            s
        };
        send(&mut server, &heartbeat());
        assert!(server.poll_rpc(now).is_some(), "off: the consumer gets it");
        server.set_heartbeat_fast_path(true);
        let _ = events(&mut server);
        let hb = send(&mut server, &heartbeat());
        send(&mut server, &append(1));
        let ev = events(&mut server);
        let Some(ServerEvent::Heartbeat { id, request, .. }) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!((id.stream, request.term), (hb, 4));
        let response = RaftResponse::AppendEntries(AppendEntriesResponse {
            term: 4,
            success: true,
            ..Default::default()
        });
        server.respond(*id, Ok(response), now).unwrap();
        assert_eq!(wire(&mut server, hb, now).1, Some(Status::ok()));
        // The append still goes to the consumer.
        assert!(
            matches!(server.poll_rpc(now).unwrap().request, RaftRequest::AppendEntries(r) if !r.entries.is_empty())
        );
    }

    #[test]
    fn answers_are_checked() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let stream = unary_vote(&mut server, conn, 1, now);
        let rpc = server.poll_rpc(now).unwrap();
        let wrong = RaftResponse::TimeoutNow(TimeoutNowResponse::default());
        assert!(matches!(
            server.respond(rpc.id, Ok(wrong), now),
            Err(RespondError::WrongType(..))
        ));
        let unknown = RequestId { stream, seq: 1 };
        assert_eq!(
            server.respond(unknown, granted(1), now),
            Err(RespondError::NothingToAnswer)
        );
        server.respond(rpc.id, granted(1), now).unwrap();
        assert!(matches!(
            server.respond(rpc.id, granted(1), now),
            Err(RespondError::Finished(_))
        ));
        assert_eq!(wire(&mut server, stream, now).1, Some(Status::ok()));
    }

    #[test]
    fn an_error_answer_ends_a_pipeline_with_its_status() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let stream = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        server.handle_data(stream, framed(&append(1)), now);
        server.handle_data(stream, framed(&append(2)), now);
        let a = server.poll_rpc(now).unwrap();
        let b = server.poll_rpc(now).unwrap();
        server
            .respond(b.id, Err(Status::new(Code::Unknown, "raft: busy")), now)
            .unwrap();
        // The error waits for the first answer, then ends the stream.
        assert_eq!(wire(&mut server, stream, now).1, None);
        let ok = RaftResponse::AppendEntries(AppendEntriesResponse::default());
        server.respond(a.id, Ok(ok), now).unwrap();
        let (data, status) = wire(&mut server, stream, now);
        assert!(!data.is_empty());
        assert_eq!(status.unwrap().message(), "raft: busy");
    }

    fn snapshot_messages(data: &[u8], chunk: usize, now: Instant) -> Vec<Bytes> {
        let meta = InstallSnapshotRequest {
            term: 4,
            size: data.len() as u64,
            ..Default::default()
        };
        let mut sender = SnapshotSender::new(meta.clone(), chunk, now);
        let mut messages = vec![framed(&meta)];
        for c in sender.push(Bytes::copy_from_slice(data), now).unwrap() {
            messages.push(framed(&c));
        }
        messages
    }

    #[test]
    fn snapshot_data_flows_at_the_readers_pace() {
        let (mut server, conn, now) = endpoint(ServerConfig {
            snapshot_buffer: 2,
            ..ServerConfig::default()
        });
        let data: Vec<u8> = (0..100u8).collect();
        let messages = snapshot_messages(&data, 10, now);
        let total: usize = messages.iter().map(Bytes::len).sum();
        let stream = open(
            &mut server,
            conn,
            RpcMethod::InstallSnapshot,
            Some(Duration::from_secs(600)),
            now,
        );
        for m in &messages {
            server.handle_data(stream, m.clone(), now);
        }
        server.handle_end_of_stream(stream, now);
        let rpc = server.poll_rpc(now).unwrap();
        assert!(matches!(rpc.request, RaftRequest::InstallSnapshot(ref m) if m.size == 100));
        // Two chunks buffered and a third decoded: the rest is unreleased.
        let first_release = released(&outputs(&mut server), stream);
        assert_eq!(
            first_release,
            messages[..4].iter().map(Bytes::len).sum::<usize>()
        );
        // Minutes pass while the reader holds buffered data: no stall.
        let later = now + Duration::from_secs(300);
        server.handle_timeout(later);
        let mut read = Vec::new();
        loop {
            match server.read_snapshot(rpc.id, later) {
                SnapshotRead::Data(d) => read.extend_from_slice(&d),
                SnapshotRead::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(read, data);
        assert_eq!(
            first_release + released(&outputs(&mut server), stream),
            total
        );
        let ok = RaftResponse::InstallSnapshot(InstallSnapshotResponse {
            term: 4,
            success: true,
            ..Default::default()
        });
        server.respond(rpc.id, Ok(ok), later).unwrap();
        assert_eq!(wire(&mut server, stream, later).1, Some(Status::ok()));
        assert!(server.stream_finished(stream));
    }

    #[test]
    fn a_snapshot_reader_learns_how_its_stream_failed() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let messages = snapshot_messages(b"0123456789", 3, now);
        let stream = open(&mut server, conn, RpcMethod::InstallSnapshot, None, now);
        server.handle_data(stream, messages[0].clone(), now);
        server.handle_data(stream, messages[1].clone(), now);
        let rpc = server.poll_rpc(now).unwrap();
        server.handle_reset(stream, crate::http2::CANCEL, now);
        assert!(
            server.stream_finished(stream),
            "the driver may drop the stream"
        );
        assert_eq!(
            server.read_snapshot(rpc.id, now),
            SnapshotRead::Data(Bytes::from_static(b"012"))
        );
        let SnapshotRead::Failed(status) = server.read_snapshot(rpc.id, now) else {
            panic!()
        };
        assert_eq!(status.code(), Code::Cancelled);
        // The record is gone once the reader saw the end.
        assert!(server.streams.is_empty());
    }

    #[test]
    fn pipelines_apart_have_their_own_queue() {
        let (mut server, conn, now) = endpoint(ServerConfig {
            pipelines_apart: true,
            consumer_queue: 2,
            ..ServerConfig::default()
        });
        let stream = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        assert_eq!(
            events(&mut server),
            vec![ServerEvent::PipelineOpened { pipeline: stream }]
        );
        for i in 1..=3 {
            server.handle_data(stream, framed(&append(i)), now);
        }
        unary_vote(&mut server, conn, 9, now);
        assert_eq!(
            server.queued_rpcs(),
            1,
            "the pipeline's appends are not the consumer's"
        );
        let PipelineRead::Rpc(first) = server.poll_pipeline_rpc(stream, now) else {
            panic!()
        };
        assert_eq!(first.id, RequestId { stream, seq: 0 });
        // Dropping the handle ends the stream, whatever it still holds.
        server.drop_pipeline(stream, now);
        assert_eq!(server.poll_pipeline_rpc(stream, now), PipelineRead::Ended);
        let status = wire(&mut server, stream, now).1.unwrap();
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn a_lost_connection_fails_its_streams_and_their_queued_requests() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let other = server.handle_connection(now);
        unary_vote(&mut server, conn, 1, now);
        let kept = unary_vote(&mut server, other, 2, now);
        server.handle_connection_lost(conn, "broken pipe", now);
        let rpc = server.poll_rpc(now).unwrap();
        assert_eq!(rpc.id.stream, kept);
        assert_eq!(server.poll_rpc(now), None);
        assert_eq!(server.open_streams(conn), 0);
    }

    #[test]
    fn a_slow_handshake_is_closed() {
        let now = Instant::now();
        let mut server = ServerEndpoint::new(ServerConfig::default());
        let conn = server.handle_connection(now);
        let deadline = server.poll_timeout().unwrap();
        assert_eq!(deadline, now + ServerConfig::default().handshake_timeout);
        server.handle_timeout(deadline);
        assert_eq!(outputs(&mut server), vec![ServerOutput::Close { conn }]);
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn a_refused_head_is_answered_at_once() {
        let (mut server, conn, now) = endpoint(ServerConfig::default());
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("http://me/proto.raft.v1.RaftTransportService/Nope")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
            .into_parts();
        let stream = server.handle_request_head(conn, &parts, now);
        assert!(outputs(&mut server).contains(&ServerOutput::Transmit { conn, stream }));
        assert_eq!(
            wire(&mut server, stream, now).1.unwrap().code(),
            Code::Unimplemented
        );
        assert!(server.stream_finished(stream));
        // Data the client sends anyway is given back.
        server.handle_data(stream, vote(1), now);
        assert_eq!(server.poll_rpc(now), None);
    }

    fn answer(server: &mut ServerEndpoint, now: Instant) -> usize {
        let mut answered = 0;
        while let Some(rpc) = server.poll_rpc(now) {
            let response = AppendEntriesResponse {
                last_log: rpc.id.seq + 1,
                success: true,
                ..Default::default()
            };
            server
                .respond(rpc.id, Ok(RaftResponse::AppendEntries(response)), now)
                .unwrap();
            answered += 1;
        }
        answered
    }

    #[test]
    fn a_pipeline_whose_answers_go_unsent_stops_taking_appends() {
        let call = ServerCallConfig::default().with_max_unsent_response(1024);
        let (mut server, conn, now) = endpoint(ServerConfig::default().with_call(call));
        let stream = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        // The client never opens its receive window: nothing is
        // transmitted, while it keeps sending appends.
        let message = framed(&append(1));
        let (mut answered, mut taken) = (0, 0);
        for _ in 0..10_000 {
            server.handle_data(stream, message.clone(), now);
            answered += answer(&mut server, now);
            taken += released(&outputs(&mut server), stream);
        }
        // About 1 KiB of answers (a few dozen), and then no more data is
        // taken: the client's window stays spent.
        let answer_len = framed(&AppendEntriesResponse {
            last_log: 1,
            success: true,
            ..Default::default()
        })
        .len();
        assert!(answered <= 1024 / answer_len + 2, "{answered} answered");
        assert_eq!(taken, answered * message.len());
        assert!(server.send_wanted(stream) >= 1024 - answer_len);
        // The window opens: the answers go out, and the appends that waited
        // are taken, in order.
        let (data, _) = wire(&mut server, stream, now);
        assert_eq!(data.len(), answered * answer_len);
        let more = answer(&mut server, now);
        assert!(more > 0);
        assert_eq!(
            released(&outputs(&mut server), stream),
            more * message.len()
        );
    }

    fn peer(addr: &str) -> PeerInfo {
        PeerInfo::new(Some(addr.parse().unwrap()))
    }

    #[test]
    fn connections_beyond_the_limits_are_refused() {
        let now = Instant::now();
        let mut server = ServerEndpoint::new(
            ServerConfig::default()
                .with_max_connections(3)
                .with_max_connections_per_ip(2),
        );
        let a1 = server.handle_peer_connection(peer("10.0.0.1:1001"), now);
        let a2 = server.handle_peer_connection(peer("10.0.0.1:1002"), now);
        server.handle_handshake_done(a1, now);
        server.handle_handshake_done(a2, now);
        assert!(outputs(&mut server).is_empty());
        let a3 = server.handle_peer_connection(peer("10.0.0.1:1003"), now);
        let refusal = ServerOutput::Refuse {
            conn: a3,
            error_code: crate::http2::ENHANCE_YOUR_CALM,
        };
        assert_eq!(outputs(&mut server), vec![refusal]);
        // Another address still gets in, up to the total.
        let b1 = server.handle_peer_connection(peer("10.0.0.2:1001"), now);
        server.handle_handshake_done(b1, now);
        assert!(outputs(&mut server).is_empty());
        let b2 = server.handle_peer_connection(peer("10.0.0.2:1002"), now);
        assert!(matches!(
            outputs(&mut server)[..],
            [ServerOutput::Refuse { conn, .. }] if conn == b2
        ));
        assert_eq!(server.connections(), 3);
        // A refused connection serves no stream, and is closed if its peer
        // does not leave after the GOAWAY.
        server.handle_handshake_done(a3, now);
        let stream = open(&mut server, a3, RpcMethod::RequestVote, None, now);
        let status = wire(&mut server, stream, now).1.unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(server.poll_rpc(now), None);
        let grace = now + ServerConfig::default().handshake_timeout;
        server.handle_timeout(grace);
        assert!(outputs(&mut server).contains(&ServerOutput::Close { conn: a3 }));
        // Room again once one goes.
        server.handle_connection_lost(a1, "closed", now);
        server.handle_connection_lost(b2, "closed", now);
        server.handle_peer_connection(peer("10.0.0.1:1004"), now);
        assert!(outputs(&mut server).is_empty());
        assert_eq!(server.connections(), 3);
        // That one is still in its handshake, and counts: the total is
        // reached.
        let c1 = server.handle_peer_connection(peer("10.0.0.3:1001"), now);
        assert!(matches!(
            outputs(&mut server)[..],
            [ServerOutput::Refuse { conn, .. }] if conn == c1
        ));
    }

    #[test]
    fn an_idle_connection_gets_goaway_and_is_closed_if_it_stays() {
        let idle = Duration::from_secs(60);
        let (mut server, conn, now) =
            endpoint(ServerConfig::default().with_idle_timeout(Some(idle)));
        assert_eq!(server.poll_timeout(), Some(now + idle));
        // A call makes it busy; its end starts the idle time again.
        let later = now + Duration::from_secs(50);
        let stream = unary_vote(&mut server, conn, 1, later);
        assert_eq!(server.poll_timeout(), Some(later + Duration::from_secs(10)));
        let rpc = server.poll_rpc(later).unwrap();
        server.respond(rpc.id, granted(1), later).unwrap();
        wire(&mut server, stream, later);
        assert!(server.stream_finished(stream));
        outputs(&mut server);
        assert_eq!(server.poll_timeout(), Some(later + idle));
        server.handle_timeout(later + idle - Duration::from_millis(1));
        assert!(outputs(&mut server).is_empty());
        server.handle_timeout(later + idle);
        assert_eq!(outputs(&mut server), vec![ServerOutput::GoAway { conn }]);
        // A peer that stays after the GOAWAY is closed.
        let grace = later + idle + ServerConfig::default().handshake_timeout;
        assert_eq!(server.poll_timeout(), Some(grace));
        server.handle_timeout(grace);
        assert_eq!(outputs(&mut server), vec![ServerOutput::Close { conn }]);
        assert_eq!(server.connections(), 0);
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn a_call_that_races_the_idle_goaway_is_served_and_the_close_waits_for_it() {
        let idle = Duration::from_secs(60);
        let grace = ServerConfig::default().handshake_timeout;
        let (mut server, conn, now) =
            endpoint(ServerConfig::default().with_idle_timeout(Some(idle)));
        let goaway = now + idle;
        server.handle_timeout(goaway);
        assert_eq!(outputs(&mut server), vec![ServerOutput::GoAway { conn }]);
        // The peer had sent a vote before it read the GOAWAY.
        let stream = unary_vote(&mut server, conn, 1, goaway);
        server.handle_timeout(goaway + grace);
        assert!(
            !outputs(&mut server).contains(&ServerOutput::Close { conn }),
            "closed under a call"
        );
        let later = goaway + grace * 2;
        let rpc = server.poll_rpc(later).unwrap();
        server.respond(rpc.id, granted(1), later).unwrap();
        assert_eq!(wire(&mut server, stream, later).1, Some(Status::ok()));
        // Its last call done, the peer has the grace period to leave.
        assert_eq!(server.poll_timeout(), Some(later + grace));
        server.handle_timeout(later + grace);
        assert!(outputs(&mut server).contains(&ServerOutput::Close { conn }));
        assert_eq!(server.connections(), 0);
    }

    #[test]
    fn a_stream_that_owes_request_data_fails_when_none_comes() {
        let timeout = Duration::from_secs(30);
        let (mut server, conn, now) = endpoint(
            ServerConfig::default()
                .with_idle_timeout(None)
                .with_request_data_timeout(Some(timeout)),
        );
        // A unary call with no request, and a pipeline in the middle of an
        // append, owe data; a pipeline between appends does not.
        let silent = open(&mut server, conn, RpcMethod::RequestVote, None, now);
        let quiet = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        server.handle_data(quiet, framed(&append(1)), now);
        let halfway = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        let message = framed(&append(1));
        server.handle_data(halfway, message.slice(..message.len() - 1), now);
        // Data resets the wait.
        let later = now + Duration::from_secs(20);
        server.handle_data(halfway, Bytes::new(), later);
        server.handle_data(silent, vote(1).slice(..3), later);
        assert_eq!(server.poll_timeout(), Some(now + timeout));
        server.handle_timeout(now + timeout);
        assert!(server.streams.contains_key(&silent));
        let (_, status) = wire(&mut server, halfway, now + timeout);
        assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
        server.handle_timeout(later + timeout);
        let (_, status) = wire(&mut server, silent, later + timeout);
        assert_eq!(status.unwrap().code(), Code::DeadlineExceeded);
        assert!(!server.stream_finished(quiet));
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn a_stream_held_back_by_the_server_is_not_waiting_for_its_client() {
        let timeout = Duration::from_secs(30);
        let (mut server, conn, now) = endpoint(
            ServerConfig::default()
                .with_consumer_queue(1)
                .with_request_data_timeout(Some(timeout))
                .with_idle_timeout(None),
        );
        let vote_stream = open(&mut server, conn, RpcMethod::RequestVote, None, now);
        server.handle_data(vote_stream, vote(1), now);
        server.handle_end_of_stream(vote_stream, now);
        // The queue is full: this one's request waits in its call, and the
        // rest of a second message waits unreleased.
        let held = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        let message = framed(&append(1));
        server.handle_data(held, message.clone(), now);
        server.handle_data(held, message.slice(..4), now);
        assert_eq!(server.poll_timeout(), None);
        server.handle_timeout(now + timeout * 2);
        assert!(!server.stream_finished(held));
        // Room again: the stream goes on, and owes the rest of the message.
        let later = now + timeout * 2;
        server.poll_rpc(later).unwrap();
        assert_eq!(server.poll_timeout(), Some(later + timeout));
    }

    /// A message prefix declaring `len` bytes, and `sent` of them.
    fn partial_message(len: usize, sent: usize) -> Bytes {
        let mut data = vec![0u8; 5 + sent];
        data[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        Bytes::from(data)
    }

    #[test]
    fn incomplete_messages_over_the_connection_budget_fail_with_resource_exhausted() {
        let budget = 8 << 20;
        let (mut server, conn, now) =
            endpoint(ServerConfig::default().with_max_buffered_per_connection(budget));
        let other = server.handle_connection(now);
        server.handle_handshake_done(other, now);
        let mut streams = Vec::new();
        for _ in 0..3 {
            let stream = open(&mut server, conn, RpcMethod::AppendEntries, None, now);
            server.handle_data(stream, partial_message(4 << 20, 3 << 20), now);
            streams.push(stream);
        }
        // Two fit (6 MiB); the third would grow a budget that nothing but
        // incomplete messages fills.
        assert!(server.buffered(conn) <= budget);
        assert!(server.buffered(conn) >= 6 << 20);
        let (_, status) = wire(&mut server, streams[2], now);
        let status = status.unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("budget"), "{status:?}");
        for stream in &streams[..2] {
            assert!(!server.stream_finished(*stream));
        }
        // Another connection has a budget of its own.
        let stream = open(&mut server, other, RpcMethod::AppendEntries, None, now);
        server.handle_data(stream, partial_message(4 << 20, 3 << 20), now);
        assert!(!server.stream_finished(stream));
        // What a stream held leaves the count with it.
        server.handle_reset(streams[0], crate::http2::CANCEL, now);
        assert!(server.buffered(conn) < 4 << 20);
    }

    #[test]
    fn queued_requests_over_the_budget_hold_streams_back_until_they_drain() {
        let budget = 4 << 20;
        let (mut server, conn, now) = endpoint(
            ServerConfig::default()
                .with_pipelines_apart(true)
                .with_max_buffered_per_connection(budget),
        );
        let stream = open(
            &mut server,
            conn,
            RpcMethod::AppendEntriesPipeline,
            None,
            now,
        );
        let big = |index| AppendEntriesRequest {
            entries: vec![Log::command(index, 1, Bytes::from(vec![7u8; 1 << 20]))],
            ..append(index)
        };
        let messages: Vec<Bytes> = (1..=8).map(|i| framed(&big(i))).collect();
        for m in &messages {
            server.handle_data(stream, m.clone(), now);
        }
        // Three appends fit the budget (a fourth would pass it); the rest
        // waits, unreleased.
        let taken = released(&outputs(&mut server), stream);
        let three: usize = messages[..3].iter().map(Bytes::len).sum();
        assert_eq!(taken, three);
        assert!(server.buffered(conn) >= 3 << 20);
        // The handler takes them: the stream goes on, and nothing is lost.
        let mut seen = Vec::new();
        while let PipelineRead::Rpc(rpc) = server.poll_pipeline_rpc(stream, now) {
            seen.push(rpc.id.seq);
        }
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        let taken = released(&outputs(&mut server), stream);
        assert_eq!(
            taken,
            messages.iter().map(Bytes::len).sum::<usize>() - three
        );
        assert_eq!(server.buffered(conn), 0);
    }
}
