//! The server side: a listener, a `ServerEndpoint`, its h2 server
//! connections, and the application that answers.
//!
//! This module owns the accepted connections (the HTTP/2 handshake, then
//! h2's connection, its PINGs and its streams) and carries out every
//! [`ServerOutput`]:
//!
//! | output | what it becomes here |
//! | --- | --- |
//! | `Transmit { conn, stream }` | pull `poll_transmit(stream, capacity)`: the head into `SendResponse::send_response`, DATA into `SendStream::send_data`, trailers into `send_trailers` |
//! | `ReleaseCapacity { conn, stream, bytes }` | `RecvStream::flow_control().release_capacity(bytes)`, exactly that much |
//! | `Ping { conn }` | `PingPong::send_ping`; its `poll_pong` becomes `handle_ping_ack` |
//! | `SetWindows { conn, stream_window, connection_window }` | `set_target_window_size` and `set_initial_window_size` |
//! | `GoAway { conn }` | `graceful_shutdown` |
//! | `Close { conn }` | drop the connection |
//!
//! [`Application`] is what sits on top of the endpoint: it answers every
//! request with the core's reference answers ([`reference::response`],
//! heartbeats on the fast path with [`reference::append_entries_response`])
//! and reads incoming snapshots with `read_snapshot`, counting bytes and a
//! CRC-32C so that the steps can check what arrived.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Ping, PingPong, RecvStream, SendStream};
use mio::net::TcpListener;
use raft_grpc_transport::call::ServerTransmit;
use raft_grpc_transport::http2::{CANCEL, Http2Settings};
use raft_grpc_transport::message::{RaftRequest, RaftResponse, RpcHeader};
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::reference;
use raft_grpc_transport::server::{
    IncomingRpc, RequestId, ServerConfig, ServerEndpoint, ServerEvent, ServerOutput, SnapshotRead,
    StreamId,
};
use raft_grpc_transport::{RpcMethod, Status};

use crate::reactor::{Io, Reactor, Source};

/// The listener, the server endpoint, its connections and its application.
pub struct ServerSide {
    pub endpoint: ServerEndpoint,
    pub app: Application,
    /// What the endpoint asked for, for the steps to show.
    pub counts: OutputCounts,
    listener: Option<Rc<Source<TcpListener>>>,
    builder: h2::server::Builder,
    conns: BTreeMap<ConnId, Conn>,
}

struct Conn {
    state: State,
    /// GOAWAY was asked for before the handshake was done.
    go_away: bool,
    /// The endpoint refused the connection (a connection limit): GOAWAY
    /// with this error code once the handshake is done.
    refuse: Option<u32>,
}

enum State {
    Handshaking(Box<Handshake<Io, Bytes>>),
    Ready(Box<Established>),
}

struct Established {
    /// h2's accept loop, which also does the connection's I/O.
    connection: Connection<Io, Bytes>,
    ping_pong: Option<PingPong>,
    ping_in_flight: bool,
    streams: BTreeMap<StreamId, Stream>,
}

/// Some outputs the server side carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputCounts {
    /// `ReleaseCapacity` outputs, and their bytes.
    pub releases: u64,
    pub released: u64,
    /// `Ping` outputs (to measure the link).
    pub pings: u64,
    /// `SetWindows` outputs, and the last stream window set.
    pub set_windows: u64,
    pub stream_window: u32,
}

/// One incoming stream.
struct Stream {
    body: RecvStream,
    /// The request body ended (or failed).
    received: bool,
    respond: SendResponse<Bytes>,
    /// The response body, once the head went out.
    send: Option<SendStream<Bytes>>,
    /// The endpoint said `Transmit`.
    transmit: bool,
}

impl ServerSide {
    pub fn new(
        reactor: &mut Reactor,
        listener: std::net::TcpListener,
        config: ServerConfig,
        http2: &Http2Settings,
    ) -> io::Result<ServerSide> {
        // `from_std` does not make it non-blocking: mio leaves that to us.
        listener.set_nonblocking(true)?;
        let listener = reactor.register(TcpListener::from_std(listener))?;
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(http2.initial_stream_window)
            .initial_connection_window_size(http2.initial_connection_window)
            .max_frame_size(http2.max_frame_size)
            .max_send_buffer_size(http2.max_send_buffer)
            .max_concurrent_streams(http2.max_concurrent_streams)
            .max_header_list_size(http2.max_header_list_size);
        let mut endpoint = ServerEndpoint::new(config);
        // Heartbeats skip the consumer queue: `ServerEvent::Heartbeat`.
        endpoint.set_heartbeat_fast_path(true);
        Ok(ServerSide {
            endpoint,
            app: Application::default(),
            counts: OutputCounts {
                stream_window: http2.initial_stream_window,
                ..OutputCounts::default()
            },
            listener: Some(listener),
            builder,
            conns: BTreeMap::new(),
        })
    }

    /// Connections accepted and not yet gone.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Stops accepting (the listener leaves the poll and closes).
    pub fn stop_listening(&mut self) {
        self.listener = None;
    }

    /// The drain rule: carries out every output and hands every event to
    /// the application, whose answers are inputs that make more, until
    /// both queues are empty. Returns whether there was anything.
    pub fn drain(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(output) = self.endpoint.poll_output() {
                progressed = true;
                self.carry_out(output);
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.app.on_event(&mut self.endpoint, event, now);
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    fn carry_out(&mut self, output: ServerOutput) {
        match output {
            ServerOutput::Transmit { conn, stream } => {
                if let Some(s) = self.stream(conn, stream) {
                    s.transmit = true;
                }
            }
            // Receive flow control is the endpoint's: it releases what it
            // took, and holds back what a slow reader has not (so HTTP/2
            // holds the peer back).
            ServerOutput::ReleaseCapacity {
                conn,
                stream,
                bytes,
            } => {
                self.counts.releases += 1;
                self.counts.released += bytes as u64;
                if let Some(s) = self.stream(conn, stream) {
                    let _ = s.body.flow_control().release_capacity(bytes);
                }
            }
            ServerOutput::GoAway { conn } => match self.conns.get_mut(&conn) {
                Some(Conn {
                    state: State::Ready(c),
                    ..
                }) => c.connection.graceful_shutdown(),
                Some(c) => c.go_away = true,
                None => {}
            },
            ServerOutput::Refuse { conn, error_code } => match self.conns.get_mut(&conn) {
                Some(Conn {
                    state: State::Ready(c),
                    ..
                }) => c.connection.abrupt_shutdown(error_code.into()),
                Some(c) => c.refuse = Some(error_code),
                None => {}
            },
            ServerOutput::Close { conn } => {
                self.conns.remove(&conn);
            }
            // A PING to measure the link: its answer grows the windows.
            ServerOutput::Ping { conn } => {
                self.counts.pings += 1;
                if let Some(c) = self.established(conn) {
                    if let Some(ping_pong) = &mut c.ping_pong {
                        if ping_pong.send_ping(Ping::opaque()).is_ok() {
                            c.ping_in_flight = true;
                        }
                    }
                }
            }
            ServerOutput::SetWindows {
                conn,
                stream_window,
                connection_window,
            } => {
                self.counts.set_windows += 1;
                self.counts.stream_window = stream_window;
                if let Some(c) = self.established(conn) {
                    c.connection.set_target_window_size(connection_window);
                    let _ = c.connection.set_initial_window_size(stream_window);
                }
            }
        }
    }

    fn established(&mut self, conn: ConnId) -> Option<&mut Established> {
        match &mut self.conns.get_mut(&conn)?.state {
            State::Ready(c) => Some(c),
            State::Handshaking(_) => None,
        }
    }

    fn stream(&mut self, conn: ConnId, stream: StreamId) -> Option<&mut Stream> {
        self.established(conn)?.streams.get_mut(&stream)
    }

    /// One pass: accepts, handshakes, h2's I/O, PINGs, new streams,
    /// request data, and what the streams have to send. Inputs go to the
    /// endpoint as they are found; the caller drains it after the pass.
    pub fn pass(&mut self, reactor: &mut Reactor, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = self.accept(reactor, now);
        let mut gone = Vec::new();
        for (&id, conn) in &mut self.conns {
            match conn.poll(id, &mut self.endpoint, cx, now) {
                Ok(p) => progress |= p,
                Err(detail) => gone.push((id, detail)),
            }
        }
        for (id, detail) in gone {
            progress = true;
            self.conns.remove(&id);
            self.endpoint.handle_connection_lost(id, &detail, now);
        }
        progress
    }

    /// Accepts what the listener has, when the poll said it has some.
    fn accept(&mut self, reactor: &mut Reactor, now: Instant) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        if !listener.take_ready() {
            return false;
        }
        let mut progress = false;
        loop {
            let stream = match listener.get().accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing more for now: the next connection is an event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                Err(e) => {
                    // Out of descriptors, say: try again at the next pass
                    // (the poll reports no change for a connection that
                    // is still waiting).
                    eprintln!("accept: {e}");
                    listener.try_again();
                    return progress;
                }
            };
            progress = true;
            // mio accepts it non-blocking.
            let registered = stream
                .set_nodelay(true)
                .and_then(|()| reactor.register(stream));
            let source = match registered {
                Ok(source) => source,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            // The endpoint counts the handshake against its deadline.
            let id = self.endpoint.handle_connection(now);
            let handshake = self.builder.handshake(Io(source));
            let conn = Conn {
                state: State::Handshaking(Box::new(handshake)),
                go_away: false,
                refuse: None,
            };
            self.conns.insert(id, conn);
        }
    }
}

impl Conn {
    fn poll(
        &mut self,
        id: ConnId,
        endpoint: &mut ServerEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, String> {
        let mut progress = false;
        if let State::Handshaking(handshake) = &mut self.state {
            match Pin::new(&mut **handshake).poll(cx) {
                Poll::Pending => return Ok(false),
                Poll::Ready(Err(e)) => return Err(format!("HTTP/2 handshake failed: {e}")),
                Poll::Ready(Ok(mut connection)) => {
                    if let Some(code) = self.refuse {
                        connection.abrupt_shutdown(code.into());
                    } else if self.go_away {
                        connection.graceful_shutdown();
                    }
                    let ping_pong = connection.ping_pong();
                    self.state = State::Ready(Box::new(Established {
                        connection,
                        ping_pong,
                        ping_in_flight: false,
                        streams: BTreeMap::new(),
                    }));
                    endpoint.handle_handshake_done(id, now);
                    progress = true;
                }
            }
        }
        match &mut self.state {
            State::Ready(c) => c.poll(id, endpoint, cx, now).map(|p| p || progress),
            State::Handshaking(_) => Ok(progress),
        }
    }
}

impl Established {
    fn poll(
        &mut self,
        id: ConnId,
        endpoint: &mut ServerEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, String> {
        let mut progress = false;
        if self.ping_in_flight {
            if let Some(ping_pong) = &mut self.ping_pong {
                if let Poll::Ready(result) = ping_pong.poll_pong(cx) {
                    self.ping_in_flight = false;
                    progress = true;
                    match result {
                        Ok(_) => endpoint.handle_ping_ack(id, now),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }
        // New streams, and the connection's I/O (poll_accept does both).
        loop {
            match self.connection.poll_accept(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok((request, respond)))) => {
                    progress = true;
                    let (parts, body) = request.into_parts();
                    let stream = endpoint.handle_request_head(id, &parts, now);
                    let received = body.is_end_stream();
                    let s = Stream {
                        body,
                        received,
                        respond,
                        send: None,
                        transmit: true,
                    };
                    self.streams.insert(stream, s);
                    if received {
                        endpoint.handle_end_of_stream(stream, now);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Err(e.to_string()),
                Poll::Ready(None) => return Err("the connection closed".to_owned()),
            }
        }
        progress |= self.receive(endpoint, cx, now);
        // The answers; forget the streams that are over on the wire.
        self.streams.retain(|&stream, s| {
            progress |= transmit(endpoint, stream, s, cx, now);
            !endpoint.stream_finished(stream)
        });
        Ok(progress)
    }

    /// Reads request DATA as it arrives (every frame goes to the endpoint
    /// at once: it decides when to release its capacity), and notices
    /// resets.
    fn receive(
        &mut self,
        endpoint: &mut ServerEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        for (&id, s) in &mut self.streams {
            while !s.received {
                match s.body.poll_data(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(data))) => {
                        progress = true;
                        endpoint.handle_data(id, data, now);
                    }
                    Poll::Ready(None) => {
                        progress = true;
                        s.received = true;
                        endpoint.handle_end_of_stream(id, now);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        progress = true;
                        s.received = true;
                        endpoint.handle_reset(id, reset_code(&e), now);
                    }
                }
            }
            if s.received {
                // The request is in: only a reset can still come.
                let reset = match &mut s.send {
                    Some(send) => send.poll_reset(cx),
                    None => s.respond.poll_reset(cx),
                };
                if let Poll::Ready(reason) = reset {
                    progress = true;
                    endpoint.handle_reset(id, reason.map_or(CANCEL, u32::from), now);
                }
            }
        }
        progress
    }
}

fn reset_code(e: &h2::Error) -> u32 {
    match e.reason() {
        Some(reason) if e.is_reset() => reason.into(),
        _ => CANCEL,
    }
}

/// Send-side flow control for an answer: the head needs no capacity; DATA
/// goes out within what h2 granted (`reserve_capacity(send_wanted)`, then
/// `capacity()`), and `poll_capacity` keeps our waker until h2 grants more.
fn transmit(
    endpoint: &mut ServerEndpoint,
    id: StreamId,
    s: &mut Stream,
    cx: &mut Context<'_>,
    now: Instant,
) -> bool {
    if !std::mem::take(&mut s.transmit) && endpoint.send_wanted(id) == 0 {
        return false;
    }
    let mut progress = false;
    loop {
        let mut room = match &mut s.send {
            Some(send) => {
                let wanted = endpoint.send_wanted(id);
                if wanted > 0 {
                    send.reserve_capacity(wanted);
                }
                send.capacity()
            }
            None => 0,
        };
        let mut opened = false;
        while let Some(transmit) = endpoint.poll_transmit(id, room, now) {
            progress = true;
            let sent = match transmit {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => s.respond.send_response(head, end_of_stream).map(|send| {
                    if !end_of_stream {
                        s.send = Some(send);
                        opened = true;
                    }
                }),
                ServerTransmit::Data(data) => {
                    room = room.saturating_sub(data.len());
                    match &mut s.send {
                        Some(send) => send.send_data(data, false),
                        None => Ok(()),
                    }
                }
                ServerTransmit::Trailers(trailers) => match &mut s.send {
                    Some(send) => send.send_trailers(trailers),
                    None => Ok(()),
                },
            };
            if let Err(e) = sent {
                endpoint.handle_reset(id, reset_code(&e), now);
                return true;
            }
            if opened {
                break; // the body exists now: reserve capacity for it
            }
        }
        if opened {
            continue;
        }
        if endpoint.send_wanted(id) == 0 {
            return progress;
        }
        let Some(send) = &mut s.send else {
            return progress;
        };
        match send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(granted))) if granted > 0 => continue,
            _ => return progress,
        }
    }
}

/// An incoming snapshot being read.
struct Incoming {
    request: RaftRequest,
    bytes: u64,
    crc32c: u32,
}

/// A snapshot the application finished reading.
#[derive(Debug, Clone)]
pub struct ReceivedSnapshot {
    pub declared: u64,
    pub bytes: u64,
    pub crc32c: u32,
    /// How the stream ended: `Ok` when every declared byte arrived and
    /// the core verified the running checksums.
    pub outcome: Result<(), Status>,
}

/// The server's application: the core's reference answers.
pub struct Application {
    header: RpcHeader,
    /// Requests answered, by method.
    pub answered: BTreeMap<&'static str, u64>,
    /// Heartbeats answered on the fast path.
    pub heartbeats: u64,
    reading: HashMap<RequestId, Incoming>,
    pub snapshots: Vec<ReceivedSnapshot>,
}

impl Default for Application {
    fn default() -> Self {
        Application {
            header: RpcHeader::new(3, "server", "127.0.0.1"),
            answered: BTreeMap::new(),
            heartbeats: 0,
            reading: HashMap::new(),
            snapshots: Vec::new(),
        }
    }
}

impl Application {
    fn on_event(&mut self, endpoint: &mut ServerEndpoint, event: ServerEvent, now: Instant) {
        match event {
            // The fast path: answered at once, even while the consumer is
            // busy (a snapshot being read, say).
            ServerEvent::Heartbeat { id, request, .. } => {
                self.heartbeats += 1;
                let answer = reference::append_entries_response(&request, self.header.clone());
                self.respond(
                    endpoint,
                    id,
                    RpcMethod::AppendEntries,
                    Ok(RaftResponse::AppendEntries(answer)),
                    now,
                );
            }
            ServerEvent::RpcQueued => {
                while let Some(rpc) = endpoint.poll_rpc(now) {
                    self.on_rpc(endpoint, rpc, now);
                }
            }
            ServerEvent::SnapshotReady { id } => self.read_snapshot(endpoint, id, now),
            // Pipelines are not set apart here: their appends come through
            // the consumer queue like everything else.
            ServerEvent::PipelineOpened { pipeline } => endpoint.drop_pipeline(pipeline, now),
            ServerEvent::PipelineReady { .. } => {}
        }
    }

    fn on_rpc(&mut self, endpoint: &mut ServerEndpoint, rpc: IncomingRpc, now: Instant) {
        if let RaftRequest::InstallSnapshot(_) = rpc.request {
            let incoming = Incoming {
                request: rpc.request,
                bytes: 0,
                crc32c: 0,
            };
            self.reading.insert(rpc.id, incoming);
            // Data may be waiting already.
            return self.read_snapshot(endpoint, rpc.id, now);
        }
        let method = match rpc.request {
            RaftRequest::AppendEntries(_) => RpcMethod::AppendEntries,
            RaftRequest::RequestVote(_) => RpcMethod::RequestVote,
            RaftRequest::RequestPreVote(_) => RpcMethod::RequestPreVote,
            RaftRequest::TimeoutNow(_) => RpcMethod::TimeoutNow,
            RaftRequest::InstallSnapshot(_) => RpcMethod::InstallSnapshot,
        };
        let answer = reference::response(&rpc.request, self.header.clone(), None);
        self.respond(endpoint, rpc.id, method, Ok(answer), now);
    }

    /// Reads what the endpoint holds of an incoming snapshot. Each piece
    /// taken makes room: the endpoint reads on and releases capacity.
    fn read_snapshot(&mut self, endpoint: &mut ServerEndpoint, id: RequestId, now: Instant) {
        let Some(incoming) = self.reading.get_mut(&id) else {
            return;
        };
        let outcome = loop {
            match endpoint.read_snapshot(id, now) {
                SnapshotRead::Data(data) => {
                    incoming.bytes += data.len() as u64;
                    incoming.crc32c = crc32c::crc32c_append(incoming.crc32c, &data);
                }
                SnapshotRead::Pending => return,
                SnapshotRead::End => break Ok(()),
                SnapshotRead::Failed(status) => break Err(status),
            }
        };
        let Some(incoming) = self.reading.remove(&id) else {
            return;
        };
        let RaftRequest::InstallSnapshot(meta) = &incoming.request else {
            return;
        };
        let received = outcome.is_ok().then_some(incoming.bytes);
        self.snapshots.push(ReceivedSnapshot {
            declared: meta.size,
            bytes: incoming.bytes,
            crc32c: incoming.crc32c,
            outcome,
        });
        // success = exactly `size` bytes arrived intact.
        let answer = reference::response(&incoming.request, self.header.clone(), received);
        self.respond(endpoint, id, RpcMethod::InstallSnapshot, Ok(answer), now);
    }

    fn respond(
        &mut self,
        endpoint: &mut ServerEndpoint,
        id: RequestId,
        method: RpcMethod,
        answer: Result<RaftResponse, Status>,
        now: Instant,
    ) {
        // An error means the call is over (its caller gave up, say): the
        // answer has nowhere to go.
        if endpoint.respond(id, answer, now).is_ok() {
            *self.answered.entry(method.name()).or_default() += 1;
        }
    }
}
