//! The client side: a `ClientEndpoint` and the h2 client connections it
//! asks for.
//!
//! This module owns the connections the endpoint opened (a non-blocking
//! TCP connect, the HTTP/2 handshake, then h2's connection, its PINGs and
//! its streams) and carries out every [`ClientOutput`]:
//!
//! | output | what it becomes here |
//! | --- | --- |
//! | `Connect { conn, peer }` | a non-blocking connect; when the socket turns writable, `h2::client::handshake`; then `handle_connected` (or `handle_connect_failed`) |
//! | `Ping { conn }` | `PingPong::send_ping`; its `poll_pong` becomes `handle_ping_ack` |
//! | `OpenStream { conn, call, request, send_now }` | `SendRequest::poll_ready`, then `send_request(request, false)`; `ResponseFuture` gives the head |
//! | `Transmit { conn, call }` | pull `poll_transmit(call, capacity)` into `SendStream::send_data` |
//! | `ReleaseCapacity { conn, call, bytes }` | `RecvStream::flow_control().release_capacity(bytes)` |
//! | `Close { conn }` | drop the connection (h2 closes it, the socket leaves the poll) |
//!
//! Every [`ClientEvent`] goes to [`ClientSide::events`], where the
//! application (the steps in `steps.rs`) reads it. Nothing here decides
//! which connection a call uses, when to PING or what a call returns: the
//! endpoint does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::Request;
use mio::net::TcpStream;
use raft_grpc_transport::TransportError;
use raft_grpc_transport::call::ClientTransmit;
use raft_grpc_transport::client::{
    CallId, ClientConfig, ClientEndpoint, ClientEvent, ClientOutput,
};
use raft_grpc_transport::http2::{Http2Settings, NO_ERROR};
use raft_grpc_transport::message::RaftResponse;
use raft_grpc_transport::pool::ConnId;

use crate::reactor::{Io, Reactor, Source};

type Handshake =
    Pin<Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<Io, Bytes>), h2::Error>>>>;

/// The client endpoint and everything it asked the loop to open.
pub struct ClientSide {
    pub endpoint: ClientEndpoint,
    builder: h2::client::Builder,
    conns: HashMap<ConnId, Conn>,
    /// What the application learns, in order.
    pub events: VecDeque<ClientEvent>,
}

struct Conn {
    source: Rc<Source<TcpStream>>,
    state: State,
}

enum State {
    /// The TCP connect is under way: the socket turns writable when done.
    Connecting,
    Handshaking(Handshake),
    Ready(Box<Established>),
}

/// An HTTP/2 connection: h2's connection (which does the I/O), its PINGs
/// and its streams.
struct Established {
    send_request: SendRequest<Bytes>,
    connection: Connection<Io, Bytes>,
    ping_pong: Option<PingPong>,
    ping_in_flight: bool,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS, as last reported.
    max_streams: Option<usize>,
    streams: BTreeMap<CallId, Stream>,
    /// Streams waiting for h2 to accept them, oldest first.
    opening: VecDeque<CallId>,
}

enum Stream {
    Opening {
        request: Request<()>,
        send_now: usize,
    },
    Open {
        send: SendStream<Bytes>,
        /// Bytes to hand over before h2 has granted capacity (the first
        /// DATA of a unary call leaves with its HEADERS).
        send_now: usize,
        response: Option<ResponseFuture>,
        body: Option<RecvStream>,
        /// The response is over (trailers, end or reset).
        received: bool,
        /// The endpoint said `Transmit`.
        transmit: bool,
    },
}

/// Why a connection is gone.
enum Gone {
    /// Before the HTTP/2 handshake was done: a failed connect.
    Connect(String),
    /// After: a lost connection.
    Lost(String),
}

impl ClientSide {
    pub fn new(config: ClientConfig, http2: &Http2Settings) -> ClientSide {
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(http2.initial_stream_window)
            .initial_connection_window_size(http2.initial_connection_window)
            .max_frame_size(http2.max_frame_size)
            .max_send_buffer_size(http2.max_send_buffer)
            .max_header_list_size(http2.max_header_list_size)
            .enable_push(false);
        ClientSide {
            endpoint: ClientEndpoint::new(config),
            builder,
            conns: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Connections open or opening.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Takes the outcome of `call`, if it came.
    pub fn take_completed(&mut self, call: CallId) -> Option<Result<RaftResponse, TransportError>> {
        let at = self
            .events
            .iter()
            .position(|e| matches!(e, ClientEvent::Completed { call: c, .. } if *c == call))?;
        match self.events.remove(at) {
            Some(ClientEvent::Completed { result, .. }) => Some(result),
            _ => None,
        }
    }

    /// The drain rule: carries out every output and collects every event,
    /// until both queues are empty (carrying out an output can be an input
    /// that makes more). Returns whether there was anything.
    pub fn drain(&mut self, reactor: &mut Reactor, now: Instant) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(output) = self.endpoint.poll_output() {
                progressed = true;
                self.carry_out(output, reactor, now);
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.events.push_back(event);
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    fn carry_out(&mut self, output: ClientOutput, reactor: &mut Reactor, now: Instant) {
        match output {
            ClientOutput::Connect { conn, peer } => match connect(reactor, &peer) {
                Ok(source) => {
                    let state = State::Connecting;
                    self.conns.insert(conn, Conn { source, state });
                }
                Err(e) => self
                    .endpoint
                    .handle_connect_failed(conn, &e.to_string(), now),
            },
            // Dropping h2's connection closes the socket (and the Source
            // leaves the poll); the endpoint wants nothing back.
            ClientOutput::Close { conn } => {
                self.conns.remove(&conn);
            }
            ClientOutput::Ping { conn } => {
                if let Some(c) = self.established(conn) {
                    if let Some(ping_pong) = &mut c.ping_pong {
                        if ping_pong.send_ping(Ping::opaque()).is_ok() {
                            c.ping_in_flight = true;
                        }
                    }
                }
            }
            ClientOutput::OpenStream {
                conn,
                call,
                request,
                send_now,
                ..
            } => match self.established(conn) {
                Some(c) => {
                    c.streams
                        .insert(call, Stream::Opening { request, send_now });
                    c.opening.push_back(call);
                }
                None => self.endpoint.handle_stream_refused(call, now),
            },
            ClientOutput::Transmit { conn, call } => {
                if let Some(Stream::Open { transmit, .. }) = self
                    .established(conn)
                    .and_then(|c| c.streams.get_mut(&call))
                {
                    *transmit = true;
                }
            }
            // Receive flow control: the endpoint took the data, so h2 may
            // let the peer send that much more (a WINDOW_UPDATE).
            ClientOutput::ReleaseCapacity { conn, call, bytes } => {
                if let Some(Stream::Open {
                    body: Some(body), ..
                }) = self
                    .established(conn)
                    .and_then(|c| c.streams.get_mut(&call))
                {
                    let _ = body.flow_control().release_capacity(bytes);
                }
            }
        }
    }

    fn established(&mut self, conn: ConnId) -> Option<&mut Established> {
        match &mut self.conns.get_mut(&conn)?.state {
            State::Ready(c) => Some(c),
            _ => None,
        }
    }

    /// One pass over every connection: connects, handshakes, h2's I/O,
    /// PINGs, new streams, responses, and what the streams have to send.
    /// Inputs go to the endpoint as they are found; the caller drains it
    /// after the pass. Returns whether anything happened.
    pub fn pass(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let mut gone = Vec::new();
        for (&id, conn) in &mut self.conns {
            match conn.poll(id, &self.builder, &mut self.endpoint, cx, now) {
                Ok(p) => progress |= p,
                Err(why) => gone.push((id, why)),
            }
        }
        for (id, why) in gone {
            progress = true;
            self.conns.remove(&id);
            match why {
                Gone::Connect(detail) => self.endpoint.handle_connect_failed(id, &detail, now),
                Gone::Lost(detail) => self.endpoint.handle_connection_lost(id, &detail, now),
            }
        }
        progress
    }
}

/// Starts a non-blocking TCP connect to `peer` (mio's `connect` returns
/// at once, with the connect under way).
fn connect(reactor: &mut Reactor, peer: &str) -> io::Result<Rc<Source<TcpStream>>> {
    let addr: SocketAddr = peer
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{peer}: {e}")))?;
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    reactor.register(stream)
}

impl Conn {
    fn poll(
        &mut self,
        id: ConnId,
        builder: &h2::client::Builder,
        endpoint: &mut ClientEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, Gone> {
        let mut progress = false;
        if let State::Connecting = self.state {
            // A non-blocking connect is done when the socket turns
            // writable: then it has either an error (SO_ERROR) or a peer.
            // Until the poll reports the socket there is nothing to look at.
            if !self.source.take_ready() {
                return Ok(false);
            }
            let stream = self.source.get();
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                return Err(Gone::Connect(e.to_string()));
            }
            match stream.peer_addr() {
                Ok(_) => {}
                // Not yet (a spurious event, or the first look at a new
                // socket): the writable event comes when it is done.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => return Err(Gone::Connect(e.to_string())),
            }
            let io = Io(self.source.clone());
            self.state = State::Handshaking(Box::pin(builder.handshake::<Io, Bytes>(io)));
            progress = true;
        }
        if let State::Handshaking(handshake) = &mut self.state {
            match handshake.as_mut().poll(cx) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Err(e)) => return Err(Gone::Connect(e.to_string())),
                Poll::Ready(Ok((send_request, mut connection))) => {
                    let ping_pong = connection.ping_pong();
                    self.state = State::Ready(Box::new(Established {
                        send_request,
                        connection,
                        ping_pong,
                        ping_in_flight: false,
                        max_streams: None,
                        streams: BTreeMap::new(),
                        opening: VecDeque::new(),
                    }));
                    // The endpoint PINGs next, to prove the peer speaks
                    // HTTP/2 before it puts a stream on the connection.
                    endpoint.handle_connected(id, now);
                    progress = true;
                }
            }
        }
        match &mut self.state {
            State::Ready(c) => c.poll(id, endpoint, cx, now).map(|p| p || progress),
            _ => Ok(progress),
        }
    }
}

impl Established {
    fn poll(
        &mut self,
        id: ConnId,
        endpoint: &mut ClientEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, Gone> {
        let mut progress = false;
        // The connection's I/O: writes the frames streams queued, reads
        // what arrived and hands it to the streams.
        if let Poll::Ready(result) = Pin::new(&mut self.connection).poll(cx) {
            return Err(Gone::Lost(match result {
                Ok(()) => "the peer closed the connection".to_owned(),
                Err(e) => e.to_string(),
            }));
        }
        if self.ping_in_flight {
            if let Some(ping_pong) = &mut self.ping_pong {
                if let Poll::Ready(result) = ping_pong.poll_pong(cx) {
                    self.ping_in_flight = false;
                    progress = true;
                    match result {
                        Ok(_) => endpoint.handle_ping_ack(id, now),
                        Err(e) => return Err(Gone::Lost(e.to_string())),
                    }
                }
            }
        }
        let max_streams = self.send_request.current_max_send_streams();
        if self.max_streams != Some(max_streams) {
            self.max_streams = Some(max_streams);
            endpoint.handle_max_streams(id, u32::try_from(max_streams).ok(), now);
        }
        progress |= self.open_streams(id, endpoint, cx, now);
        progress |= self.receive(id, endpoint, cx, now);
        // What the streams have to send; forget the streams of calls the
        // endpoint is done with.
        self.streams.retain(|&call, stream| {
            progress |= transmit(endpoint, call, stream, cx, now);
            endpoint.has_call(call)
        });
        Ok(progress)
    }

    /// Opens waiting streams while h2 has room for them.
    fn open_streams(
        &mut self,
        id: ConnId,
        endpoint: &mut ClientEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        while let Some(&call) = self.opening.front() {
            let ready = match self.send_request.poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(ready) => ready,
            };
            self.opening.pop_front();
            progress = true;
            let Some(Stream::Opening { request, send_now }) = self.streams.remove(&call) else {
                continue; // the call ended before its stream opened
            };
            match ready.and_then(|()| self.send_request.send_request(request, false)) {
                Ok((response, send)) => {
                    let stream = Stream::Open {
                        send,
                        send_now,
                        response: Some(response),
                        body: None,
                        received: false,
                        transmit: true,
                    };
                    self.streams.insert(call, stream);
                }
                Err(e) => {
                    stream_failed(endpoint, id, call, &e, now);
                    endpoint.handle_stream_refused(call, now);
                }
            }
        }
        progress
    }

    /// Reads the responses: head, DATA, trailers.
    fn receive(
        &mut self,
        id: ConnId,
        endpoint: &mut ClientEndpoint,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        for (&call, stream) in &mut self.streams {
            let Stream::Open {
                response,
                body,
                received: received @ false,
                ..
            } = stream
            else {
                continue;
            };
            if let Some(future) = response {
                match Pin::new(future).poll(cx) {
                    Poll::Pending => continue,
                    Poll::Ready(Ok(head)) => {
                        progress = true;
                        *response = None;
                        let (parts, recv) = head.into_parts();
                        let end = recv.is_end_stream();
                        endpoint.handle_response_head(call, &parts, end, now);
                        if end {
                            *received = true; // Trailers-Only
                            continue;
                        }
                        *body = Some(recv);
                    }
                    Poll::Ready(Err(e)) => {
                        progress = true;
                        *response = None;
                        *received = true;
                        stream_failed(endpoint, id, call, &e, now);
                        continue;
                    }
                }
            }
            let Some(recv) = body else { continue };
            loop {
                match recv.poll_data(cx) {
                    Poll::Pending => break,
                    // Its capacity is released when the endpoint says so.
                    Poll::Ready(Some(Ok(data))) => {
                        progress = true;
                        endpoint.handle_response_data(call, data, now);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        progress = true;
                        *received = true;
                        stream_failed(endpoint, id, call, &e, now);
                        break;
                    }
                    Poll::Ready(None) => {
                        let Poll::Ready(trailers) = recv.poll_trailers(cx) else {
                            break;
                        };
                        progress = true;
                        *received = true;
                        match trailers {
                            Ok(Some(t)) => endpoint.handle_response_trailers(call, &t, now),
                            Ok(None) => endpoint.handle_response_end(call, now),
                            Err(e) => stream_failed(endpoint, id, call, &e, now),
                        }
                        break;
                    }
                }
            }
        }
        progress
    }
}

/// What an h2 error on a stream means for its call. A lost connection is
/// reported by the connection itself.
fn stream_failed(
    endpoint: &mut ClientEndpoint,
    conn: ConnId,
    call: CallId,
    error: &h2::Error,
    now: Instant,
) {
    let code = error.reason().map_or(NO_ERROR, u32::from);
    if error.is_go_away() {
        endpoint.handle_goaway(conn, code, now);
        endpoint.handle_stream_refused(call, now);
    } else if error.is_reset() {
        endpoint.handle_stream_reset(call, code, now);
    }
}

/// Send-side flow control: moves what the call wants to send onto its
/// stream, never more than h2 granted, and asks h2 for more.
///
/// `reserve_capacity(send_wanted)` asks; `capacity()` is what h2 granted
/// (within the peer's windows); `poll_capacity` stores our waker until h2
/// grants more, so a stream that still wants to send is tried again on the
/// pass after the peer's WINDOW_UPDATE. Returns whether anything was sent.
fn transmit(
    endpoint: &mut ClientEndpoint,
    call: CallId,
    stream: &mut Stream,
    cx: &mut Context<'_>,
    now: Instant,
) -> bool {
    let Stream::Open {
        send,
        send_now,
        transmit,
        ..
    } = stream
    else {
        return false;
    };
    if !std::mem::take(transmit) && endpoint.send_wanted(call) == 0 {
        return false;
    }
    let mut progress = false;
    loop {
        let wanted = endpoint.send_wanted(call);
        if wanted > 0 {
            send.reserve_capacity(wanted);
        }
        let mut room = send.capacity().max(std::mem::take(send_now));
        while let Some(transmit) = endpoint.poll_transmit(call, room, now) {
            progress = true;
            match transmit {
                ClientTransmit::Data {
                    data,
                    end_of_stream,
                } => {
                    room = room.saturating_sub(data.len());
                    let _ = send.send_data(data, end_of_stream);
                }
                ClientTransmit::Reset(code) => send.send_reset(Reason::from(code)),
            }
        }
        if endpoint.send_wanted(call) == 0 || !endpoint.has_call(call) {
            return progress;
        }
        match send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(granted))) if granted > 0 => continue,
            _ => return progress,
        }
    }
}
