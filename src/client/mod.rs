//! The client side of the transport, as one state machine.
//!
//! [`ClientEndpoint`] owns every outgoing call of a node and every
//! connection they use: it encodes the request, picks the connection
//! through the [`PeerPool`] (lanes, backoff, fail fast, the connect
//! deadline), proves each new connection with a PING round trip and keeps
//! it alive while calls are in flight (gRPC's rules, in its `keepalive` module),
//! opens the stream when the connection is ready (saying how to send on
//! it), runs the [`ClientCall`], and reports the outcome of each call
//! exactly once, as a response or a typed [`TransportError`]. It runs
//! AppendEntries pipelines through a [`PipelineWindow`] (ordered
//! completions, back-pressure, small appends joined into one DATA frame)
//! and snapshot streams through a [`SnapshotSender`] (chunking, running
//! checksum, size-scaled deadline, stall detector). A driver moves its
//! instructions to sockets and HTTP/2, and the answers back; it decides
//! nothing.
//!
//! # The contract
//!
//! * Application commands (verbs): [`start_rpc`](ClientEndpoint::start_rpc),
//!   [`start_snapshot`](ClientEndpoint::start_snapshot) with
//!   [`push_snapshot_data`](ClientEndpoint::push_snapshot_data) and
//!   [`finish_snapshot`](ClientEndpoint::finish_snapshot),
//!   [`open_pipeline`](ClientEndpoint::open_pipeline) with
//!   [`append`](ClientEndpoint::append) and
//!   [`close_pipeline`](ClientEndpoint::close_pipeline),
//!   [`cancel`](ClientEndpoint::cancel),
//!   [`remove_peer`](ClientEndpoint::remove_peer),
//!   [`close`](ClientEndpoint::close).
//! * Driver inputs (`handle_*`): a connection's fate
//!   ([`handle_connected`](ClientEndpoint::handle_connected),
//!   [`handle_connect_failed`](ClientEndpoint::handle_connect_failed),
//!   [`handle_ping_ack`](ClientEndpoint::handle_ping_ack),
//!   [`handle_max_streams`](ClientEndpoint::handle_max_streams),
//!   [`handle_goaway`](ClientEndpoint::handle_goaway),
//!   [`handle_connection_lost`](ClientEndpoint::handle_connection_lost)),
//!   each stream's response
//!   ([`handle_response_head`](ClientEndpoint::handle_response_head),
//!   [`handle_response_data`](ClientEndpoint::handle_response_data),
//!   [`handle_response_trailers`](ClientEndpoint::handle_response_trailers),
//!   [`handle_response_end`](ClientEndpoint::handle_response_end),
//!   [`handle_stream_refused`](ClientEndpoint::handle_stream_refused),
//!   [`handle_stream_reset`](ClientEndpoint::handle_stream_reset)), and
//!   [`handle_timeout`](ClientEndpoint::handle_timeout).
//! * After **every** one of them, drain
//!   [`poll_output`](ClientEndpoint::poll_output) (what the driver must
//!   do) and [`poll_event`](ClientEndpoint::poll_event) (what the
//!   application learns), then arm a timer at
//!   [`poll_timeout`](ClientEndpoint::poll_timeout). When a stream has
//!   something to send ([`ClientOutput::Transmit`]) or gets send capacity,
//!   pull [`poll_transmit`](ClientEndpoint::poll_transmit) with the
//!   capacity HTTP/2 granted (reserve
//!   [`send_wanted`](ClientEndpoint::send_wanted)) until it returns
//!   `None`, then drain again.
//!
//! Outputs and events are two queues on purpose: outputs are instructions
//! for the I/O side (connect, PING, open, transmit, release, close),
//! events are outcomes for the application; a driver's `match` over
//! outputs then holds I/O only, and no outcome can get lost in an I/O
//! branch.

mod keepalive;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, Request};

use crate::call::{ClientCall, ClientEvent as CallEvent, ClientTransmit};
use crate::error::TransportError;
use crate::framing::{EncodedMessage, MessageBody, MessageEncoder};
use crate::head::{RequestHead, RpcMethod};
use crate::heartbeat::is_heartbeat;
use crate::http2::{DEFAULT_INITIAL_WINDOW, ENHANCE_YOUR_CALM, REFUSED_STREAM};
use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, RaftMessage, RaftResponse,
    RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest, RequestVoteResponse,
    TimeoutNowRequest, TimeoutNowResponse,
};
use crate::pipeline::{PipelineError, PipelineWindow};
use crate::pool::{ConnId, Lane, PeerPool, Pick, PoolConfig, PoolEvent};
use crate::profile::WireProfile;
use crate::snapshot::{SnapshotProgress, SnapshotSender, StallDetector, snapshot_timeout};
use crate::status::{Code, Status};
use keepalive::{Liveness, LivenessAction};

/// The most a peer's complaints (GOAWAY `ENHANCE_YOUR_CALM`) double the
/// keepalive interval: 64 × the configured one.
const MAX_KEEPALIVE_DOUBLINGS: u32 = 6;

/// Configuration of a [`ClientEndpoint`], with the transport's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Connections per peer, lanes and reconnect backoff.
    pub pool: PoolConfig,
    /// Deadline of every RPC but pipelines (default 10 s, as hashicorp's
    /// transports); InstallSnapshot scales it by size.
    pub rpc_timeout: Duration,
    /// Largest request message sent (default 4 MiB: what a grpc-go or
    /// tonic peer accepts by default).
    pub max_send_message_len: usize,
    /// Largest response message accepted (default 4 MiB).
    pub max_recv_message_len: usize,
    /// `bytes` payloads at least this long are sent without copying
    /// (default 16 KiB).
    pub zero_copy_min: usize,
    /// Requests in flight on one pipeline (default 64).
    pub pipeline_window: usize,
    /// Snapshot data per message (default 1 MiB, always cut to fit
    /// `max_send_message_len`).
    pub snapshot_chunk_size: usize,
    /// Bytes per extra `rpc_timeout` for InstallSnapshot (default 256 KiB,
    /// as hashicorp).
    pub snapshot_timeout_scale: u64,
    /// A snapshot stream that sends nothing for this long fails with
    /// `DEADLINE_EXCEEDED` (default 30 s).
    pub snapshot_stall_timeout: Duration,
    /// HTTP/2 PINGs while calls are in flight.
    pub keepalive: KeepaliveConfig,
    /// The driver runs TLS under every connection: requests say `:scheme
    /// https` (default false: `http`).
    pub https: bool,
    /// An established connection without calls for this long is closed;
    /// the next call to its peer reconnects (default `None`: never; a
    /// server may close it first: ours sends GOAWAY after 10 minutes).
    pub idle_timeout: Option<Duration>,
    /// The numbering requests are sent in (default [`WireProfile::V0_2`]).
    /// Under [`WireProfile::V0_1`], RequestPreVote calls fail at once with
    /// [`TransportError::PreVoteUnsupported`].
    pub wire_profile: WireProfile,
}

crate::config::setters!(ClientConfig {
    with_pool => pool: PoolConfig,
    with_rpc_timeout => rpc_timeout: Duration,
    with_max_send_message_len => max_send_message_len: usize,
    with_max_recv_message_len => max_recv_message_len: usize,
    with_zero_copy_min => zero_copy_min: usize,
    with_pipeline_window => pipeline_window: usize,
    with_snapshot_chunk_size => snapshot_chunk_size: usize,
    with_snapshot_timeout_scale => snapshot_timeout_scale: u64,
    with_snapshot_stall_timeout => snapshot_stall_timeout: Duration,
    with_keepalive => keepalive: KeepaliveConfig,
    with_https => https: bool,
    with_idle_timeout => idle_timeout: Option<Duration>,
    with_wire_profile => wire_profile: WireProfile,
});

/// Keepalive of a [`ClientEndpoint`]'s connections: gRPC's rules (PINGs
/// only while calls are in flight; grpc-go servers answer more with GOAWAY
/// `too_many_pings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepaliveConfig {
    /// While calls are in flight on a connection, PING this often (`None`:
    /// never).
    pub interval: Option<Duration>,
    /// A PING unanswered for this long closes the connection.
    pub timeout: Duration,
}

crate::config::setters!(KeepaliveConfig {
    with_interval => interval: Option<Duration>,
    with_timeout => timeout: Duration,
});

impl Default for KeepaliveConfig {
    fn default() -> Self {
        crate::config::Config::default().client().keepalive
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        crate::config::Config::default().client()
    }
}

/// Identifies a call (unary, snapshot or pipeline) of a [`ClientEndpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A unary Raft request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingRpc {
    /// AppendEntries (a heartbeat when [`is_heartbeat`] says so).
    AppendEntries(AppendEntriesRequest),
    /// RequestVote.
    RequestVote(RequestVoteRequest),
    /// RequestPreVote.
    RequestPreVote(RequestPreVoteRequest),
    /// TimeoutNow.
    TimeoutNow(TimeoutNowRequest),
}

impl OutgoingRpc {
    /// The gRPC method.
    pub fn method(&self) -> RpcMethod {
        match self {
            OutgoingRpc::AppendEntries(_) => RpcMethod::AppendEntries,
            OutgoingRpc::RequestVote(_) => RpcMethod::RequestVote,
            OutgoingRpc::RequestPreVote(_) => RpcMethod::RequestPreVote,
            OutgoingRpc::TimeoutNow(_) => RpcMethod::TimeoutNow,
        }
    }

    /// The lane it travels on: heartbeats, votes and TimeoutNow on the
    /// control lane, AppendEntries with content on the replication lane.
    pub fn lane(&self) -> Lane {
        match self {
            OutgoingRpc::AppendEntries(request) if !is_heartbeat(request) => Lane::Replication,
            _ => Lane::Control,
        }
    }

    fn encode(&self, encoder: &MessageEncoder) -> Result<EncodedMessage, Status> {
        match self {
            OutgoingRpc::AppendEntries(r) => encoder.encode(r),
            OutgoingRpc::RequestVote(r) => encoder.encode(r),
            OutgoingRpc::RequestPreVote(r) => encoder.encode(r),
            OutgoingRpc::TimeoutNow(r) => encoder.encode(r),
        }
        .map_err(|e| e.status())
    }
}

impl From<AppendEntriesRequest> for OutgoingRpc {
    fn from(request: AppendEntriesRequest) -> Self {
        OutgoingRpc::AppendEntries(request)
    }
}

impl From<RequestVoteRequest> for OutgoingRpc {
    fn from(request: RequestVoteRequest) -> Self {
        OutgoingRpc::RequestVote(request)
    }
}

impl From<RequestPreVoteRequest> for OutgoingRpc {
    fn from(request: RequestPreVoteRequest) -> Self {
        OutgoingRpc::RequestPreVote(request)
    }
}

impl From<TimeoutNowRequest> for OutgoingRpc {
    fn from(request: TimeoutNowRequest) -> Self {
        OutgoingRpc::TimeoutNow(request)
    }
}

/// A unary Raft request and the response that answers it, so that one
/// generic call serves every unary RPC kind.
///
/// ```
/// use raft_grpc_transport::client::UnaryRequest;
/// use raft_grpc_transport::message::*;
///
/// let answer = RaftResponse::RequestVote(RequestVoteResponse { granted: true, ..Default::default() });
/// assert!(RequestVoteRequest::response(answer).unwrap().granted);
/// // A response of another kind is the peer's bug: INTERNAL.
/// let wrong = RaftResponse::TimeoutNow(TimeoutNowResponse::default());
/// assert!(RequestVoteRequest::response(wrong).is_err());
/// ```
pub trait UnaryRequest: Into<OutgoingRpc> {
    /// The response type.
    type Response;

    /// Takes the response out of a [`RaftResponse`]; one of another kind
    /// fails with `INTERNAL`.
    fn response(response: RaftResponse) -> Result<Self::Response, TransportError>;
}

/// A response of the wrong kind for the call (a peer bug): `INTERNAL`.
fn mismatch(response: &RaftResponse) -> TransportError {
    TransportError::Status(Status::new(
        Code::Internal,
        format!("unexpected {} for this call", response.proto_name()),
    ))
}

macro_rules! unary_request {
    ($request:ty, $response:ty, $variant:ident) => {
        impl UnaryRequest for $request {
            type Response = $response;

            fn response(response: RaftResponse) -> Result<$response, TransportError> {
                match response {
                    RaftResponse::$variant(response) => Ok(response),
                    other => Err(mismatch(&other)),
                }
            }
        }
    };
}

unary_request!(AppendEntriesRequest, AppendEntriesResponse, AppendEntries);
unary_request!(RequestVoteRequest, RequestVoteResponse, RequestVote);
unary_request!(
    RequestPreVoteRequest,
    RequestPreVoteResponse,
    RequestPreVote
);
unary_request!(TimeoutNowRequest, TimeoutNowResponse, TimeoutNow);

/// What the driver must do.
// Outputs are drained right after they are made: boxing the request head
// would cost an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ClientOutput {
    /// Open a connection to `peer` (TCP, then the HTTP/2 handshake) and
    /// report [`ClientEndpoint::handle_connected`] or
    /// [`ClientEndpoint::handle_connect_failed`]. The endpoint's connect
    /// deadline covers it: on [`ClientOutput::Close`] give up.
    Connect {
        /// The connection's id.
        conn: ConnId,
        /// The peer's address.
        peer: String,
    },
    /// Close this connection (or abandon this connect attempt); report
    /// nothing back.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Send an HTTP/2 PING on this connection and report its answer with
    /// [`ClientEndpoint::handle_ping_ack`]. At most one is in flight.
    Ping {
        /// The connection.
        conn: ConnId,
    },
    /// Open a stream for `call` on `conn` with this request head (without
    /// END_STREAM); its data comes from `poll_transmit`. If the connection
    /// cannot open it, report [`ClientEndpoint::handle_stream_refused`].
    OpenStream {
        /// The connection.
        conn: ConnId,
        /// The call.
        call: CallId,
        /// The call's method (unary, a pipeline or a snapshot).
        method: RpcMethod,
        /// The request head.
        request: Request<()>,
        /// Bytes to hand over at once, before HTTP/2 has granted the new
        /// stream any capacity (within the peer's initial window), so that
        /// a small request's HEADERS and DATA leave in one write: the
        /// whole request for a unary call, 0 for streams.
        send_now: usize,
    },
    /// `call` has something to send: pull `poll_transmit` for it.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The call.
        call: CallId,
    },
    /// Release this much receive capacity on the stream of `call`: the
    /// endpoint took the data.
    ReleaseCapacity {
        /// The connection.
        conn: ConnId,
        /// The call.
        call: CallId,
        /// Bytes.
        bytes: usize,
    },
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A unary call or snapshot finished. Exactly once per call.
    Completed {
        /// The call.
        call: CallId,
        /// Its response, or why it failed.
        result: Result<RaftResponse, TransportError>,
    },
    /// A pipeline's stream is open: appends go out from now on.
    PipelineOpened {
        /// The pipeline.
        pipeline: CallId,
    },
    /// A pipelined AppendEntries finished, in the order appended. Exactly
    /// once per append.
    Appended {
        /// The pipeline.
        pipeline: CallId,
        /// The append's sequence number from [`ClientEndpoint::append`].
        seq: u64,
        /// Its response, or why it failed.
        result: Result<AppendEntriesResponse, TransportError>,
    },
    /// A pipeline is over (closed, or its stream failed), after the
    /// `Appended` events of everything it had in flight.
    PipelineClosed {
        /// The pipeline.
        pipeline: CallId,
        /// Why ([`TransportError::PipelineShutdown`] when closed).
        error: TransportError,
    },
    /// A pipeline has room for another append.
    PipelineReady {
        /// The pipeline.
        pipeline: CallId,
    },
    /// A snapshot stream wants more data from its source.
    SnapshotWantsData {
        /// The snapshot call.
        call: CallId,
    },
    /// How far a snapshot stream got: reported each time data from the
    /// source enters the stream (which runs at most two chunks ahead of
    /// what the peer has taken).
    SnapshotProgress {
        /// The snapshot call.
        call: CallId,
        /// Bytes, total and elapsed time (hence the rate).
        progress: SnapshotProgress,
    },
}

/// Why [`ClientEndpoint::append`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The window is full: wait for [`ClientEvent::PipelineReady`].
    #[error("pipeline window is full")]
    Full,
    /// The pipeline is over.
    #[error("pipeline is closed: {0}")]
    Closed(TransportError),
    /// The request is over the send limit (the pipeline stays open).
    #[error("{0}")]
    TooLarge(Status),
    /// No such pipeline.
    #[error("no such pipeline")]
    UnknownPipeline,
}

// One per call, never moved after insertion.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Kind {
    Unary {
        response: Option<MessageBody>,
    },
    Snapshot {
        sender: SnapshotSender,
        stall: StallDetector,
        source_done: bool,
        response: Option<MessageBody>,
    },
    Pipeline {
        window: PipelineWindow<u64>,
        next_seq: u64,
    },
}

#[derive(Debug)]
struct Record {
    peer: String,
    lane: Lane,
    method: RpcMethod,
    call: ClientCall,
    kind: Kind,
    /// The connection its stream is open on.
    conn: Option<ConnId>,
    /// Why the call was ended locally, if it was: its outcome then.
    local_error: Option<TransportError>,
    /// The outcome was reported.
    reported: bool,
    /// Bytes of gRPC messages sent and received on its stream, not yet in
    /// the peer's totals (they join them when the call is forgotten: the
    /// hot paths touch only the record).
    bytes_sent: u64,
    bytes_received: u64,
}

/// One connection the endpoint asked for.
#[derive(Debug)]
struct Connection {
    peer: String,
    /// `None` until the HTTP/2 handshake is done.
    liveness: Option<Liveness>,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS, as last reported.
    max_streams: Option<u32>,
    /// Since when the established connection has had no stream (`None`
    /// while it has one, or before it is established).
    idle_since: Option<Instant>,
}

/// The client side of the transport for every peer. See the module docs
/// for the contract.
///
/// ```
/// use std::time::Instant;
/// use raft_grpc_transport::client::{ClientConfig, ClientEndpoint, ClientEvent, ClientOutput, OutgoingRpc};
/// use raft_grpc_transport::message::RequestVoteRequest;
/// use raft_grpc_transport::Code;
///
/// let now = Instant::now();
/// let mut client = ClientEndpoint::new(ClientConfig::default());
/// let call = client.start_rpc("10.0.0.2:7000", OutgoingRpc::RequestVote(RequestVoteRequest::default()), now);
/// let Some(ClientOutput::Connect { conn, peer }) = client.poll_output() else { panic!() };
/// assert_eq!(peer, "10.0.0.2:7000");
/// // The driver could not connect: the call fails fast, once.
/// client.handle_connect_failed(conn, "connection refused", now);
/// let Some(ClientEvent::Completed { call: c, result: Err(e) }) = client.poll_event() else { panic!() };
/// assert_eq!((c, e.code()), (call, Code::Unavailable));
/// ```
#[derive(Debug)]
pub struct ClientEndpoint {
    config: ClientConfig,
    encoder: MessageEncoder,
    pool: PeerPool,
    calls: BTreeMap<CallId, Record>,
    conns: HashMap<ConnId, Connection>,
    /// Calls waiting for a connection to become ready or to have room.
    waiting: HashMap<ConnId, Vec<CallId>>,
    /// How often each peer asked us to PING less (GOAWAY
    /// `ENHANCE_YOUR_CALM`): its keepalive interval doubles each time.
    calm_down: HashMap<String, u32>,
    next_call: u64,
    closed: bool,
    outputs: VecDeque<ClientOutput>,
    events: VecDeque<ClientEvent>,
    /// Sent with every request.
    metadata: http::HeaderMap,
    /// gRPC bytes (framed messages) sent to and received from each peer
    /// by the calls already forgotten (a call in flight counts its own in
    /// its record).
    traffic: HashMap<String, (u64, u64)>,
}

/// What the endpoint holds for one peer and what went through it: see
/// [`ClientEndpoint::peer_stats`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's address.
    pub peer: String,
    /// Its connections: each pool slot's state (connecting, ready with its
    /// open streams, failed until a retry time), the ones draining, and its
    /// consecutive connect failures with the last one's error.
    pub connections: crate::pool::PeerConnections,
    /// Calls to it not yet completed: unary calls and snapshots (each
    /// pipeline counts once, whatever its appends in flight).
    pub calls_in_flight: usize,
    /// AppendEntries pipelines open to it.
    pub pipelines: usize,
    /// Appends in flight on those pipelines.
    pub appends_in_flight: usize,
    /// Bytes of gRPC messages (length-prefixed) sent to it.
    pub bytes_sent: u64,
    /// Bytes of gRPC messages received from it.
    pub bytes_received: u64,
    /// The snapshots being sent to it, and how far each got.
    pub snapshots: Vec<SnapshotProgress>,
}

impl ClientEndpoint {
    /// An endpoint with no connections.
    pub fn new(config: ClientConfig) -> Self {
        ClientEndpoint {
            encoder: MessageEncoder::new(config.max_send_message_len, config.zero_copy_min)
                .with_profile(config.wire_profile),
            pool: PeerPool::new(config.pool),
            config,
            calls: BTreeMap::new(),
            conns: HashMap::new(),
            waiting: HashMap::new(),
            calm_down: HashMap::new(),
            next_call: 1,
            closed: false,
            metadata: http::HeaderMap::new(),
            traffic: HashMap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The pool, to inspect.
    pub fn pool(&self) -> &PeerPool {
        &self.pool
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next instruction for the driver.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// The next outcome for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(|r| {
            let stall = match &r.kind {
                Kind::Snapshot { stall, .. } if !r.call.is_finished() => Some(stall.deadline()),
                _ => None,
            };
            match (r.call.poll_timeout(), stall) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        let timeout = self.config.keepalive.timeout;
        let conns = self.conns.iter().filter_map(|(id, c)| {
            let busy = self.pool.open_streams(*id) > 0;
            c.liveness.as_ref()?.poll_timeout(busy, timeout)
        });
        let idle = self.config.idle_timeout.and_then(|timeout| {
            self.conns
                .values()
                .filter_map(|c| c.idle_since)
                .min()
                .map(|since| since + timeout)
        });
        calls
            .chain(conns)
            .chain(self.pool.poll_timeout())
            .chain(idle)
            .min()
    }

    // ---- application commands ----

    /// Sends `metadata` with every request started from now on (an
    /// `authorization` token for the peers' authorizers, say). Names that
    /// gRPC reserves are refused.
    pub fn set_request_metadata(
        &mut self,
        metadata: http::HeaderMap,
    ) -> Result<(), crate::metadata::ReservedMetadataError> {
        crate::metadata::check_custom_metadata(&metadata)?;
        self.metadata = metadata;
        Ok(())
    }

    /// Starts a unary call to `peer`. Its outcome comes as exactly one
    /// [`ClientEvent::Completed`]: for a RequestPreVote under a profile
    /// without it ([`WireProfile::V0_1`]), at once, with
    /// [`TransportError::PreVoteUnsupported`] and nothing sent.
    pub fn start_rpc(&mut self, peer: &str, rpc: OutgoingRpc, now: Instant) -> CallId {
        let method = rpc.method();
        let lane = rpc.lane();
        let id = self.insert(
            peer,
            lane,
            method,
            Some(self.config.rpc_timeout),
            Kind::Unary { response: None },
            now,
        );
        if method == RpcMethod::RequestPreVote && !self.config.wire_profile.supports_pre_vote() {
            let error = TransportError::PreVoteUnsupported(self.config.wire_profile);
            self.end_locally(id, error, now);
            return id;
        }
        let encoded = rpc.encode(&self.encoder);
        match encoded {
            Ok(message) => {
                if let Some(record) = self.calls.get_mut(&id) {
                    record.call.send(message);
                    record.call.finish_sending();
                }
                self.place(id, now);
            }
            Err(status) => self.fail_unopened(id, status),
        }
        self.process(id, now);
        id
    }

    /// Starts an InstallSnapshot stream to `peer`. Feed the snapshot with
    /// [`push_snapshot_data`](Self::push_snapshot_data) while
    /// [`snapshot_wants_data`](Self::snapshot_wants_data) is true (else
    /// wait for [`ClientEvent::SnapshotWantsData`]), then
    /// [`finish_snapshot`](Self::finish_snapshot). Its outcome comes as
    /// exactly one [`ClientEvent::Completed`].
    pub fn start_snapshot(
        &mut self,
        peer: &str,
        meta: InstallSnapshotRequest,
        now: Instant,
    ) -> CallId {
        let timeout = snapshot_timeout(
            self.config.rpc_timeout,
            meta.size,
            self.config.snapshot_timeout_scale,
        );
        let chunk = SnapshotSender::chunk_size_for(
            self.config.max_send_message_len,
            self.config.snapshot_chunk_size,
        );
        let encoded = self.encoder.encode(&meta).map_err(|e| e.status());
        let kind = Kind::Snapshot {
            sender: SnapshotSender::new(meta, chunk, now),
            stall: StallDetector::new(self.config.snapshot_stall_timeout, now),
            source_done: false,
            response: None,
        };
        let id = self.insert(
            peer,
            Lane::Snapshot,
            RpcMethod::InstallSnapshot,
            Some(timeout),
            kind,
            now,
        );
        match encoded {
            Ok(message) => {
                if let Some(record) = self.calls.get_mut(&id) {
                    record.call.send(message);
                }
                self.place(id, now);
            }
            Err(status) => self.fail_unopened(id, status),
        }
        self.process(id, now);
        id
    }

    /// Whether a snapshot call wants more data from its source now: until
    /// [`finish_snapshot`](Self::finish_snapshot), whenever less than two
    /// chunks wait to be sent (once the declared size is read, to see the
    /// source end: more bytes fail the call).
    pub fn snapshot_wants_data(&self, call: CallId) -> bool {
        match self.calls.get(&call) {
            Some(Record {
                kind: Kind::Snapshot {
                    source_done: false, ..
                },
                call: c,
                ..
            }) => !c.is_finished() && c.send_wanted() < 2 * self.config.snapshot_chunk_size,
            _ => false,
        }
    }

    /// Bytes read from a snapshot's source. An error (the source runs past
    /// the declared size, or the call is over) fails the call.
    pub fn push_snapshot_data(
        &mut self,
        call: CallId,
        data: Bytes,
        now: Instant,
    ) -> Result<(), Status> {
        let encoder = self.encoder;
        let Some(record) = self.calls.get_mut(&call) else {
            return Err(Status::new(
                Code::FailedPrecondition,
                "no such snapshot call",
            ));
        };
        let Kind::Snapshot { sender, .. } = &mut record.kind else {
            return Err(Status::new(Code::FailedPrecondition, "not a snapshot call"));
        };
        if record.call.is_finished() {
            return Err(Status::new(
                Code::FailedPrecondition,
                "the snapshot call is over",
            ));
        }
        let result = sender
            .push(data, now)
            .map_err(|e| e.status())
            .and_then(|chunks| {
                for chunk in chunks {
                    record
                        .call
                        .send(encoder.encode(&chunk).map_err(|e| e.status())?);
                }
                Ok(())
            });
        match &result {
            Ok(()) => self.events.push_back(ClientEvent::SnapshotProgress {
                call,
                progress: sender.progress(now),
            }),
            Err(status) => record.call.cancel(status.clone()),
        }
        self.wake(call);
        self.process(call, now);
        result
    }

    /// The snapshot's source ended. Unless exactly the declared size was
    /// read, the call fails (and the stream is reset, so the peer never
    /// takes a short snapshot).
    pub fn finish_snapshot(&mut self, call: CallId, now: Instant) {
        let Some(record) = self.calls.get_mut(&call) else {
            return;
        };
        let Kind::Snapshot {
            sender,
            source_done,
            ..
        } = &mut record.kind
        else {
            return;
        };
        *source_done = true;
        match sender.finish() {
            Ok(()) => record.call.finish_sending(),
            Err(e) => record.call.cancel(e.status()),
        }
        self.wake(call);
        self.process(call, now);
    }

    /// How far a snapshot call got.
    pub fn snapshot_progress(&self, call: CallId, now: Instant) -> Option<SnapshotProgress> {
        match &self.calls.get(&call)?.kind {
            Kind::Snapshot { sender, .. } => Some(sender.progress(now)),
            _ => None,
        }
    }

    /// Opens an AppendEntriesPipeline stream to `peer`, on the replication
    /// lane. It has no deadline; [`ClientEvent::PipelineOpened`] says when
    /// its stream is open (or [`ClientEvent::PipelineClosed`] why it could
    /// not open); its appends complete in order.
    pub fn open_pipeline(&mut self, peer: &str, now: Instant) -> CallId {
        let kind = Kind::Pipeline {
            window: PipelineWindow::new(self.config.pipeline_window),
            next_seq: 0,
        };
        let id = self.insert(
            peer,
            Lane::Replication,
            RpcMethod::AppendEntriesPipeline,
            None,
            kind,
            now,
        );
        if let Some(record) = self.calls.get_mut(&id) {
            record.call.join_small_pieces();
        }
        self.place(id, now);
        self.process(id, now);
        id
    }

    /// Whether a pipeline has room for another append now.
    pub fn pipeline_has_room(&self, pipeline: CallId) -> bool {
        matches!(self.calls.get(&pipeline), Some(Record { kind: Kind::Pipeline { window, .. }, .. }) if window.has_room())
    }

    /// Sends an AppendEntries on a pipeline; its outcome comes as
    /// [`ClientEvent::Appended`] with the returned sequence number.
    pub fn append(
        &mut self,
        pipeline: CallId,
        request: &AppendEntriesRequest,
        now: Instant,
    ) -> Result<u64, AppendError> {
        let _ = now;
        let encoder = self.encoder;
        let Some(Record {
            kind: Kind::Pipeline { window, next_seq },
            call,
            local_error,
            ..
        }) = self.calls.get_mut(&pipeline)
        else {
            return Err(AppendError::UnknownPipeline);
        };
        if let Some(status) = window.closed() {
            let error = local_error
                .clone()
                .unwrap_or_else(|| TransportError::Status(status.clone()));
            return Err(AppendError::Closed(error));
        }
        if !window.has_room() {
            return Err(AppendError::Full);
        }
        let encoded = encoder
            .encode(request)
            .map_err(|e| AppendError::TooLarge(e.status()))?;
        let seq = *next_seq;
        match window.push(seq) {
            Ok(()) => {}
            Err(PipelineError::Full(_)) => return Err(AppendError::Full),
            Err(PipelineError::Closed(status, _)) => {
                return Err(AppendError::Closed(TransportError::Status(status)));
            }
        }
        *next_seq += 1;
        call.send(encoded);
        self.wake(pipeline);
        Ok(seq)
    }

    /// Closes a pipeline: appends in flight fail with
    /// [`TransportError::PipelineShutdown`], then
    /// [`ClientEvent::PipelineClosed`] follows.
    pub fn close_pipeline(&mut self, pipeline: CallId, now: Instant) {
        if let Some(record) = self.calls.get_mut(&pipeline) {
            if matches!(record.kind, Kind::Pipeline { .. }) {
                self.end_locally(pipeline, TransportError::PipelineShutdown, now);
            }
        }
    }

    /// Ends a call locally: it fails with `status` (`CANCELLED` when the
    /// caller gave up), its stream is reset, and a pipeline's appends in
    /// flight fail too.
    pub fn cancel(&mut self, call: CallId, status: Status, now: Instant) {
        self.end_locally(call, TransportError::Status(status), now);
    }

    /// Shuts the endpoint down: every call fails with
    /// [`TransportError::Shutdown`] (pipelines with
    /// [`TransportError::PipelineShutdown`], as hashicorp's), every
    /// connection is to be closed, and later calls fail at once.
    /// Idempotent.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let error = match self.calls.get(&id).map(|r| &r.kind) {
                Some(Kind::Pipeline { .. }) => TransportError::PipelineShutdown,
                _ => TransportError::Shutdown,
            };
            self.end_locally(id, error, now);
        }
        let peers: Vec<String> = self.pool.peers().map(str::to_owned).collect();
        for peer in peers {
            self.pool.remove_peer(&peer);
        }
        self.waiting.clear();
        self.drain_pool_events(now);
    }

    /// Every peer the endpoint holds connections, calls or traffic counts
    /// for, by address.
    pub fn peer_stats(&self, now: Instant) -> Vec<PeerStats> {
        let mut peers: Vec<&str> = self
            .pool
            .peers()
            .chain(self.calls.values().map(|r| r.peer.as_str()))
            .chain(self.traffic.keys().map(String::as_str))
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
            .into_iter()
            .map(|peer| {
                let mut stats = PeerStats {
                    peer: peer.to_owned(),
                    connections: self.pool.peer_connections(peer),
                    calls_in_flight: 0,
                    pipelines: 0,
                    appends_in_flight: 0,
                    bytes_sent: 0,
                    bytes_received: 0,
                    snapshots: Vec::new(),
                };
                if let Some(&(sent, received)) = self.traffic.get(peer) {
                    stats.bytes_sent = sent;
                    stats.bytes_received = received;
                }
                for (id, record) in self.calls.iter().filter(|(_, r)| r.peer == peer) {
                    stats.bytes_sent += record.bytes_sent;
                    stats.bytes_received += record.bytes_received;
                    if record.reported {
                        continue;
                    }
                    stats.calls_in_flight += 1;
                    match &record.kind {
                        Kind::Pipeline { window, .. } => {
                            stats.pipelines += 1;
                            stats.appends_in_flight += window.in_flight();
                        }
                        Kind::Snapshot { .. } => {
                            stats.snapshots.extend(self.snapshot_progress(*id, now));
                        }
                        Kind::Unary { .. } => {}
                    }
                }
                stats
            })
            .collect()
    }

    /// Removes a peer (one that left the cluster, say): its connections
    /// take no new call and close once the calls on them are done (at once
    /// when they have none); those calls finish as they would have. Calls
    /// started later, and calls still waiting for a connection, connect
    /// afresh; the peer's reconnect backoff is forgotten.
    pub fn remove_peer(&mut self, peer: &str, now: Instant) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        self.pool.retire_peer(peer);
        self.traffic.remove(peer);
        for record in self.calls.values_mut().filter(|r| r.peer == peer) {
            (record.bytes_sent, record.bytes_received) = (0, 0);
        }
        self.drain_pool_events(now);
        for conn in conns {
            self.replace_waiters(conn, now);
        }
    }

    // ---- driver inputs: connections ----

    /// The connection's TCP connect and HTTP/2 handshake are done. The
    /// endpoint PINGs once to prove the peer speaks HTTP/2 before it puts
    /// a stream on it.
    pub fn handle_connected(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.liveness.is_some() {
            return;
        }
        let (liveness, action) = Liveness::handshaking(now);
        c.liveness = Some(liveness);
        if action == LivenessAction::Ping {
            self.outputs.push_back(ClientOutput::Ping { conn });
        }
    }

    /// A connect attempt failed (`detail` says how: refused, not HTTP/2…):
    /// calls waiting for it fail fast with `UNAVAILABLE`, and the peer's
    /// slots back off.
    pub fn handle_connect_failed(&mut self, conn: ConnId, detail: &str, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let status = Status::new(
            Code::Unavailable,
            format!("connecting to {}: {detail}", c.peer),
        );
        self.pool.connect_failed(conn, status.clone(), now);
        self.fail_waiters(conn, &c.peer, &status, now);
        self.drain_pool_events(now);
    }

    /// The peer answered our PING.
    pub fn handle_ping_ack(&mut self, conn: ConnId, now: Instant) {
        let interval = self.keepalive_interval(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(liveness) = &mut c.liveness else {
            return;
        };
        if liveness.ping_acked(now, interval) {
            c.idle_since = Some(now);
            let max_streams = c.max_streams;
            self.pool.connected(conn, max_streams, now);
            self.replace_waiters(conn, now);
        }
    }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS is `max_streams` (`None`:
    /// unlimited). Report it when the connection is established and
    /// whenever it changes.
    pub fn handle_max_streams(&mut self, conn: ConnId, max_streams: Option<u32>, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.max_streams = max_streams;
        if c.liveness.as_ref().is_some_and(Liveness::is_ready) {
            self.pool.set_max_streams(conn, max_streams);
            self.replace_waiters(conn, now);
        }
    }

    /// The peer sent GOAWAY with this error code: streams it did not accept
    /// are reported by [`handle_stream_refused`](Self::handle_stream_refused),
    /// the others go on, and new calls use a new connection. A GOAWAY with
    /// `ENHANCE_YOUR_CALM` (grpc-go's answer to too many PINGs) doubles
    /// the keepalive interval to this peer.
    pub fn handle_goaway(&mut self, conn: ConnId, error_code: u32, now: Instant) {
        if let (ENHANCE_YOUR_CALM, Some(c)) = (error_code, self.conns.get(&conn)) {
            let peer = c.peer.clone();
            let doublings = self.calm_down.entry(peer.clone()).or_insert(0);
            *doublings = (*doublings + 1).min(MAX_KEEPALIVE_DOUBLINGS);
            let ids: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.peer == peer)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let interval = self.keepalive_interval(id);
                if let Some(liveness) = self.conns.get_mut(&id).and_then(|c| c.liveness.as_mut()) {
                    liveness.reschedule(now, interval);
                }
            }
        }
        self.pool.goaway(conn);
        self.replace_waiters(conn, now);
        self.drain_pool_events(now);
    }

    /// An established connection closed or broke (`detail` says how): its
    /// calls fail with `UNAVAILABLE`; the next call reconnects. Before the
    /// handshake PING is answered this is a failed connect.
    pub fn handle_connection_lost(&mut self, conn: ConnId, detail: &str, now: Instant) {
        let ready = self
            .conns
            .get(&conn)
            .and_then(|c| c.liveness.as_ref())
            .is_some_and(Liveness::is_ready);
        if !ready {
            return self.handle_connect_failed(conn, detail, now);
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let status = Status::new(
            Code::Unavailable,
            format!("connection to {} lost: {detail}", c.peer),
        );
        self.lose_connection(conn, status, now);
    }

    // ---- driver inputs: streams ----

    /// The response head of `call` arrived.
    pub fn handle_response_head(
        &mut self,
        call: CallId,
        head: &http::response::Parts,
        end_of_stream: bool,
        now: Instant,
    ) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_response_head(head, end_of_stream, now);
            self.process(call, now);
        }
    }

    /// Response DATA of `call` arrived; its capacity is released at once
    /// ([`ClientOutput::ReleaseCapacity`]).
    pub fn handle_response_data(&mut self, call: CallId, data: Bytes, now: Instant) {
        let Some(record) = self.calls.get_mut(&call) else {
            return;
        };
        record.bytes_received += data.len() as u64;
        if let Some(conn) = record.conn {
            if !data.is_empty() {
                self.outputs.push_back(ClientOutput::ReleaseCapacity {
                    conn,
                    call,
                    bytes: data.len(),
                });
            }
        }
        record.call.handle_data(data, now);
        self.process(call, now);
    }

    /// The trailers of `call` arrived.
    pub fn handle_response_trailers(&mut self, call: CallId, trailers: &HeaderMap, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_trailers(trailers, now);
            self.process(call, now);
        }
    }

    /// The response of `call` ended without trailers.
    pub fn handle_response_end(&mut self, call: CallId, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_end_of_stream(now);
            self.process(call, now);
        }
    }

    /// The stream of `call` was not processed by the peer (REFUSED_STREAM,
    /// above a GOAWAY's last stream, or the connection could not open it):
    /// the call fails with `UNAVAILABLE`, safe to retry.
    pub fn handle_stream_refused(&mut self, call: CallId, now: Instant) {
        self.handle_stream_reset(call, REFUSED_STREAM, now);
    }

    /// The peer reset the stream of `call` with this HTTP/2 error code.
    pub fn handle_stream_reset(&mut self, call: CallId, error_code: u32, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_reset(error_code, now);
            self.process(call, now);
        }
    }

    /// Time passed: deadlines, snapshot stalls, backoffs, connect
    /// deadlines, keepalive. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pool.handle_timeout(now);
        self.drain_pool_events(now);
        if let Some(timeout) = self.config.idle_timeout {
            let idle: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.idle_since.is_some_and(|since| now >= since + timeout))
                .map(|(id, _)| *id)
                .collect();
            for conn in idle {
                // No stream: retired, it closes at once and its slot
                // reconnects on next use.
                self.pool.goaway(conn);
                self.drain_pool_events(now);
            }
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let busy = self.pool.open_streams(conn) > 0;
            let interval = self.keepalive_interval(conn);
            let timeout = self.config.keepalive.timeout;
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let Some(liveness) = &mut c.liveness else {
                continue;
            };
            match liveness.handle_timeout(now, busy, interval, timeout) {
                Some(LivenessAction::Ping) => self.outputs.push_back(ClientOutput::Ping { conn }),
                Some(LivenessAction::Dead) => {
                    let peer = c.peer.clone();
                    self.conns.remove(&conn);
                    self.outputs.push_back(ClientOutput::Close { conn });
                    let status =
                        Status::new(Code::Unavailable, format!("keepalive to {peer} timed out"));
                    self.lose_connection(conn, status, now);
                }
                None => {}
            }
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(record) = self.calls.get_mut(&id) else {
                continue;
            };
            let was_finished = record.call.is_finished();
            record.call.handle_timeout(now);
            if let Kind::Snapshot { stall, .. } = &mut record.kind {
                if record.call.send_wanted() == 0 && !record.call.is_finished() {
                    // Nothing queued: waiting on the source, not the peer.
                    stall.progress(now);
                }
                if let Err(e) = stall.check(now) {
                    record.call.cancel(e.status());
                }
            }
            if !was_finished && record.call.is_finished() {
                self.wake(id);
            }
            self.process(id, now);
        }
    }

    // ---- the streams' send side ----

    /// Whether the endpoint still tracks `call`: false once it finished and
    /// has nothing left to transmit (a driver can drop its stream then).
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// Bytes `call` wants to send: how much capacity to reserve.
    pub fn send_wanted(&self, call: CallId) -> usize {
        self.calls.get(&call).map_or(0, |r| r.call.send_wanted())
    }

    /// The next thing to put on the stream of `call`, within `capacity`
    /// bytes of send window.
    pub fn poll_transmit(
        &mut self,
        call: CallId,
        capacity: usize,
        now: Instant,
    ) -> Option<ClientTransmit> {
        let record = self.calls.get_mut(&call)?;
        record.conn?;
        let transmit = record.call.poll_transmit(capacity);
        if let Some(ClientTransmit::Data { data, .. }) = &transmit {
            record.bytes_sent += data.len() as u64;
        }
        if let (Some(ClientTransmit::Data { data, .. }), Kind::Snapshot { stall, .. }) =
            (&transmit, &mut record.kind)
        {
            if !data.is_empty() {
                stall.progress(now);
            }
        }
        let wants_more = self.snapshot_wants_data(call);
        if wants_more && matches!(transmit, Some(ClientTransmit::Data { .. })) {
            self.events
                .push_back(ClientEvent::SnapshotWantsData { call });
        }
        self.process(call, now);
        transmit
    }

    // ---- internals ----

    fn keepalive_interval(&self, conn: ConnId) -> Option<Duration> {
        let base = self.config.keepalive.interval?;
        let doublings = self
            .conns
            .get(&conn)
            .and_then(|c| self.calm_down.get(&c.peer))
            .copied()
            .unwrap_or(0);
        base.checked_mul(1 << doublings)
    }

    /// Ends a call locally with `error` as its outcome.
    fn end_locally(&mut self, id: CallId, error: TransportError, now: Instant) {
        let Some(record) = self.calls.get_mut(&id) else {
            return;
        };
        if record.call.is_finished() {
            return;
        }
        let status = error.status();
        record.local_error.get_or_insert(error);
        record.call.cancel(status);
        self.wake(id);
        self.process(id, now);
    }

    /// Fails the calls of a connection that is gone.
    fn lose_connection(&mut self, conn: ConnId, status: Status, now: Instant) {
        // The pool first, so that nothing is placed on the dead connection.
        self.pool.connection_lost(conn, now);
        let ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, r)| r.conn == Some(conn))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(record) = self.calls.get_mut(&id) {
                record.call.handle_connection_lost(status.clone());
                self.process(id, now);
            }
        }
        self.replace_waiters(conn, now);
        self.drain_pool_events(now);
    }

    fn insert(
        &mut self,
        peer: &str,
        lane: Lane,
        method: RpcMethod,
        timeout: Option<Duration>,
        kind: Kind,
        now: Instant,
    ) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        let authority = Authority::from_str(peer).ok();
        let valid_peer = authority.is_some();
        let head = RequestHead::new(
            method,
            authority.unwrap_or_else(|| Authority::from_static("invalid")),
            timeout,
        )
        .with_https(self.config.https)
        .with_metadata(self.metadata.clone());
        let record = Record {
            peer: peer.to_owned(),
            lane,
            method,
            call: ClientCall::new(head, self.config.max_recv_message_len, now),
            kind,
            conn: None,
            local_error: None,
            reported: false,
            bytes_sent: 0,
            bytes_received: 0,
        };
        self.calls.insert(id, record);
        if self.closed {
            // Opening anything on a closed transport, a pipeline too, is
            // a transport error (hashicorp's ErrTransportShutdown).
            let error = TransportError::Shutdown;
            if let Some(record) = self.calls.get_mut(&id) {
                record.local_error = Some(error.clone());
            }
            self.fail_unopened(id, error.status());
        } else if !valid_peer {
            self.fail_unopened(
                id,
                Status::new(
                    Code::InvalidArgument,
                    format!("invalid peer address {peer:?}"),
                ),
            );
        }
        id
    }

    /// Fails a call that has no stream yet.
    fn fail_unopened(&mut self, id: CallId, status: Status) {
        if let Some(record) = self.calls.get_mut(&id) {
            record.call.handle_connection_lost(status);
        }
    }

    /// Finds a connection for a call that has none.
    fn place(&mut self, id: CallId, now: Instant) {
        let Some(record) = self.calls.get(&id) else {
            return;
        };
        if record.conn.is_some() || record.call.is_finished() {
            return;
        }
        match self.pool.pick(&record.peer, record.lane, now) {
            Ok(Pick::Ready(conn)) => {
                self.pool.stream_opened(conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.idle_since = None;
                }
                let interval = self.keepalive_interval(conn);
                if let Some(liveness) = self.conns.get_mut(&conn).and_then(|c| c.liveness.as_mut())
                {
                    liveness.stream_opened(now, interval);
                }
                let Some(record) = self.calls.get_mut(&id) else {
                    return;
                };
                record.conn = Some(conn);
                let request = record.call.request(now);
                let send_now = match record.kind {
                    Kind::Unary { .. } => record
                        .call
                        .send_wanted()
                        .min(DEFAULT_INITIAL_WINDOW as usize),
                    _ => 0,
                };
                self.outputs.push_back(ClientOutput::OpenStream {
                    conn,
                    call: id,
                    method: record.method,
                    request,
                    send_now,
                });
                if matches!(record.kind, Kind::Pipeline { .. }) {
                    self.events
                        .push_back(ClientEvent::PipelineOpened { pipeline: id });
                }
                self.wake(id);
            }
            Ok(Pick::Connect(conn)) => {
                let peer = record.peer.clone();
                self.conns.insert(
                    conn,
                    Connection {
                        peer: peer.clone(),
                        liveness: None,
                        max_streams: None,
                        idle_since: None,
                    },
                );
                self.outputs.push_back(ClientOutput::Connect { conn, peer });
                self.waiting.entry(conn).or_default().push(id);
            }
            Ok(Pick::Wait(conn)) => self.waiting.entry(conn).or_default().push(id),
            Err(status) => {
                self.fail_unopened(id, status);
                self.process(id, now);
            }
        }
    }

    /// The calls that waited for a connect that failed fail with it: a
    /// call makes one connect attempt (the pool's backoff decides when
    /// the next call may make another).
    fn fail_waiters(&mut self, conn: ConnId, peer: &str, why: &Status, now: Instant) {
        let status = Status::new(
            Code::Unavailable,
            format!(
                "peer {peer} is unreachable, retrying later: {}",
                why.message()
            ),
        );
        for id in self.waiting.remove(&conn).unwrap_or_default() {
            self.fail_unopened(id, status.clone());
            self.process(id, now);
        }
    }

    fn replace_waiters(&mut self, conn: ConnId, now: Instant) {
        for id in self.waiting.remove(&conn).unwrap_or_default() {
            self.place(id, now);
        }
    }

    fn drain_pool_events(&mut self, now: Instant) {
        while let Some(event) = self.pool.poll_event() {
            match event {
                PoolEvent::Close(conn) => {
                    self.conns.remove(&conn);
                    self.outputs.push_back(ClientOutput::Close { conn });
                }
                PoolEvent::AbandonConnect(conn) => {
                    self.outputs.push_back(ClientOutput::Close { conn });
                    if let Some(c) = self.conns.remove(&conn) {
                        let status = Status::new(
                            Code::Unavailable,
                            format!(
                                "connect timed out after {:?}",
                                self.config.pool.connect_timeout
                            ),
                        );
                        self.fail_waiters(conn, &c.peer, &status, now);
                    }
                }
            }
        }
    }

    /// Asks the driver to transmit for `id` if it has something to send.
    fn wake(&mut self, id: CallId) {
        if let Some(record) = self.calls.get(&id) {
            if let (Some(conn), true) = (record.conn, record.call.has_transmit()) {
                self.outputs
                    .push_back(ClientOutput::Transmit { conn, call: id });
            }
        }
    }

    /// Turns a call's events into outcomes, and forgets the call once it is
    /// over and has nothing left to send.
    fn process(&mut self, id: CallId, now: Instant) {
        let Some(record) = self.calls.get_mut(&id) else {
            return;
        };
        let mut cancel = None;
        while let Some(event) = record.call.poll_event() {
            match (event, &mut record.kind) {
                (
                    CallEvent::Message(body),
                    Kind::Unary { response } | Kind::Snapshot { response, .. },
                ) => {
                    if response.replace(body).is_some() {
                        cancel = Some(Status::new(
                            Code::Internal,
                            "the peer sent more than one response message",
                        ));
                    }
                }
                (CallEvent::Message(body), Kind::Pipeline { window, .. }) => {
                    match window.complete() {
                        Ok(seq) => {
                            let result = AppendEntriesResponse::decode(body)
                                .map_err(|e| TransportError::Status(e.status()));
                            if let Err(e) = &result {
                                cancel = Some(e.status());
                            }
                            self.events.push_back(ClientEvent::Appended {
                                pipeline: id,
                                seq,
                                result,
                            });
                            if window.has_room() {
                                self.events
                                    .push_back(ClientEvent::PipelineReady { pipeline: id });
                            }
                        }
                        Err(status) => cancel = Some(status),
                    }
                }
                (CallEvent::Finished(status), kind) => {
                    if !record.reported {
                        record.reported = true;
                        let error = record.local_error.clone();
                        let event = finish_event(id, record.method, kind, status, error);
                        self.events.extend(event);
                    }
                }
            }
            if let Some(status) = cancel.take() {
                record.call.cancel(status);
            }
        }
        if record.call.is_finished() {
            let conn = record.conn;
            let done = conn.is_none() || !record.call.has_transmit();
            if !done {
                self.wake(id);
                return;
            }
            if let Some(record) = self.calls.remove(&id) {
                if record.bytes_sent > 0 || record.bytes_received > 0 {
                    let traffic = self.traffic.entry(record.peer).or_default();
                    traffic.0 += record.bytes_sent;
                    traffic.1 += record.bytes_received;
                }
            }
            if let Some(conn) = conn {
                self.pool.stream_closed(conn);
                if self.pool.open_streams(conn) == 0 {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.idle_since.get_or_insert(now);
                    }
                }
                self.drain_pool_events(now);
                self.replace_waiters(conn, now);
            }
        }
    }
}

/// The events that report a finished call; `local` is why it was ended
/// locally, if it was.
fn finish_event(
    id: CallId,
    method: RpcMethod,
    kind: &mut Kind,
    status: Status,
    local: Option<TransportError>,
) -> Vec<ClientEvent> {
    let failure = local.unwrap_or(TransportError::Status(status.clone()));
    match kind {
        Kind::Unary { response } | Kind::Snapshot { response, .. } => {
            let result = if status.code() != Code::Ok {
                Err(failure)
            } else {
                match response.take() {
                    Some(body) => RaftResponse::decode(method, body)
                        .map_err(|e| TransportError::Status(e.status())),
                    None => Err(TransportError::Status(Status::new(
                        Code::Internal,
                        "the peer sent no response message",
                    ))),
                }
            };
            vec![ClientEvent::Completed { call: id, result }]
        }
        Kind::Pipeline { window, .. } => {
            let error = if status.code() == Code::Ok {
                TransportError::Status(Status::new(
                    Code::Unavailable,
                    "the peer ended the pipeline",
                ))
            } else {
                failure
            };
            let mut events: Vec<ClientEvent> = window
                .fail(error.status())
                .into_iter()
                .map(|seq| ClientEvent::Appended {
                    pipeline: id,
                    seq,
                    result: Err(error.clone()),
                })
                .collect();
            events.push(ClientEvent::PipelineClosed {
                pipeline: id,
                error,
            });
            events
        }
    }
}

#[cfg(test)]
mod tests;
