//! A deterministic simulation of Raft nodes talking through the sans-IO core.
//!
//! Each node has a `ClientEndpoint` and a `ServerEndpoint` — the two
//! machines that ship — and a reference application on top: a heartbeat
//! fast path, and a consumer that handles one RPC at a time (the reference
//! responder `node serve` uses) and may read snapshots slowly. Between the
//! nodes is an in-memory model of HTTP/2 on virtual time: connections with
//! one-way latency and bandwidth (frames on one connection are serialized,
//! FIFO), a handshake and PING round trips, streams with a per-stream flow
//! control window released by the receiver only when its endpoint says so,
//! GOAWAY, stream resets, refused connects and lost connections.
//!
//! The harness plays the driver's part (moving each endpoint's outputs to
//! the model and the model's deliveries back as inputs) and the
//! application's. Everything is recorded for the tests to check.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use raft_grpc_transport::call::{ClientTransmit, ServerTransmit};
use raft_grpc_transport::client::{
    CallId, ClientConfig, ClientEndpoint, ClientEvent, ClientOutput, OutgoingRpc,
};
use raft_grpc_transport::http2::REFUSED_STREAM;
use raft_grpc_transport::message::*;
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::reference;
use raft_grpc_transport::server::{
    IncomingRpc, RequestId, ServerConfig, ServerEndpoint, ServerEvent, ServerOutput, SnapshotRead,
    StreamId,
};
use raft_grpc_transport::{Status, TransportError};

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
    /// Server configuration of every node (the heartbeat fast path is on).
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
    PingAck {
        key: ConnKey,
    },
    /// The client answered a server's PING.
    ServerPingAck {
        key: ConnKey,
    },
    /// The server's new SETTINGS_INITIAL_WINDOW_SIZE reached the client.
    Window {
        key: ConnKey,
        window: usize,
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
    /// The server endpoint's id of this connection, once accepted.
    server_conn: Option<ConnId>,
    up: bool,
    goaway_sent: bool,
    /// The client's send window per stream, as the server's SETTINGS say.
    c2s_window: usize,
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
    /// The server endpoint's stream, once its head arrived.
    server: Option<StreamId>,
    /// The server refused the stream (GOAWAY) or it is otherwise gone.
    dead: bool,
}

/// The consumer's current RPC.
#[derive(Debug, Clone)]
struct Job {
    rpc: IncomingRpc,
    /// Snapshot bytes read so far.
    received: Vec<u8>,
}

/// What a node records.
#[derive(Debug, Default)]
pub struct NodeLog {
    /// Client outcomes: (call, result as a status, time), in order.
    pub completed: Vec<(CallId, Result<RaftResponse, Status>, Duration)>,
    /// Pipeline outcomes: (pipeline, seq, result).
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
    /// Requests the application took and then could not answer (the call
    /// was over: the caller reset it, its deadline passed, its connection
    /// went): the status the call ended with.
    pub server_failures: Vec<Status>,
    /// Every request the application took, in order.
    pub delivered: Vec<RequestId>,
}

/// A simulated node.
pub struct Node {
    /// The client side.
    pub client: ClientEndpoint,
    /// The server side.
    pub server: ServerEndpoint,
    /// What happened.
    pub log: NodeLog,
    current: Option<Job>,
    consumer_busy_until: Duration,
    /// Snapshot sources being streamed: call → (data, offset, read size).
    sources: HashMap<CallId, (Bytes, usize, usize)>,
    /// The server's streams: → (connection, call).
    streams: HashMap<StreamId, (ConnKey, CallId)>,
    /// The server's connections → the model's.
    conns: HashMap<ConnId, ConnKey>,
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

fn as_status<T>(result: Result<T, TransportError>) -> Result<T, Status> {
    result.map_err(|e| e.status())
}

impl Sim {
    /// `n` nodes, no connections.
    pub fn new(n: usize, config: SimConfig) -> Sim {
        let nodes = (0..n)
            .map(|_| Node {
                client: ClientEndpoint::new(config.client),
                server: ServerEndpoint::new(
                    config.server.with_heartbeat_fast_path(true).with_windows(
                        config
                            .server
                            .windows
                            .with_initial_stream(config.stream_window as u32),
                    ),
                ),
                log: NodeLog::default(),
                current: None,
                consumer_busy_until: Duration::ZERO,
                sources: HashMap::new(),
                streams: HashMap::new(),
                conns: HashMap::new(),
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
                n.client.finish_snapshot(call, now);
                return;
            }
            if !n.client.snapshot_wants_data(call) {
                return;
            }
            let end = (*offset + *read).min(data.len());
            let piece = data.slice(*offset..end);
            *offset = end;
            if n.client.push_snapshot_data(call, piece, now).is_err() {
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
        let seq = self.nodes[from].client.append(pipeline, request, now).ok();
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
            self.send_goaway(key);
        }
    }

    fn send_goaway(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.get_mut(&key) {
            if conn.goaway_sent || !conn.up {
                return;
            }
            conn.goaway_sent = true;
        }
        let at = self.now + self.config.latency;
        self.schedule(at, Delivery::GoAway { key });
    }

    /// Node `server` resets every open stream from `client` with `code`.
    pub fn reset_streams(&mut self, client: usize, server: usize, code: u32) {
        let targets: Vec<(ConnKey, CallId, StreamId)> = self
            .conns
            .iter()
            .filter(|((c, _), conn)| conn.up && *c == client && conn.server == server)
            .flat_map(|(k, conn)| {
                conn.streams
                    .iter()
                    .filter(|(_, s)| !s.dead)
                    .filter_map(move |(id, s)| Some((*k, *id, s.server?)))
            })
            .collect();
        let now = self.instant();
        for (key, call, stream) in targets {
            if let Some(s) = self
                .conns
                .get_mut(&key)
                .and_then(|c| c.streams.get_mut(&call))
            {
                s.dead = true;
            }
            // The server resets its own stream: to its endpoint, the stream
            // is gone as if the client had reset it.
            self.nodes[server].server.handle_reset(stream, code, now);
            self.after_server(server);
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
        let server = conn.server;
        if let Some(server_conn) = conn.server_conn {
            self.nodes[server]
                .server
                .handle_connection_lost(server_conn, "connection lost", now);
            self.after_server(server);
        }
        if tell_client {
            self.nodes[key.0]
                .client
                .handle_connection_lost(key.1, "connection lost", now);
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
                .flat_map(|n| [n.client.poll_timeout(), n.server.poll_timeout()])
                .flatten()
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
            if self.nodes[i]
                .server
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].server.handle_timeout(now);
                self.after_server(i);
            }
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.instant();
        match delivery {
            Delivery::ConnectResult { client, conn, ok } => {
                let key = (client, conn);
                let Some(c) = self.conns.get_mut(&key) else {
                    return; // abandoned meanwhile
                };
                if ok {
                    let server = c.server;
                    let server_conn = self.nodes[server].server.handle_connection(now);
                    self.nodes[server]
                        .server
                        .handle_handshake_done(server_conn, now);
                    self.nodes[server].conns.insert(server_conn, key);
                    if let Some(c) = self.conns.get_mut(&key) {
                        c.server_conn = Some(server_conn);
                    }
                    self.nodes[client].client.handle_connected(conn, now);
                } else {
                    self.conns.remove(&key);
                    self.nodes[client].client.handle_connect_failed(
                        conn,
                        "connection refused",
                        now,
                    );
                }
                self.after_client(client);
            }
            Delivery::PingAck { key } => {
                if self.conns.get(&key).is_some_and(|c| c.up) {
                    self.nodes[key.0].client.handle_ping_ack(key.1, now);
                    self.after_client(key.0);
                }
            }
            Delivery::ServerPingAck { key } => {
                let Some(c) = self.conns.get(&key).filter(|c| c.up) else {
                    return;
                };
                let (server, Some(server_conn)) = (c.server, c.server_conn) else {
                    return;
                };
                self.nodes[server].server.handle_ping_ack(server_conn, now);
                self.after_server(server);
            }
            Delivery::Window { key, window } => {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.c2s_window = window;
                    let calls: Vec<CallId> = c.streams.keys().copied().collect();
                    self.dirty
                        .extend(calls.into_iter().map(|call| (key.0, call)));
                    self.after_client(key.0);
                }
            }
            Delivery::ToServer { key, call, frame } => self.deliver_to_server(key, call, frame),
            Delivery::ToClient { key, call, frame } => {
                if !self.conns.get(&key).is_some_and(|c| c.up) {
                    return;
                }
                let client = &mut self.nodes[key.0].client;
                match frame {
                    S2C::Headers(parts, eos) => client.handle_response_head(call, &parts, eos, now),
                    S2C::Data(data) => client.handle_response_data(call, data, now),
                    S2C::Trailers(trailers) => {
                        client.handle_response_trailers(call, &trailers, now)
                    }
                    S2C::Reset(code) => client.handle_stream_reset(call, code, now),
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
                let Some(conn) = self.conns.get_mut(&key) else {
                    return;
                };
                let server = conn.server;
                if let Some(stream) = conn.streams.get_mut(&call) {
                    stream.s2c_unreleased = stream.s2c_unreleased.saturating_sub(n);
                    if let Some(id) = stream.server {
                        self.server_transmit(server, id);
                    }
                }
            }
            Delivery::GoAway { key } => {
                if self.conns.get(&key).is_some_and(|c| c.up) {
                    self.nodes[key.0].client.handle_goaway(
                        key.1,
                        raft_grpc_transport::http2::NO_ERROR,
                        now,
                    );
                    self.after_client(key.0);
                }
            }
            Delivery::ConsumerWake { node } => self.run_consumer(node),
        }
    }

    fn deliver_to_server(&mut self, key: ConnKey, call: CallId, frame: C2S) {
        let now = self.instant();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.up {
            return;
        }
        let server = conn.server;
        let server_conn = conn.server_conn;
        match frame {
            C2S::Headers(parts) => {
                let stream = conn.streams.entry(call).or_default();
                if conn.goaway_sent {
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
                let Some(server_conn) = server_conn else {
                    return;
                };
                let id = self.nodes[server]
                    .server
                    .handle_request_head(server_conn, &parts, now);
                if let Some(s) = self
                    .conns
                    .get_mut(&key)
                    .and_then(|c| c.streams.get_mut(&call))
                {
                    s.server = Some(id);
                }
                self.nodes[server].streams.insert(id, (key, call));
            }
            C2S::Data(data, eos) => {
                let Some(id) = conn.streams.get(&call).and_then(|s| s.server) else {
                    return;
                };
                let endpoint = &mut self.nodes[server].server;
                endpoint.handle_data(id, data, now);
                if eos {
                    endpoint.handle_end_of_stream(id, now);
                }
            }
            C2S::Reset(code) => {
                let Some(stream) = conn.streams.get_mut(&call) else {
                    return;
                };
                stream.dead = true;
                let Some(id) = stream.server else {
                    return;
                };
                self.nodes[server].server.handle_reset(id, code, now);
            }
        }
        self.after_server(server);
    }

    /// Carries out a node's server outputs and hands its events to the
    /// application.
    fn after_server(&mut self, node: usize) {
        let now = self.instant();
        loop {
            let mut progressed = false;
            while let Some(output) = self.nodes[node].server.poll_output() {
                progressed = true;
                match output {
                    ServerOutput::Transmit { stream, .. } => self.server_transmit(node, stream),
                    ServerOutput::ReleaseCapacity { stream, bytes, .. } => {
                        if let Some(&(key, call)) = self.nodes[node].streams.get(&stream) {
                            let at = self.transit(key, false, 4);
                            self.schedule(
                                at,
                                Delivery::WindowToClient {
                                    key,
                                    call,
                                    n: bytes,
                                },
                            );
                        }
                    }
                    ServerOutput::GoAway { conn } => {
                        if let Some(&key) = self.nodes[node].conns.get(&conn) {
                            self.send_goaway(key);
                        }
                    }
                    // The simulation opens fewer connections than any limit:
                    // a refusal is a failure of the run.
                    ServerOutput::Refuse { conn, .. } => {
                        panic!("node {node} refused connection {conn:?}")
                    }
                    ServerOutput::Close { conn } => {
                        if let Some(&key) = self.nodes[node].conns.get(&conn) {
                            self.drop_conn(key, true);
                        }
                    }
                    ServerOutput::Ping { conn } => {
                        if let Some(&key) = self.nodes[node].conns.get(&conn) {
                            let there = self.transit(key, false, 8);
                            let at = there + self.config.latency;
                            self.schedule(at, Delivery::ServerPingAck { key });
                        }
                    }
                    ServerOutput::SetWindows {
                        conn,
                        stream_window,
                        ..
                    } => {
                        if let Some(&key) = self.nodes[node].conns.get(&conn) {
                            let at = self.transit(key, false, 16);
                            let window = stream_window as usize;
                            self.schedule(at, Delivery::Window { key, window });
                        }
                    }
                }
            }
            while let Some(event) = self.nodes[node].server.poll_event() {
                progressed = true;
                match event {
                    ServerEvent::Heartbeat { id, request, .. } => {
                        let response =
                            reference::append_entries_response(&request, RpcHeader::default());
                        let n = &mut self.nodes[node];
                        n.log.delivered.push(id);
                        let _ =
                            n.server
                                .respond(id, Ok(RaftResponse::AppendEntries(response)), now);
                        n.log.heartbeats_answered += 1;
                    }
                    ServerEvent::RpcQueued => {
                        let at = self.now;
                        self.schedule(at, Delivery::ConsumerWake { node });
                    }
                    ServerEvent::SnapshotReady { id } => {
                        if self.nodes[node]
                            .current
                            .as_ref()
                            .is_some_and(|j| j.rpc.id == id)
                        {
                            let at = self.now;
                            self.schedule(at, Delivery::ConsumerWake { node });
                        }
                    }
                    ServerEvent::PipelineOpened { .. } | ServerEvent::PipelineReady { .. } => {}
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The application answers an RPC it took.
    fn answer(&mut self, node: usize, id: RequestId, response: RaftResponse) {
        let now = self.instant();
        let n = &mut self.nodes[node];
        if let Err(raft_grpc_transport::call::RespondError::Finished(status)) =
            n.server.respond(id, Ok(response), now)
        {
            n.log.server_failures.push(status);
        }
        self.after_server(node);
    }

    /// The consumer: one RPC at a time.
    fn run_consumer(&mut self, node: usize) {
        let now = self.instant();
        loop {
            if self.now < self.nodes[node].consumer_busy_until {
                return;
            }
            // A snapshot in progress: pull more of its data.
            if let Some(job) = &self.nodes[node].current {
                let id = job.rpc.id;
                let read = self.nodes[node].server.read_snapshot(id, now);
                self.after_server(node);
                match read {
                    SnapshotRead::Pending => return,
                    SnapshotRead::Data(data) => {
                        let rate = self.config.snapshot_read_rate;
                        let n = &mut self.nodes[node];
                        if let Some(job) = &mut n.current {
                            job.received.extend_from_slice(&data);
                        }
                        if let Some(rate) = rate {
                            let busy = self.now + Duration::from_secs_f64(data.len() as f64 / rate);
                            n.consumer_busy_until = busy;
                            self.schedule(busy, Delivery::ConsumerWake { node });
                            return;
                        }
                    }
                    SnapshotRead::End | SnapshotRead::Failed(_) => {
                        let ended = matches!(read, SnapshotRead::End);
                        let Some(job) = self.nodes[node].current.take() else {
                            return;
                        };
                        let RaftRequest::InstallSnapshot(meta) = &job.rpc.request else {
                            unreachable!("only snapshots are read")
                        };
                        let ok = ended && job.received.len() as u64 == meta.size;
                        self.nodes[node].log.installs.push((
                            meta.clone(),
                            job.received.clone(),
                            ok,
                        ));
                        let response = RaftResponse::InstallSnapshot(InstallSnapshotResponse {
                            term: meta.term,
                            success: ok,
                            ..Default::default()
                        });
                        self.answer(node, job.rpc.id, response);
                    }
                }
                continue;
            }
            let Some(rpc) = self.nodes[node].server.poll_rpc(now) else {
                return;
            };
            self.nodes[node].log.delivered.push(rpc.id);
            self.after_server(node);
            if let RaftRequest::InstallSnapshot(_) = &rpc.request {
                self.nodes[node].current = Some(Job {
                    rpc,
                    received: Vec::new(),
                });
                continue;
            }
            let response = reference::response(&rpc.request, RpcHeader::default(), None);
            self.answer(node, rpc.id, response);
            // Then the consumer is busy for a while.
            let delay = self.config.consumer_delay;
            if !delay.is_zero() {
                self.nodes[node].consumer_busy_until = self.now + delay;
                let at = self.now + delay;
                self.schedule(at, Delivery::ConsumerWake { node });
                return;
            }
        }
    }

    fn server_transmit(&mut self, node: usize, stream: StreamId) {
        let now = self.instant();
        let window = self.config.stream_window;
        let Some(&(key, call)) = self.nodes[node].streams.get(&stream) else {
            return;
        };
        loop {
            let Some(s) = self
                .conns
                .get_mut(&key)
                .and_then(|c| c.streams.get_mut(&call))
            else {
                return;
            };
            if s.dead {
                return;
            }
            let capacity = window.saturating_sub(s.s2c_unreleased);
            let Some(transmit) = self.nodes[node].server.poll_transmit(stream, capacity, now)
            else {
                break;
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
                    if let Some(s) = self
                        .conns
                        .get_mut(&key)
                        .and_then(|c| c.streams.get_mut(&call))
                    {
                        s.s2c_unreleased += data.len();
                    }
                    let n = data.len();
                    (S2C::Data(data), n)
                }
                ServerTransmit::Trailers(trailers) => (S2C::Trailers(trailers), 32),
            };
            let at = self.transit(key, false, size);
            self.schedule(at, Delivery::ToClient { key, call, frame });
        }
        if self.nodes[node].server.stream_finished(stream) {
            self.nodes[node].streams.remove(&stream);
        }
    }

    /// The send window the client `client` has toward `server` on its
    /// snapshot connection (the largest of its connections to it).
    pub fn window_of(&self, client: usize, server: usize) -> usize {
        self.conns
            .iter()
            .filter(|((c, _), conn)| *c == client && conn.server == server)
            .map(|(_, conn)| conn.c2s_window)
            .max()
            .unwrap_or(0)
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
                                server_conn: None,
                                up: !refused,
                                goaway_sent: false,
                                c2s_window: self.config.stream_window,
                                c2s_busy: Duration::ZERO,
                                s2c_busy: Duration::ZERO,
                                streams: BTreeMap::new(),
                            },
                        );
                        // TCP's handshake and HTTP/2's prefaces.
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
                    ClientOutput::Ping { conn } => {
                        let key = (node, conn);
                        if self.conns.get(&key).is_some_and(|c| c.up) {
                            let there = self.transit(key, true, 8);
                            let at = there + self.config.latency;
                            self.schedule(at, Delivery::PingAck { key });
                        }
                    }
                    ClientOutput::OpenStream {
                        conn,
                        call,
                        request,
                        ..
                    } => {
                        let key = (node, conn);
                        self.nodes[node].log.opened.push((call, conn, self.now));
                        let up = self.conns.get(&key).is_some_and(|c| c.up);
                        if !up {
                            self.nodes[node].client.handle_stream_refused(call, now);
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
                    ClientOutput::Transmit { call, .. } => self.dirty.push((node, call)),
                    ClientOutput::ReleaseCapacity { conn, call, bytes } => {
                        let key = (node, conn);
                        if self.conns.get(&key).is_some_and(|c| c.up) {
                            let at = self.transit(key, true, 4);
                            self.schedule(
                                at,
                                Delivery::WindowToServer {
                                    key,
                                    call,
                                    n: bytes,
                                },
                            );
                        }
                    }
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
                        self.nodes[node]
                            .log
                            .completed
                            .push((call, as_status(result), at));
                    }
                    ClientEvent::Appended {
                        pipeline,
                        seq,
                        result,
                    } => {
                        self.nodes[node]
                            .log
                            .appended
                            .push((pipeline, seq, as_status(result)));
                    }
                    ClientEvent::PipelineClosed { pipeline, error } => {
                        self.nodes[node]
                            .log
                            .pipelines_closed
                            .push((pipeline, error.status()));
                    }
                    ClientEvent::PipelineOpened { .. } | ClientEvent::PipelineReady { .. } => {}
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
        while let Some(conn) = self.conns.get(&key) {
            let Some(stream) = conn.streams.get(&call) else {
                break;
            };
            let capacity = conn.c2s_window.saturating_sub(stream.c2s_unreleased);
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
