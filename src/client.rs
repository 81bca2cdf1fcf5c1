//! The client side of the transport, as one state machine.
//!
//! [`ClientEndpoint`] owns every outgoing call of a node: it encodes the
//! request, picks the connection through the [`PeerPool`] (lanes, backoff,
//! fail fast), opens the stream when the connection is ready, runs the
//! [`ClientCall`], and reports the outcome of each call exactly once. It
//! runs AppendEntries pipelines through a [`PipelineWindow`] (ordered
//! completions, back-pressure) and snapshot streams through a
//! [`SnapshotSender`] (chunking, running checksum, size-scaled deadline,
//! stall detector). An adapter moves its instructions to sockets and h2,
//! and the answers back; it decides nothing.
//!
//! # The contract
//!
//! Inputs come from two sides, every one taking `now` where time matters:
//! * the application: [`start_rpc`](ClientEndpoint::start_rpc),
//!   [`start_snapshot`](ClientEndpoint::start_snapshot) with
//!   [`snapshot_data`](ClientEndpoint::snapshot_data) and
//!   [`snapshot_end`](ClientEndpoint::snapshot_end),
//!   [`open_pipeline`](ClientEndpoint::open_pipeline) with
//!   [`pipeline_append`](ClientEndpoint::pipeline_append) and
//!   [`close_pipeline`](ClientEndpoint::close_pipeline),
//!   [`cancel`](ClientEndpoint::cancel), [`close`](ClientEndpoint::close);
//! * the adapter: connection results (`connected`, `connect_failed`,
//!   `connection_lost`, `goaway`), the response side of each stream
//!   (`response_head`, `response_data`, `response_trailers`,
//!   `response_end`, `stream_reset`) and `handle_timeout`.
//!
//! After **every** input, drain [`poll_output`](ClientEndpoint::poll_output)
//! (what the adapter must do: connect, close, open a stream, transmit on
//! one) and [`poll_event`](ClientEndpoint::poll_event) (what the
//! application learns: outcomes), then read
//! [`poll_timeout`](ClientEndpoint::poll_timeout). When a stream has
//! something to send ([`ClientOutput::Transmit`]), or gets send capacity,
//! call [`poll_transmit`](ClientEndpoint::poll_transmit) with the capacity
//! h2 granted (reserve [`send_wanted`](ClientEndpoint::send_wanted)) until
//! it returns `None`, then drain the outputs and events again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, Request};

use crate::call::{ClientCall, ClientEvent as CallEvent, ClientTransmit};
use crate::error::TransportError;
use crate::framing::{
    DEFAULT_MAX_MESSAGE_LEN, DEFAULT_ZERO_COPY_MIN, EncodedMessage, MessageBody, MessageEncoder,
};
use crate::head::{RequestHead, RpcMethod};
use crate::heartbeat::is_heartbeat;
use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, RaftMessage, RaftResponse,
    RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest, RequestVoteResponse,
    TimeoutNowRequest, TimeoutNowResponse,
};
use crate::pipeline::{DEFAULT_MAX_IN_FLIGHT, PipelineError, PipelineWindow, pipeline_shutdown};
use crate::pool::{ConnId, Lane, PeerPool, Pick, PoolConfig, PoolEvent};
use crate::snapshot::{
    DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT_SCALE, SnapshotProgress, SnapshotSender, StallDetector,
    snapshot_timeout,
};
use crate::status::{Code, Status};

/// Configuration of a [`ClientEndpoint`], with the transport's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            pool: PoolConfig::default(),
            rpc_timeout: Duration::from_secs(10),
            max_send_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_recv_message_len: DEFAULT_MAX_MESSAGE_LEN,
            zero_copy_min: DEFAULT_ZERO_COPY_MIN,
            pipeline_window: DEFAULT_MAX_IN_FLIGHT,
            snapshot_chunk_size: DEFAULT_CHUNK_SIZE,
            snapshot_timeout_scale: DEFAULT_TIMEOUT_SCALE,
            snapshot_stall_timeout: Duration::from_secs(30),
        }
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

/// What the adapter must do.
// Outputs are drained right after they are made: boxing the request head
// would cost an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ClientOutput {
    /// Open a connection to `peer` (TCP, then the HTTP/2 handshake) and
    /// report [`ClientEndpoint::connected`] or
    /// [`ClientEndpoint::connect_failed`].
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
    /// Open a stream for `call` on `conn` with this request head (without
    /// END_STREAM); its data comes from `poll_transmit`. If the connection
    /// cannot open it, report [`ClientEndpoint::stream_reset`] with
    /// REFUSED_STREAM.
    OpenStream {
        /// The connection.
        conn: ConnId,
        /// The call.
        call: CallId,
        /// The request head.
        request: Request<()>,
    },
    /// `call` has something to send: call `poll_transmit` for it.
    Transmit {
        /// The call.
        call: CallId,
    },
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A unary call or snapshot finished. Exactly once per call.
    Completed {
        /// The call.
        call: CallId,
        /// Its response, or the status it failed with.
        result: Result<RaftResponse, Status>,
    },
    /// A pipelined AppendEntries finished, in the order appended. Exactly
    /// once per append.
    Appended {
        /// The pipeline.
        pipeline: CallId,
        /// The append's sequence number from `pipeline_append`.
        seq: u64,
        /// Its response, or the status it failed with.
        result: Result<AppendEntriesResponse, Status>,
    },
    /// A pipeline is over (closed, or its stream failed), after the
    /// `Appended` events of everything it had in flight.
    PipelineClosed {
        /// The pipeline.
        pipeline: CallId,
        /// Why (the pipeline-shutdown status when closed).
        status: Status,
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

/// Why `pipeline_append` refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The window is full: wait for [`ClientEvent::PipelineReady`].
    #[error("pipeline window is full")]
    Full,
    /// The pipeline is over.
    #[error("pipeline is closed: {0}")]
    Closed(Status),
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
    /// The outcome was reported.
    reported: bool,
}

/// The client side of the transport for every peer. See the module docs
/// for the input/output contract.
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
/// // The adapter could not connect: the call fails fast, once.
/// client.connect_failed(conn, raft_grpc_transport::Status::new(Code::Unavailable, "connection refused"), now);
/// let Some(ClientEvent::Completed { call: c, result: Err(status) }) = client.poll_event() else { panic!() };
/// assert_eq!((c, status.code()), (call, Code::Unavailable));
/// ```
#[derive(Debug)]
pub struct ClientEndpoint {
    config: ClientConfig,
    encoder: MessageEncoder,
    pool: PeerPool,
    calls: BTreeMap<CallId, Record>,
    /// Calls waiting for a connection to become ready or to have room.
    waiting: HashMap<ConnId, Vec<CallId>>,
    next_call: u64,
    closed: bool,
    outputs: VecDeque<ClientOutput>,
    events: VecDeque<ClientEvent>,
}

/// The status of calls when the endpoint is closed.
pub fn transport_shutdown() -> Status {
    Status::new(Code::Unavailable, "transport shut down")
}

impl ClientEndpoint {
    /// An endpoint with no connections.
    pub fn new(config: ClientConfig) -> Self {
        ClientEndpoint {
            encoder: MessageEncoder::new(config.max_send_message_len, config.zero_copy_min),
            pool: PeerPool::new(config.pool),
            config,
            calls: BTreeMap::new(),
            waiting: HashMap::new(),
            next_call: 1,
            closed: false,
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

    /// The next instruction for the adapter.
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
        calls.chain(self.pool.poll_timeout()).min()
    }

    /// Starts a unary call to `peer`. Its outcome comes as exactly one
    /// [`ClientEvent::Completed`].
    pub fn start_rpc(&mut self, peer: &str, rpc: OutgoingRpc, now: Instant) -> CallId {
        let method = rpc.method();
        let lane = rpc.lane();
        let encoded = rpc.encode(&self.encoder);
        let id = self.insert(
            peer,
            lane,
            method,
            Some(self.config.rpc_timeout),
            Kind::Unary { response: None },
            now,
        );
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
    /// [`snapshot_data`](Self::snapshot_data) while
    /// [`snapshot_wants_data`](Self::snapshot_wants_data) is true (else wait
    /// for [`ClientEvent::SnapshotWantsData`]), then
    /// [`snapshot_end`](Self::snapshot_end). Its outcome comes as exactly
    /// one [`ClientEvent::Completed`].
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
    /// [`snapshot_end`](Self::snapshot_end), whenever less than two chunks
    /// wait to be sent (once the declared size is read, to see the source
    /// end: more bytes fail the call).
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
    pub fn snapshot_data(&mut self, call: CallId, data: Bytes, now: Instant) -> Result<(), Status> {
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
    pub fn snapshot_end(&mut self, call: CallId, now: Instant) {
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
    /// lane. It has no deadline; its appends complete in order.
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
    pub fn pipeline_append(
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
            ..
        }) = self.calls.get_mut(&pipeline)
        else {
            return Err(AppendError::UnknownPipeline);
        };
        if let Some(status) = window.closed() {
            return Err(AppendError::Closed(status.clone()));
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
            Err(PipelineError::Closed(status, _)) => return Err(AppendError::Closed(status)),
        }
        *next_seq += 1;
        call.send(encoded);
        self.wake(pipeline);
        Ok(seq)
    }

    /// Closes a pipeline: appends in flight fail with the pipeline-shutdown
    /// status, then [`ClientEvent::PipelineClosed`] follows.
    pub fn close_pipeline(&mut self, pipeline: CallId, now: Instant) {
        if let Some(Record {
            kind: Kind::Pipeline { .. },
            call,
            ..
        }) = self.calls.get_mut(&pipeline)
        {
            call.cancel(pipeline_shutdown());
            self.wake(pipeline);
            self.process(pipeline, now);
        }
    }

    /// Ends a call locally: it fails with `status` (`CANCELLED` when the
    /// caller gave up), its stream is reset, and a pipeline's appends in
    /// flight fail too.
    pub fn cancel(&mut self, call: CallId, status: Status, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.cancel(status);
            self.wake(call);
            self.process(call, now);
        }
    }

    /// Shuts the endpoint down: every call fails with `UNAVAILABLE`
    /// ("transport shut down"), every connection is to be closed, and later
    /// calls fail at once. Idempotent.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(record) = self.calls.get_mut(&id) {
                let status = match record.kind {
                    Kind::Pipeline { .. } => pipeline_shutdown(),
                    _ => transport_shutdown(),
                };
                record.call.cancel(status);
                self.wake(id);
                self.process(id, now);
            }
        }
        let peers: Vec<String> = self.pool.peers().map(str::to_owned).collect();
        for peer in peers {
            self.pool.remove_peer(&peer);
        }
        self.waiting.clear();
        self.drain_pool_events(now);
    }

    /// Forgets a peer: its connections are closed and its calls fail with
    /// `UNAVAILABLE`.
    pub fn remove_peer(&mut self, peer: &str, now: Instant) {
        let ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(record) = self.calls.get_mut(&id) {
                record.call.cancel(Status::new(
                    Code::Unavailable,
                    format!("peer {peer} removed"),
                ));
                self.wake(id);
                self.process(id, now);
            }
        }
        self.pool.remove_peer(peer);
        self.drain_pool_events(now);
    }

    /// A connection opened; `max_streams` is the peer's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (`None`: unlimited).
    pub fn connected(&mut self, conn: ConnId, max_streams: Option<u32>, now: Instant) {
        self.pool.connected(conn, max_streams, now);
        self.replace_waiters(conn, now);
    }

    /// The peer changed its SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn set_max_streams(&mut self, conn: ConnId, max_streams: Option<u32>, now: Instant) {
        self.pool.set_max_streams(conn, max_streams);
        self.replace_waiters(conn, now);
    }

    /// A connect attempt failed with this status (usually `UNAVAILABLE`).
    pub fn connect_failed(&mut self, conn: ConnId, error: Status, now: Instant) {
        self.pool.connect_failed(conn, error, now);
        self.replace_waiters(conn, now);
        self.drain_pool_events(now);
    }

    /// An open connection closed or broke: its calls fail with `status`
    /// (usually `UNAVAILABLE`); the next call reconnects.
    pub fn connection_lost(&mut self, conn: ConnId, status: Status, now: Instant) {
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

    /// The peer sent GOAWAY on this connection: streams it did not accept
    /// are reported by [`stream_reset`](Self::stream_reset) (with
    /// REFUSED_STREAM, so they fail with `UNAVAILABLE`), the others go on,
    /// and new calls use a new connection.
    pub fn goaway(&mut self, conn: ConnId, now: Instant) {
        self.pool.goaway(conn);
        self.replace_waiters(conn, now);
        self.drain_pool_events(now);
    }

    /// The response head of `call` arrived.
    pub fn response_head(
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

    /// Response DATA of `call` arrived. Release its HTTP/2 capacity once
    /// passed here.
    pub fn response_data(&mut self, call: CallId, data: Bytes, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_data(data, now);
            self.process(call, now);
        }
    }

    /// The trailers of `call` arrived.
    pub fn response_trailers(&mut self, call: CallId, trailers: &HeaderMap, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_trailers(trailers, now);
            self.process(call, now);
        }
    }

    /// The response of `call` ended without trailers.
    pub fn response_end(&mut self, call: CallId, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_end_of_stream(now);
            self.process(call, now);
        }
    }

    /// The stream of `call` was reset (by the peer, or refused by the
    /// connection) with this HTTP/2 error code.
    pub fn stream_reset(&mut self, call: CallId, error_code: u32, now: Instant) {
        if let Some(record) = self.calls.get_mut(&call) {
            record.call.handle_reset(error_code, now);
            self.process(call, now);
        }
    }

    /// Whether the endpoint still tracks `call`: false once it finished and
    /// has nothing left to transmit (a stream driver can stop then).
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// Whether `call` accepts more response data now (see
    /// [`ClientCall::wants_data`]).
    pub fn wants_data(&self, call: CallId) -> bool {
        self.calls.get(&call).is_some_and(|r| r.call.wants_data())
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

    /// Time passed: deadlines, snapshot stalls, backoffs and connect
    /// timeouts. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pool.handle_timeout(now);
        self.drain_pool_events(now);
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
        let authority =
            Authority::from_str(peer).unwrap_or_else(|_| Authority::from_static("invalid"));
        let head = RequestHead {
            method,
            authority,
            timeout,
        };
        let record = Record {
            peer: peer.to_owned(),
            lane,
            method,
            call: ClientCall::new(head, self.config.max_recv_message_len, now),
            kind,
            conn: None,
            reported: false,
        };
        self.calls.insert(id, record);
        if self.closed {
            let status = match method {
                RpcMethod::AppendEntriesPipeline => pipeline_shutdown(),
                _ => transport_shutdown(),
            };
            self.fail_unopened(id, status);
        } else if Authority::from_str(peer).is_err() {
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
                let Some(record) = self.calls.get_mut(&id) else {
                    return;
                };
                record.conn = Some(conn);
                let request = record.call.request(now);
                self.outputs.push_back(ClientOutput::OpenStream {
                    conn,
                    call: id,
                    request,
                });
                self.wake(id);
            }
            Ok(Pick::Connect(conn)) => {
                let peer = record.peer.clone();
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

    fn replace_waiters(&mut self, conn: ConnId, now: Instant) {
        for id in self.waiting.remove(&conn).unwrap_or_default() {
            self.place(id, now);
        }
    }

    fn drain_pool_events(&mut self, now: Instant) {
        while let Some(event) = self.pool.poll_event() {
            match event {
                PoolEvent::Close(conn) => self.outputs.push_back(ClientOutput::Close { conn }),
                PoolEvent::AbandonConnect(conn) => {
                    self.outputs.push_back(ClientOutput::Close { conn });
                    self.replace_waiters(conn, now);
                }
            }
        }
    }

    /// Asks the adapter to transmit for `id` if it has something to send.
    fn wake(&mut self, id: CallId) {
        if let Some(record) = self.calls.get(&id) {
            if record.conn.is_some() && record.call.has_transmit() {
                self.outputs.push_back(ClientOutput::Transmit { call: id });
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
                            let result =
                                AppendEntriesResponse::decode(body).map_err(|e| e.status());
                            if let Err(status) = &result {
                                cancel = Some(status.clone());
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
                        let event = finish_event(id, record.method, kind, status);
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
            self.calls.remove(&id);
            if let Some(conn) = conn {
                self.pool.stream_closed(conn);
                self.drain_pool_events(now);
                self.replace_waiters(conn, now);
            }
        }
    }
}

/// The events that report a finished call.
fn finish_event(
    id: CallId,
    method: RpcMethod,
    kind: &mut Kind,
    status: Status,
) -> Vec<ClientEvent> {
    match kind {
        Kind::Unary { response } | Kind::Snapshot { response, .. } => {
            let result = if status.code() != Code::Ok {
                Err(status)
            } else {
                match response.take() {
                    Some(body) => RaftResponse::decode(method, body).map_err(|e| e.status()),
                    None => Err(Status::new(
                        Code::Internal,
                        "the peer sent no response message",
                    )),
                }
            };
            vec![ClientEvent::Completed { call: id, result }]
        }
        Kind::Pipeline { window, .. } => {
            let status = if status.code() == Code::Ok {
                Status::new(Code::Unavailable, "the peer ended the pipeline")
            } else {
                status
            };
            let mut events: Vec<ClientEvent> = window
                .fail(status.clone())
                .into_iter()
                .map(|seq| ClientEvent::Appended {
                    pipeline: id,
                    seq,
                    result: Err(status.clone()),
                })
                .collect();
            events.push(ClientEvent::PipelineClosed {
                pipeline: id,
                status,
            });
            events
        }
    }
}
