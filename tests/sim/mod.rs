//! A deterministic simulation of Raft nodes talking through the sans-IO core.
//!
//! Each node has a `ClientEndpoint` and serves incoming streams with
//! `ServerCall`s and a reference responder (the one `node serve` uses:
//! AppendEntries succeeds with the request's term, votes are granted,
//! snapshots are read whole). Between them is an in-memory model of HTTP/2
//! on virtual time: connections with one-way latency and bandwidth (frames
//! on one connection are serialized, FIFO), streams with a per-stream flow
//! control window released by the receiver only when it takes the data,
//! GOAWAY, stream resets, refused connects and lost connections.
//!
//! The harness plays the adapter's part (moving outputs to the model and
//! the model's deliveries back as inputs) and the application's (a
//! heartbeat fast path, a consumer that handles one RPC at a time and may
//! read snapshots slowly). Everything is recorded for the tests to check.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use raft_grpc_transport::call::{
    ClientTransmit, ServerCall, ServerConfig, ServerEvent, ServerTransmit,
};
use raft_grpc_transport::client::{
    CallId, ClientConfig, ClientEndpoint, ClientEvent, ClientOutput, OutgoingRpc,
};
use raft_grpc_transport::heartbeat::is_heartbeat;
use raft_grpc_transport::message::*;
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::reference;
use raft_grpc_transport::{Code, Status};

/// HTTP/2 REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 0x7;

/// The address of node `i`.
pub fn addr(i: usize) -> String {
    format!("node{i}:7000")
}

fn node_of(addr: &str) -> usize {
    addr.trim_start_matches("node")
        .trim_end_matches(":7000")
        .parse()
        .expect("a simulated address")
}

/// Knobs of the simulated network and nodes.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One-way latency of every frame.
    pub latency: Duration,
    /// Bytes per second each direction of a connection carries.
    pub bandwidth: f64,
    /// Per-stream flow-control window, both directions.
    pub stream_window: usize,
    /// Client configuration of every node.
    pub client: ClientConfig,
    /// Server configuration of every node.
    pub server: ServerConfig,
    /// How long the consumer takes per RPC (not heartbeats).
    pub consumer_delay: Duration,
    /// Snapshot bytes per second the consumer reads; `None`: at once.
    pub snapshot_read_rate: Option<f64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::from_micros(250),
            bandwidth: 1e9,
            stream_window: 65_535,
            client: ClientConfig::default(),
            server: ServerConfig::default(),
            consumer_delay: Duration::ZERO,
            snapshot_read_rate: None,
        }
    }
}

enum C2S {
    Headers(http::request::Parts),
    Data(Bytes, bool),
    Reset(u32),
}

enum S2C {
    Headers(http::response::Parts, bool),
    Data(Bytes),
    Trailers(HeaderMap),
    Reset(u32),
}

enum Delivery {
    ConnectResult {
        client: usize,
        conn: ConnId,
        ok: bool,
    },
    ToServer {
        key: ConnKey,
        call: CallId,
        frame: C2S,
    },
    ToClient {
        key: ConnKey,
        call: CallId,
        frame: S2C,
    },
    /// The server released `n` bytes of the client's send window.
    WindowToClient {
        key: ConnKey,
        call: CallId,
        n: usize,
    },
    /// The client released `n` bytes of the server's send window.
    WindowToServer {
        key: ConnKey,
        call: CallId,
        n: usize,
    },
    GoAway {
        key: ConnKey,
    },
    ConsumerWake {
        node: usize,
    },
}

/// A connection: the client node and its connection id.
pub type ConnKey = (usize, ConnId);

struct SimConn {
    server: usize,
    up: bool,
    goaway_sent: bool,
    c2s_busy: Duration,
    s2c_busy: Duration,
    streams: BTreeMap<CallId, SimStream>,
}

#[derive(Default)]
struct SimStream {
    /// Client bytes sent and not yet released by the server.
    c2s_unreleased: usize,
    /// Server bytes sent and not yet released by the client.
    s2c_unreleased: usize,
    server: Option<ServerStream>,
    /// The server refused the stream (GOAWAY) or it is otherwise gone.
    dead: bool,
}

struct ServerStream {
    call: ServerCall,
    /// Data received but not yet taken (the call did not want it).
    pending: VecDeque<Bytes>,
    pending_end: bool,
}

/// A job of a node's consumer: one RPC.
#[derive(Debug, Clone)]
struct Job {
    key: ConnKey,
    call: CallId,
    request: RaftRequest,
    /// Snapshot bytes read so far.
    received: Vec<u8>,
}

/// What a node records.
#[derive(Debug, Default)]
pub struct NodeLog {
    /// Client outcomes: (call, result), in order.
    pub completed: Vec<(
        CallId,
        Result<raft_grpc_transport::message::RaftResponse, Status>,
        Duration,
    )>,
    /// Pipeline outcomes: (pipeline, seq, ok).
    pub appended: Vec<(CallId, u64, Result<AppendEntriesResponse, Status>)>,
    /// Pipelines that closed.
    pub pipelines_closed: Vec<(CallId, Status)>,
    /// Connect attempts: (time, peer).
    pub connects: Vec<(Duration, String)>,
    /// Streams opened: (call, conn, time).
    pub opened: Vec<(CallId, ConnId, Duration)>,
    /// Snapshots this node installed as a server: (meta, bytes, ok).
    pub installs: Vec<(InstallSnapshotRequest, Vec<u8>, bool)>,
    /// Snapshot progress reports: (call, bytes, total).
    pub progress: Vec<(CallId, u64, u64)>,
    /// Heartbeats answered on the fast path.
    pub heartbeats_answered: usize,
    /// Server calls that failed: (status).
    pub server_failures: Vec<Status>,
}

/// A simulated node.
pub struct Node {
    /// The client side.
    pub client: ClientEndpoint,
    /// What happened.
    pub log: NodeLog,
    consumer: VecDeque<Job>,
    current: Option<Job>,
    consumer_busy_until: Duration,
    /// Snapshot sources being streamed: call → (data, offset).
    sources: HashMap<CallId, (Bytes, usize, usize)>,
}

/// The simulation.
pub struct Sim {
    /// Knobs.
    pub config: SimConfig,
    base: Instant,
    /// Virtual time since the start.
    pub now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Delivery>,
    /// The nodes.
    pub nodes: Vec<Node>,
    conns: HashMap<ConnKey, SimConn>,
    /// Connects to node `i` are refused until this time.
    pub refuse_until: HashMap<usize, Duration>,
    /// Calls waiting to transmit.
    dirty: Vec<(usize, CallId)>,
}

impl Sim {
    /// `n` nodes, no connections.
    pub fn new(n: usize, config: SimConfig) -> Sim {
        let nodes = (0..n)
            .map(|_| Node {
                client: ClientEndpoint::new(config.client),
                log: NodeLog::default(),
                consumer: VecDeque::new(),
                current: None,
                consumer_busy_until: Duration::ZERO,
                sources: HashMap::new(),
            })
            .collect();
        Sim {
            config,
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            conns: HashMap::new(),
            refuse_until: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// The current virtual instant.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn schedule(&mut self, at: Duration, delivery: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), delivery);
    }

    /// Arrival time of `bytes` sent now on a connection direction.
    fn transit(&mut self, key: ConnKey, to_server: bool, bytes: usize) -> Duration {
        let now = self.now;
        let latency = self.config.latency;
        let serialize = Duration::from_secs_f64((bytes + 9) as f64 / self.config.bandwidth);
        let Some(conn) = self.conns.get_mut(&key) else {
            return now + latency;
        };
        let busy = if to_server {
            &mut conn.c2s_busy
        } else {
            &mut conn.s2c_busy
        };
        *busy = (*busy).max(now) + serialize;
        *busy + latency
    }

    // ---- the application's side of the client ----

    /// Node `from` starts a unary RPC to node `to`.
    pub fn rpc(&mut self, from: usize, to: usize, rpc: OutgoingRpc) -> CallId {
        let now = self.instant();
        let id = self.nodes[from].client.start_rpc(&addr(to), rpc, now);
        self.after_client(from);
        id
    }

    /// Node `from` starts streaming `data` as a snapshot to node `to`.
    pub fn snapshot(
        &mut self,
        from: usize,
        to: usize,
        meta: InstallSnapshotRequest,
        data: Bytes,
        read_size: usize,
    ) -> CallId {
        let now = self.instant();
        let id = self.nodes[from].client.start_snapshot(&addr(to), meta, now);
        self.nodes[from]
            .sources
            .insert(id, (data, 0, read_size.max(1)));
        self.feed_snapshot(from, id);
        self.after_client(from);
        id
    }

    fn feed_snapshot(&mut self, node: usize, call: CallId) {
        let now = self.instant();
        loop {
            let n = &mut self.nodes[node];
            let Some((data, offset, read)) = n.sources.get_mut(&call) else {
                return;
            };
            if *offset >= data.len() {
                n.sources.remove(&call);
                n.client.snapshot_end(call, now);
                return;
            }
            if !n.client.snapshot_wants_data(call) {
                return;
            }
            let end = (*offset + *read).min(data.len());
            let piece = data.slice(*offset..end);
            *offset = end;
            if n.client.snapshot_data(call, piece, now).is_err() {
                n.sources.remove(&call);
                return;
            }
        }
    }

    /// Node `from` opens a pipeline to node `to`.
    pub fn pipeline(&mut self, from: usize, to: usize) -> CallId {
        let now = self.instant();
        let id = self.nodes[from].client.open_pipeline(&addr(to), now);
        self.after_client(from);
        id
    }

    /// Appends on a pipeline; `None` when it refused (full or closed).
    pub fn append(
        &mut self,
        from: usize,
        pipeline: CallId,
        request: &AppendEntriesRequest,
    ) -> Option<u64> {
        let now = self.instant();
        let seq = self.nodes[from]
            .client
            .pipeline_append(pipeline, request, now)
            .ok();
        self.after_client(from);
        seq
    }

    // ---- faults ----

    /// Breaks every connection between `a` and `b` (both directions).
    pub fn kill_connections(&mut self, a: usize, b: usize) {
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|((c, _), conn)| {
                conn.up && ((*c == a && conn.server == b) || (*c == b && conn.server == a))
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.drop_conn(key, true);
        }
    }

    /// Node `server` sends GOAWAY on every connection it serves from `client`.
    pub fn goaway(&mut self, client: usize, server: usize) {
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|((c, _), conn)| {
                conn.up && *c == client && conn.server == server && !conn.goaway_sent
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.goaway_sent = true;
            }
            let at = self.now + self.config.latency;
            self.schedule(at, Delivery::GoAway { key });
        }
    }

    /// Node `server` resets every open stream from `client` with `code`.
    pub fn reset_streams(&mut self, client: usize, server: usize, code: u32) {
        let targets: Vec<(ConnKey, CallId)> = self
            .conns
            .iter()
            .filter(|((c, _), conn)| conn.up && *c == client && conn.server == server)
            .flat_map(|(k, conn)| {
                conn.streams
                    .iter()
                    .filter(|(_, s)| !s.dead && s.server.is_some())
                    .map(move |(id, _)| (*k, *id))
            })
            .collect();
        let now = self.instant();
        for (key, call) in targets {
            if let Some(stream) = self
                .conns
                .get_mut(&key)
                .and_then(|c| c.streams.get_mut(&call))
            {
                stream.dead = true;
                if let Some(server) = &mut stream.server {
                    server.call.handle_reset(code, now);
                }
            }
            self.server_events(key, call);
            let at = self.transit(key, false, 4);
            self.schedule(
                at,
                Delivery::ToClient {
                    key,
                    call,
                    frame: S2C::Reset(code),
                },
            );
        }
    }

    fn drop_conn(&mut self, key: ConnKey, tell_client: bool) {
        let now = self.instant();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.up {
            return;
        }
        conn.up = false;
        let calls: Vec<CallId> = conn.streams.keys().copied().collect();
        for call in &calls {
            if let Some(stream) = conn.streams.get_mut(call) {
                if let Some(server) = &mut stream.server {
                    server
                        .call
                        .handle_connection_lost(Status::new(Code::Unavailable, "connection lost"));
                }
            }
        }
        for call in calls {
            self.server_events(key, call);
        }
        if tell_client {
            self.nodes[key.0].client.connection_lost(
                key.1,
                Status::new(Code::Unavailable, "connection lost"),
                now,
            );
            self.after_client(key.0);
        }
    }

    // ---- the loop ----

    /// Runs until `until` (virtual), or until nothing is left to do.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
            let next_timeout = self
                .nodes
                .iter()
                .filter_map(|n| n.client.poll_timeout())
                .chain(self.conns.values().flat_map(|c| {
                    c.streams
                        .values()
                        .filter_map(|s| s.server.as_ref()?.call.poll_timeout())
                }))
                .min()
                .map(|i| i.saturating_duration_since(self.base));
            let next = match (next_delivery, next_timeout) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                let key = *self.queue.keys().next().unwrap();
                let delivery = self.queue.remove(&key).unwrap();
                self.deliver(delivery);
            } else {
                self.timeouts();
            }
        }
        self.now = self.now.max(end);
    }

    /// Runs until every node's client has no call left, or `limit` passes.
    pub fn run_until_quiet(&mut self, limit: Duration) {
        let step = Duration::from_millis(10);
        let end = self.now + limit;
        while self.now < end {
            self.run_for(step);
            if self.queue.is_empty() && self.nodes.iter().all(|n| n.client.poll_timeout().is_none())
            {
                break;
            }
        }
    }

    fn timeouts(&mut self) {
        let now = self.instant();
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .client
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].client.handle_timeout(now);
                self.after_client(i);
            }
        }
        let due: Vec<(ConnKey, CallId)> = self
            .conns
            .iter()
            .flat_map(|(k, c)| {
                c.streams.iter().filter_map(move |(id, s)| {
                    s.server
                        .as_ref()?
                        .call
                        .poll_timeout()
                        .filter(|t| *t <= now)
                        .map(|_| (*k, *id))
                })
            })
            .collect();
        for (key, call) in due {
            if let Some(server) = self.server_stream(key, call) {
                server.call.handle_timeout(now);
            }
            self.server_events(key, call);
        }
    }

    fn server_stream(&mut self, key: ConnKey, call: CallId) -> Option<&mut ServerStream> {
        self.conns
            .get_mut(&key)?
            .streams
            .get_mut(&call)?
            .server
            .as_mut()
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.instant();
        match delivery {
            Delivery::ConnectResult { client, conn, ok } => {
                let key = (client, conn);
                if !self.conns.contains_key(&key) {
                    return; // abandoned meanwhile
                }
                if ok {
                    self.nodes[client].client.connected(conn, None, now);
                } else {
                    self.conns.remove(&key);
                    self.nodes[client].client.connect_failed(
                        conn,
                        Status::new(Code::Unavailable, "connection refused"),
                        now,
                    );
                }
                self.after_client(client);
            }
            Delivery::ToServer { key, call, frame } => self.deliver_to_server(key, call, frame),
            Delivery::ToClient { key, call, frame } => {
                if !self.conns.get(&key).is_some_and(|c| c.up) {
                    return;
                }
                let client = &mut self.nodes[key.0].client;
                match frame {
                    S2C::Headers(parts, eos) => client.response_head(call, &parts, eos, now),
                    S2C::Data(data) => {
                        let n = data.len();
                        client.response_data(call, data, now);
                        let at = self.transit(key, true, 4);
                        self.schedule(at, Delivery::WindowToServer { key, call, n });
                    }
                    S2C::Trailers(trailers) => client.response_trailers(call, &trailers, now),
                    S2C::Reset(code) => client.stream_reset(call, code, now),
                }
                self.after_client(key.0);
            }
            Delivery::WindowToClient { key, call, n } => {
                if let Some(stream) = self
                    .conns
                    .get_mut(&key)
                    .and_then(|c| c.streams.get_mut(&call))
                {
                    stream.c2s_unreleased = stream.c2s_unreleased.saturating_sub(n);
                    self.dirty.push((key.0, call));
                    self.after_client(key.0);
                }
            }
            Delivery::WindowToServer { key, call, n } => {
                if let Some(stream) = self
                    .conns
                    .get_mut(&key)
                    .and_then(|c| c.streams.get_mut(&call))
                {
                    stream.s2c_unreleased = stream.s2c_unreleased.saturating_sub(n);
                    self.server_transmit(key, call);
                }
            }
            Delivery::GoAway { key } => {
                if self.conns.get(&key).is_some_and(|c| c.up) {
                    self.nodes[key.0].client.goaway(key.1, now);
                    self.after_client(key.0);
                }
            }
            Delivery::ConsumerWake { node } => self.run_consumer(node),
        }
    }

    fn deliver_to_server(&mut self, key: ConnKey, call: CallId, frame: C2S) {
        let now = self.instant();
        let server_config = self.config.server;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.up {
            return;
        }
        match frame {
            C2S::Headers(parts) => {
                if conn.goaway_sent {
                    let stream = conn.streams.entry(call).or_default();
                    stream.dead = true;
                    let at = self.transit(key, false, 4);
                    self.schedule(
                        at,
                        Delivery::ToClient {
                            key,
                            call,
                            frame: S2C::Reset(REFUSED_STREAM),
                        },
                    );
                    return;
                }
                let stream = conn.streams.entry(call).or_default();
                match ServerCall::new(&parts, server_config, now) {
                    Ok(server) => {
                        stream.server = Some(ServerStream {
                            call: server,
                            pending: VecDeque::new(),
                            pending_end: false,
                        });
                    }
                    Err(rejection) => {
                        stream.dead = true;
                        let (head, ()) = rejection.to_response().into_parts();
                        let at = self.transit(key, false, 64);
                        self.schedule(
                            at,
                            Delivery::ToClient {
                                key,
                                call,
                                frame: S2C::Headers(head, true),
                            },
                        );
                        return;
                    }
                }
            }
            C2S::Data(data, eos) => {
                let Some(stream) = conn.streams.get_mut(&call) else {
                    return;
                };
                let Some(server) = &mut stream.server else {
                    return;
                };
                if !data.is_empty() {
                    server.pending.push_back(data);
                }
                server.pending_end |= eos;
            }
            C2S::Reset(code) => {
                let Some(stream) = conn.streams.get_mut(&call) else {
                    return;
                };
                stream.dead = true;
                if let Some(server) = &mut stream.server {
                    server.call.handle_reset(code, now);
                }
            }
        }
        self.server_events(key, call);
    }

    /// Feeds pending data to a server call while it wants it, hands its
    /// events to the application, and transmits what it has.
    fn server_events(&mut self, key: ConnKey, call: CallId) {
        let now = self.instant();
        let node = self.conns.get(&key).map(|c| c.server);
        let Some(node) = node else { return };
        loop {
            let mut released = 0;
            let mut events = Vec::new();
            {
                let Some(server) = self.server_stream(key, call) else {
                    return;
                };
                while server.call.wants_data() {
                    let Some(data) = server.pending.pop_front() else {
                        break;
                    };
                    released += data.len();
                    server.call.handle_data(data, now);
                }
                if server.pending.is_empty() && server.pending_end && server.call.wants_data() {
                    server.pending_end = false;
                    server.call.handle_end_of_stream(now);
                }
            }
            // Requests go to the application at once; snapshot data only
            // when the consumer is on this stream and ready for more.
            let consumer_here = self.nodes[node]
                .current
                .as_ref()
                .is_some_and(|j| j.key == key && j.call == call)
                && self.now >= self.nodes[node].consumer_busy_until;
            {
                let Some(server) = self.server_stream(key, call) else {
                    return;
                };
                loop {
                    match server.call.peek_event() {
                        None => break,
                        Some(ServerEvent::SnapshotData(_) | ServerEvent::SnapshotEnd) => {
                            if consumer_here {
                                events.extend(server.call.poll_event());
                            }
                            break;
                        }
                        Some(_) => events.extend(server.call.poll_event()),
                    }
                }
            }
            if released > 0 {
                let at = self.transit(key, false, 4);
                self.schedule(
                    at,
                    Delivery::WindowToClient {
                        key,
                        call,
                        n: released,
                    },
                );
            }
            if events.is_empty() {
                break;
            }
            for event in events {
                self.app_event(node, key, call, event);
            }
        }
        self.server_transmit(key, call);
    }

    fn app_event(&mut self, node: usize, key: ConnKey, call: CallId, event: ServerEvent) {
        let now = self.instant();
        match event {
            ServerEvent::Request(RaftRequest::AppendEntries(request)) if is_heartbeat(&request) => {
                let response = RaftResponse::AppendEntries(AppendEntriesResponse {
                    term: request.term,
                    success: true,
                    ..Default::default()
                });
                if let Some(server) = self.server_stream(key, call) {
                    let _ = server.call.respond(response);
                }
                self.nodes[node].log.heartbeats_answered += 1;
            }
            ServerEvent::Request(request) => {
                self.nodes[node].consumer.push_back(Job {
                    key,
                    call,
                    request,
                    received: Vec::new(),
                });
                self.run_consumer(node);
            }
            ServerEvent::SnapshotData(data) => {
                let rate = self.config.snapshot_read_rate;
                let n = &mut self.nodes[node];
                if let Some(job) = n
                    .current
                    .as_mut()
                    .filter(|j| j.key == key && j.call == call)
                {
                    job.received.extend_from_slice(&data);
                    if let Some(rate) = rate {
                        let busy = self.now + Duration::from_secs_f64(data.len() as f64 / rate);
                        n.consumer_busy_until = busy;
                        self.schedule(busy, Delivery::ConsumerWake { node });
                    }
                }
            }
            ServerEvent::SnapshotEnd => {
                let n = &mut self.nodes[node];
                if let Some(job) = n.current.take_if(|j| j.key == key && j.call == call) {
                    let RaftRequest::InstallSnapshot(meta) = &job.request else {
                        unreachable!()
                    };
                    let ok = job.received.len() as u64 == meta.size;
                    n.log
                        .installs
                        .push((meta.clone(), job.received.clone(), ok));
                    let response = RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                        term: meta.term,
                        success: ok,
                        ..Default::default()
                    });
                    if let Some(server) = self.server_stream(key, call) {
                        let _ = server.call.respond(response);
                    }
                    let at = self.now;
                    self.schedule(at, Delivery::ConsumerWake { node });
                }
            }
            ServerEvent::Failed(status) => {
                let n = &mut self.nodes[node];
                n.log.server_failures.push(status);
                n.consumer.retain(|j| !(j.key == key && j.call == call));
                if n.current
                    .take_if(|j| j.key == key && j.call == call)
                    .is_some()
                {
                    let at = self.now;
                    self.schedule(at, Delivery::ConsumerWake { node });
                }
            }
        }
        let _ = now;
    }

    /// The consumer: one RPC at a time.
    fn run_consumer(&mut self, node: usize) {
        loop {
            if self.now < self.nodes[node].consumer_busy_until {
                return;
            }
            // A snapshot in progress: pull more of its data.
            if let Some(job) = &self.nodes[node].current {
                let (key, call) = (job.key, job.call);
                let alive = self
                    .server_stream(key, call)
                    .is_some_and(|s| !s.call.is_finished());
                if !alive {
                    self.nodes[node].current = None;
                    continue;
                }
                self.server_events(key, call);
                return;
            }
            let Some(job) = self.nodes[node].consumer.pop_front() else {
                return;
            };
            if let RaftRequest::InstallSnapshot(_) = &job.request {
                let (key, call) = (job.key, job.call);
                self.nodes[node].current = Some(job);
                self.server_events(key, call);
                return;
            }
            let response = reference::response(&job.request, RpcHeader::default(), None);
            let delay = self.config.consumer_delay;
            if let Some(server) = self.server_stream(job.key, job.call) {
                let _ = server.call.respond(response);
            }
            self.server_transmit(job.key, job.call);
            if !delay.is_zero() {
                self.nodes[node].consumer_busy_until = self.now + delay;
                let at = self.now + delay;
                self.schedule(at, Delivery::ConsumerWake { node });
                return;
            }
        }
    }

    fn server_transmit(&mut self, key: ConnKey, call: CallId) {
        let window = self.config.stream_window;
        loop {
            let Some(stream) = self
                .conns
                .get_mut(&key)
                .and_then(|c| c.streams.get_mut(&call))
            else {
                return;
            };
            if stream.dead {
                return;
            }
            let capacity = window.saturating_sub(stream.s2c_unreleased);
            let Some(server) = &mut stream.server else {
                return;
            };
            let Some(transmit) = server.call.poll_transmit(capacity) else {
                return;
            };
            let (frame, size) = match transmit {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => {
                    let (parts, ()) = head.into_parts();
                    (S2C::Headers(parts, end_of_stream), 64)
                }
                ServerTransmit::Data(data) => {
                    stream.s2c_unreleased += data.len();
                    let n = data.len();
                    (S2C::Data(data), n)
                }
                ServerTransmit::Trailers(trailers) => (S2C::Trailers(trailers), 32),
            };
            let at = self.transit(key, false, size);
            self.schedule(at, Delivery::ToClient { key, call, frame });
        }
    }

    /// Executes a node's client outputs and records its events.
    fn after_client(&mut self, node: usize) {
        let now = self.instant();
        loop {
            let mut progressed = false;
            while let Some(output) = self.nodes[node].client.poll_output() {
                progressed = true;
                match output {
                    ClientOutput::Connect { conn, peer } => {
                        self.nodes[node].log.connects.push((self.now, peer.clone()));
                        let server = node_of(&peer);
                        let refused = self
                            .refuse_until
                            .get(&server)
                            .is_some_and(|t| self.now < *t);
                        self.conns.insert(
                            (node, conn),
                            SimConn {
                                server,
                                up: !refused,
                                goaway_sent: false,
                                c2s_busy: Duration::ZERO,
                                s2c_busy: Duration::ZERO,
                                streams: BTreeMap::new(),
                            },
                        );
                        let at = self.now + 2 * self.config.latency;
                        self.schedule(
                            at,
                            Delivery::ConnectResult {
                                client: node,
                                conn,
                                ok: !refused,
                            },
                        );
                    }
                    ClientOutput::Close { conn } => {
                        self.drop_conn((node, conn), false);
                        self.conns.remove(&(node, conn));
                    }
                    ClientOutput::OpenStream {
                        conn,
                        call,
                        request,
                    } => {
                        let key = (node, conn);
                        self.nodes[node].log.opened.push((call, conn, self.now));
                        let up = self.conns.get(&key).is_some_and(|c| c.up);
                        if !up {
                            self.nodes[node]
                                .client
                                .stream_reset(call, REFUSED_STREAM, now);
                            continue;
                        }
                        if let Some(c) = self.conns.get_mut(&key) {
                            c.streams.insert(call, SimStream::default());
                        }
                        let (parts, ()) = request.into_parts();
                        let at = self.transit(key, true, 128);
                        self.schedule(
                            at,
                            Delivery::ToServer {
                                key,
                                call,
                                frame: C2S::Headers(parts),
                            },
                        );
                        self.dirty.push((node, call));
                    }
                    ClientOutput::Transmit { call } => self.dirty.push((node, call)),
                }
            }
            let dirty: Vec<(usize, CallId)> = std::mem::take(&mut self.dirty);
            for (n, call) in dirty {
                if n != node {
                    self.dirty.push((n, call));
                    continue;
                }
                progressed |= self.client_transmit(node, call);
            }
            while let Some(event) = self.nodes[node].client.poll_event() {
                progressed = true;
                match event {
                    ClientEvent::Completed { call, result } => {
                        self.nodes[node].sources.remove(&call);
                        let at = self.now;
                        self.nodes[node].log.completed.push((call, result, at));
                    }
                    ClientEvent::Appended {
                        pipeline,
                        seq,
                        result,
                    } => {
                        self.nodes[node].log.appended.push((pipeline, seq, result));
                    }
                    ClientEvent::PipelineClosed { pipeline, status } => {
                        self.nodes[node]
                            .log
                            .pipelines_closed
                            .push((pipeline, status));
                    }
                    ClientEvent::PipelineReady { .. } => {}
                    ClientEvent::SnapshotProgress { call, progress } => {
                        self.nodes[node]
                            .log
                            .progress
                            .push((call, progress.bytes, progress.total));
                    }
                    ClientEvent::SnapshotWantsData { call } => self.feed_snapshot(node, call),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Sends what a client stream has, within its window. Returns whether
    /// anything was sent.
    fn client_transmit(&mut self, node: usize, call: CallId) -> bool {
        let now = self.instant();
        let window = self.config.stream_window;
        let key = self
            .conns
            .iter()
            .find(|((c, _), conn)| *c == node && conn.streams.contains_key(&call))
            .map(|(k, _)| *k);
        let Some(key) = key else {
            // No stream (yet, or any more): drain a pending reset anyway.
            return self.nodes[node]
                .client
                .poll_transmit(call, 0, now)
                .is_some();
        };
        let mut sent = false;
        while let Some(stream) = self.conns.get(&key).and_then(|c| c.streams.get(&call)) {
            let capacity = window.saturating_sub(stream.c2s_unreleased);
            let Some(transmit) = self.nodes[node].client.poll_transmit(call, capacity, now) else {
                break;
            };
            sent = true;
            let (frame, size) = match transmit {
                ClientTransmit::Data {
                    data,
                    end_of_stream,
                } => {
                    if let Some(s) = self
                        .conns
                        .get_mut(&key)
                        .and_then(|c| c.streams.get_mut(&call))
                    {
                        s.c2s_unreleased += data.len();
                    }
                    let n = data.len();
                    (C2S::Data(data, end_of_stream), n)
                }
                ClientTransmit::Reset(code) => (C2S::Reset(code), 4),
            };
            if self.conns.get(&key).is_some_and(|c| c.up) {
                let at = self.transit(key, true, size);
                self.schedule(at, Delivery::ToServer { key, call, frame });
            }
        }
        sent
    }
}
