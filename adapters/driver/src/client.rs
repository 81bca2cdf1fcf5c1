//! The client half of the driver: the core's `ClientEndpoint` over h2.
//!
//! This module owns the state the client side shares ([`ClientShared`]:
//! the endpoint behind one lock, each connection's inbox and waker, the
//! waiters of calls), the dispatch of the endpoint's outputs and events
//! after every input ([`ClientShared::update`]), one task per connection
//! (connect through the [`Connector`], the HTTP/2 handshake, then one
//! future that polls h2's connection, its PINGs and every stream on it),
//! and the timer task that calls `handle_timeout`. Nothing here decides
//! which connection a call uses, when a call is over, when to PING or what
//! a call returns: the endpoint does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use event_listener::Event;
use futures_lite::future;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{HeaderMap, Request};
use raft_grpc_transport::TransportError;
use raft_grpc_transport::call::ClientTransmit;
use raft_grpc_transport::client::{
    CallId, ClientConfig, ClientEndpoint, ClientEvent, ClientOutput,
};
use raft_grpc_transport::http2::Http2Settings;
use raft_grpc_transport::message::{AppendEntriesResponse, RaftResponse};
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::snapshot::SnapshotProgress;

use crate::capacity;
use crate::h2_error::Failure;
use crate::runtime::{BoxIo, Connector, Runtime};

/// Where a call's outcome goes.
pub(crate) type CallWaiter = async_channel::Sender<Result<RaftResponse, TransportError>>;

/// A pipeline's waiters.
pub(crate) struct PipelineWaiters {
    pub(crate) appended:
        async_channel::Sender<(u64, Result<AppendEntriesResponse, TransportError>)>,
    pub(crate) ready: Arc<Event>,
    /// Its stream was opened on a connection.
    pub(crate) opened: bool,
    /// Why it closed, once it did.
    pub(crate) closed: Option<TransportError>,
}

/// What a connection's task is asked to do.
// Short-lived (queued, then executed): boxing the request head would cost
// an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Close,
    Ping,
    Open {
        call: CallId,
        request: Request<()>,
        send_now: usize,
    },
    Release {
        call: CallId,
        bytes: usize,
    },
}

/// A connection's mailbox.
#[derive(Default)]
struct ConnSlot {
    inbox: VecDeque<Command>,
    waker: Option<Waker>,
    /// Its task is polling right now: it looks at `woken` before it
    /// sleeps, so it needs no wake-up.
    polling: bool,
    /// Something happened for it since its task last looked.
    woken: bool,
}

/// The state the client tasks share.
pub(crate) struct ClientState {
    pub(crate) endpoint: ClientEndpoint,
    conns: HashMap<ConnId, ConnSlot>,
    pub(crate) calls: HashMap<CallId, CallWaiter>,
    pub(crate) pipelines: HashMap<CallId, PipelineWaiters>,
    pub(crate) snapshots: HashMap<CallId, Arc<Event>>,
    pub(crate) progress: HashMap<CallId, SnapshotProgress>,
    /// The deadline the timer task sleeps until.
    timer_armed: Option<Instant>,
}

/// The client half of a transport.
pub(crate) struct ClientShared<R: Runtime> {
    pub(crate) runtime: R,
    connector: Connector<BoxIo>,
    http2: Http2Settings,
    state: Mutex<ClientState>,
    timer: Event,
    /// The metric handles (see `observe`).
    pub(crate) meters: crate::observe::ClientMeters,
}

impl<R: Runtime> ClientShared<R> {
    pub(crate) fn new(
        runtime: R,
        config: ClientConfig,
        http2: Http2Settings,
        connector: Connector<BoxIo>,
    ) -> Arc<Self> {
        let shared = Arc::new(ClientShared {
            runtime,
            connector,
            http2,
            state: Mutex::new(ClientState {
                endpoint: ClientEndpoint::new(config),
                conns: HashMap::new(),
                calls: HashMap::new(),
                pipelines: HashMap::new(),
                snapshots: HashMap::new(),
                progress: HashMap::new(),
                timer_armed: None,
            }),
            timer: Event::new(),
            meters: crate::observe::ClientMeters::new(),
        });
        shared.runtime.spawn(run_timer(Arc::downgrade(&shared)));
        shared
    }

    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one input on the endpoint, then carries out what it asks.
    pub(crate) fn update<T>(self: &Arc<Self>, f: impl FnOnce(&mut ClientState, Instant) -> T) -> T {
        self.update_from(None, f)
    }

    /// [`update`](Self::update) from the task of connection `own`, whose `f`
    /// sends what that connection's calls have after applying its inputs:
    /// the wakes of `own` that the outputs of `f` raise are already served
    /// and are cleared; its commands stay in its inbox.
    fn update_from<T>(
        self: &Arc<Self>,
        own: Option<ConnId>,
        f: impl FnOnce(&mut ClientState, Instant) -> T,
    ) -> T {
        let mut state = self.lock();
        let result = f(&mut state, Instant::now());
        let spawn = state.dispatch();
        if let Some(slot) = own.and_then(|conn| state.conns.get_mut(&conn)) {
            slot.woken = false;
        }
        let rearm = state.timer_needs_rearm();
        drop(state);
        for (conn, peer) in spawn {
            self.runtime.spawn(run_connection(self.clone(), conn, peer));
        }
        if rearm {
            self.timer.notify(usize::MAX);
        }
        result
    }

    /// Reads the state without an input.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&ClientState) -> T) -> T {
        f(&self.lock())
    }
}

impl ClientState {
    /// Carries out the endpoint's outputs and hands its events to their
    /// waiters. Returns the connections to open.
    fn dispatch(&mut self) -> Vec<(ConnId, String)> {
        let mut spawn = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(output) = self.endpoint.poll_output() {
                progressed = true;
                match output {
                    ClientOutput::Connect { conn, peer } => {
                        self.conns.insert(conn, ConnSlot::default());
                        spawn.push((conn, peer));
                    }
                    ClientOutput::Close { conn } => self.command(conn, Command::Close),
                    ClientOutput::Ping { conn } => self.command(conn, Command::Ping),
                    ClientOutput::OpenStream {
                        conn,
                        call,
                        request,
                        send_now,
                        ..
                    } => {
                        if self.conns.contains_key(&conn) {
                            let open = Command::Open {
                                call,
                                request,
                                send_now,
                            };
                            self.command(conn, open);
                        } else {
                            self.endpoint.handle_stream_refused(call, Instant::now());
                        }
                    }
                    ClientOutput::Transmit { conn, .. } => self.wake(conn),
                    ClientOutput::ReleaseCapacity { conn, call, bytes } => {
                        self.command(conn, Command::Release { call, bytes })
                    }
                }
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.deliver(event);
            }
            if !progressed {
                return spawn;
            }
        }
    }

    fn deliver(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Completed { call, result } => {
                self.progress.remove(&call);
                if let Some(waiter) = self.calls.remove(&call) {
                    let _ = waiter.try_send(result);
                }
                if let Some(wants) = self.snapshots.remove(&call) {
                    wants.notify(usize::MAX);
                }
            }
            ClientEvent::PipelineOpened { pipeline } => {
                if let Some(p) = self.pipelines.get_mut(&pipeline) {
                    p.opened = true;
                    p.ready.notify(usize::MAX);
                }
            }
            ClientEvent::Appended {
                pipeline,
                seq,
                result,
            } => {
                if let Some(p) = self.pipelines.get(&pipeline) {
                    let _ = p.appended.try_send((seq, result));
                }
            }
            ClientEvent::PipelineClosed { pipeline, error } => {
                // The entry stays until the Pipeline handle goes, so that its
                // opener and its appenders can read why.
                if let Some(p) = self.pipelines.get_mut(&pipeline) {
                    p.closed = Some(error);
                    p.appended.close();
                    p.ready.notify(usize::MAX);
                }
            }
            ClientEvent::PipelineReady { pipeline } => {
                if let Some(p) = self.pipelines.get(&pipeline) {
                    p.ready.notify(usize::MAX);
                }
            }
            ClientEvent::SnapshotWantsData { call } => {
                if let Some(wants) = self.snapshots.get(&call) {
                    wants.notify(usize::MAX);
                }
            }
            ClientEvent::SnapshotProgress { call, progress } => {
                self.progress.insert(call, progress);
            }
        }
    }

    fn command(&mut self, conn: ConnId, command: Command) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            slot.inbox.push_back(command);
        }
        self.wake(conn);
    }

    fn wake(&mut self, conn: ConnId) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            slot.woken = true;
            if !slot.polling {
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    fn timer_needs_rearm(&mut self) -> bool {
        let next = self.endpoint.poll_timeout();
        let rearm = match (next, self.timer_armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if rearm {
            self.timer_armed = next;
        }
        rearm
    }
}

/// Calls `handle_timeout` whenever the endpoint's next deadline passes.
async fn run_timer<R: Runtime>(shared: Weak<ClientShared<R>>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let listener = strong.timer.listen();
        let deadline = {
            let mut state = strong.lock();
            state.timer_armed = state.endpoint.poll_timeout();
            state.timer_armed
        };
        let sleep = deadline.map(|d| strong.runtime.sleep_until(d));
        drop(strong);
        let fired = match sleep {
            Some(sleep) => {
                future::or(
                    async {
                        sleep.await;
                        true
                    },
                    async {
                        listener.await;
                        false
                    },
                )
                .await
            }
            None => {
                listener.await;
                false
            }
        };
        if fired {
            let Some(strong) = shared.upgrade() else {
                return;
            };
            strong.update(|s, now| s.endpoint.handle_timeout(now));
        }
    }
}

pub(crate) fn h2_client(settings: &Http2Settings) -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_send_buffer_size(settings.max_send_buffer)
        .max_header_list_size(settings.max_header_list_size)
        .enable_push(false);
    builder
}

/// Opens a connection, then drives it until it ends.
async fn run_connection<R: Runtime>(shared: Arc<ClientShared<R>>, conn: ConnId, peer: String) {
    let mut meter = shared.meters.slot(&peer, || {
        shared.read(|s| {
            let pool = s.endpoint.pool();
            pool.slot_of(conn)
                .map(|(_, slot)| (slot, pool.slot_lanes(slot)))
        })
    });
    let connect = async {
        let io = (shared.connector)(peer.clone())
            .await
            .map_err(|e| e.to_string())?;
        h2_client(&shared.http2)
            .handshake::<BoxIo, Bytes>(io)
            .await
            .map_err(|e| e.to_string())
    };
    // The endpoint's connect deadline (or its close) may give up first.
    let abandoned = std::future::poll_fn(|cx| poll_abandoned(&shared, conn, cx));
    let connected = future::or(async { Some(connect.await) }, async {
        abandoned.await;
        None
    })
    .await;
    let (send_request, connection) = match connected {
        None => {
            shared.lock().conns.remove(&conn);
            return;
        }
        Some(Err(detail)) => {
            crate::observe::connect_failed(&peer, &detail);
            meter.connect_failed();
            shared.update(|s, now| {
                s.conns.remove(&conn);
                s.endpoint.handle_connect_failed(conn, &detail, now);
            });
            return;
        }
        Some(Ok(pair)) => pair,
    };
    crate::observe::connected(&peer);
    meter.connected();
    shared.update(|s, now| s.endpoint.handle_connected(conn, now));
    let mut driver = Connection {
        conn,
        send_request,
        connection,
        ping_pong: None,
        ping_in_flight: false,
        max_streams: None,
        streams: BTreeMap::new(),
        opening: VecDeque::new(),
        inputs: Vec::new(),
    };
    driver.ping_pong = driver.connection.ping_pong();
    let lost = loop {
        match std::future::poll_fn(|cx| driver.poll(cx, &shared)).await {
            Turn::Over(lost) => break lost,
            Turn::Yield => shared.runtime.yield_now().await,
        }
    };
    crate::observe::connection_lost(&peer, lost.as_deref());
    shared.update(|s, now| {
        s.conns.remove(&conn);
        if let Some(detail) = lost {
            s.endpoint.handle_connection_lost(conn, &detail, now);
        }
    });
}

/// Ready once the endpoint closed or forgot the connection.
fn poll_abandoned<R: Runtime>(
    shared: &ClientShared<R>,
    conn: ConnId,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut state = shared.lock();
    match state.conns.get_mut(&conn) {
        Some(slot) if !slot.inbox.iter().any(|c| matches!(c, Command::Close)) => {
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        }
        _ => Poll::Ready(()),
    }
}

/// Rounds of work a connection's task does in one poll before it yields,
/// so that one busy connection (a snapshot arriving at loopback speed)
/// cannot keep the others of its executor thread waiting.
pub(crate) const ROUNDS_PER_POLL: usize = 16;

/// Bytes of DATA a connection's task moves in one poll before it yields:
/// a round can move a whole window, and 1 MiB takes a fraction of a
/// millisecond, so a heartbeat waiting behind a snapshot on the same
/// executor thread waits at most that long.
pub(crate) const BYTES_PER_POLL: usize = 1 << 20;

/// How one poll of a connection's task ended.
pub(crate) enum Turn<T> {
    /// The connection is over.
    Over(T),
    /// It moved its budget: yield to the runtime, then poll again.
    Yield,
}

/// One stream of a connection.
enum Stream {
    /// Waiting for h2 to accept a new stream.
    Opening {
        request: Request<()>,
        send_now: usize,
    },
    Open {
        send: SendStream<Bytes>,
        /// Bytes to hand over before h2 grants capacity (first send only).
        send_now: usize,
        response: Option<ResponseFuture>,
        body: Option<RecvStream>,
        /// The response is over (trailers, end, reset).
        received: bool,
    },
}

/// What the streams of a connection report, applied under one lock.
enum Input {
    Head(CallId, http::response::Parts, bool),
    Data(CallId, Bytes),
    Trailers(CallId, HeaderMap),
    End(CallId),
    Refused(CallId),
    Reset(CallId, u32),
    GoAway(u32),
    PingAck,
    MaxStreams(Option<u32>),
}

/// An established connection: h2's connection future, its PINGs and its
/// streams, polled by one task.
struct Connection {
    conn: ConnId,
    send_request: SendRequest<Bytes>,
    connection: h2::client::Connection<BoxIo, Bytes>,
    ping_pong: Option<PingPong>,
    ping_in_flight: bool,
    max_streams: Option<usize>,
    streams: BTreeMap<CallId, Stream>,
    /// Streams waiting to be opened, oldest first.
    opening: VecDeque<CallId>,
    /// What the streams reported, not yet applied.
    inputs: Vec<Input>,
}

impl Connection {
    /// Takes the connection's commands; with `register`, first records the
    /// task's waker, that it is polling, and that it has seen every wake so
    /// far (without, a wake stays for the round's end to see). `None` when
    /// the endpoint forgot the connection.
    fn commands<R: Runtime>(
        &self,
        shared: &ClientShared<R>,
        cx: &Context<'_>,
        register: bool,
    ) -> Option<VecDeque<Command>> {
        let mut state = shared.lock();
        let slot = state.conns.get_mut(&self.conn)?;
        if register {
            slot.waker = Some(cx.waker().clone());
            slot.polling = true;
            slot.woken = false;
        }
        Some(std::mem::take(&mut slot.inbox))
    }

    /// Carries out commands; `Some` when one closes the connection.
    fn execute(&mut self, commands: VecDeque<Command>) -> Option<Turn<Option<String>>> {
        for command in commands {
            match command {
                Command::Close => return Some(Turn::Over(None)),
                Command::Ping => {
                    if let Some(ping_pong) = &mut self.ping_pong {
                        if ping_pong.send_ping(Ping::opaque()).is_ok() {
                            self.ping_in_flight = true;
                        }
                    }
                }
                Command::Open {
                    call,
                    request,
                    send_now,
                } => {
                    self.streams
                        .insert(call, Stream::Opening { request, send_now });
                    self.opening.push_back(call);
                }
                Command::Release { call, bytes } => {
                    if let Some(Stream::Open {
                        body: Some(body), ..
                    }) = self.streams.get_mut(&call)
                    {
                        let _ = body.flow_control().release_capacity(bytes);
                    }
                }
            }
        }
        None
    }

    /// Drives the connection; `Over(Some(detail))` when it is lost,
    /// `Over(None)` when the endpoint closed it.
    ///
    /// One round: carry out the commands; open waiting streams; apply what
    /// arrived and send what the calls have, under one lock; carry out
    /// what that asked of this connection (releases, PINGs), so that the
    /// connection's I/O right after flushes it all in one write; then read
    /// what arrived. Another round only when something arrived, a stream
    /// waits to be opened, or another thread woke the connection: each
    /// round costs a read system call.
    fn poll<R: Runtime>(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Arc<ClientShared<R>>,
    ) -> Poll<Turn<Option<String>>> {
        let mut moved = 0;
        for _ in 0..ROUNDS_PER_POLL {
            if moved >= BYTES_PER_POLL {
                break;
            }
            let Some(commands) = self.commands(shared, cx, true) else {
                return Poll::Ready(Turn::Over(None));
            };
            if let Some(over) = self.execute(commands) {
                return Poll::Ready(over);
            }
            let mut inputs = std::mem::take(&mut self.inputs);
            self.open_streams(cx, &mut inputs);
            // Everything the streams reported, and their sending, under one
            // lock.
            let streams = &mut self.streams;
            let conn = self.conn;
            moved += shared.update_from(Some(conn), |s, now| {
                for input in inputs {
                    apply(&mut s.endpoint, conn, input, now);
                }
                let mut sent = 0;
                streams.retain(|call, stream| {
                    sent += transmit(&mut s.endpoint, *call, stream, cx, now);
                    s.endpoint.has_call(*call)
                });
                sent
            });
            let Some(own) = self.commands(shared, cx, false) else {
                return Poll::Ready(Turn::Over(None));
            };
            let waiting = self.opening.len();
            if let Some(over) = self.execute(own) {
                return Poll::Ready(over);
            }
            // A stream to open came in with them (another thread's call, or
            // one the endpoint retries): it is opened in the next round.
            let to_open = self.opening.len() > waiting;
            // The connection's I/O.
            if let Poll::Ready(result) = Pin::new(&mut self.connection).poll(cx) {
                return Poll::Ready(Turn::Over(Some(match result {
                    Ok(()) => "the peer closed the connection".to_owned(),
                    Err(e) => e.to_string(),
                })));
            }
            if self.ping_in_flight {
                if let Some(ping_pong) = &mut self.ping_pong {
                    if let Poll::Ready(result) = ping_pong.poll_pong(cx) {
                        self.ping_in_flight = false;
                        match result {
                            Ok(_) => self.inputs.push(Input::PingAck),
                            Err(e) => return Poll::Ready(Turn::Over(Some(e.to_string()))),
                        }
                    }
                }
            }
            let max_streams = self.send_request.current_max_send_streams();
            if self.max_streams != Some(max_streams) {
                self.max_streams = Some(max_streams);
                self.inputs
                    .push(Input::MaxStreams(u32::try_from(max_streams).ok()));
            }
            let mut arrived = std::mem::take(&mut self.inputs);
            self.receive(cx, &mut arrived);
            moved += arrived
                .iter()
                .map(|i| match i {
                    Input::Data(_, data) => data.len(),
                    _ => 0,
                })
                .sum::<usize>();
            self.inputs = arrived;
            let mut state = shared.lock();
            let Some(slot) = state.conns.get_mut(&self.conn) else {
                return Poll::Ready(Turn::Over(None));
            };
            if self.inputs.is_empty() && !slot.woken && !to_open {
                slot.polling = false;
                return Poll::Pending;
            }
        }
        // Let other tasks run (see ROUNDS_PER_POLL); what arrived waits in
        // `inputs` for the next poll.
        if let Some(slot) = shared.lock().conns.get_mut(&self.conn) {
            slot.polling = false;
        }
        Poll::Ready(Turn::Yield)
    }

    /// Opens waiting streams while h2 has room.
    fn open_streams(&mut self, cx: &mut Context<'_>, inputs: &mut Vec<Input>) {
        while let Some(&call) = self.opening.front() {
            let ready = match self.send_request.poll_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(ready) => ready,
            };
            self.opening.pop_front();
            let Some(Stream::Opening { request, send_now }) = self.streams.remove(&call) else {
                continue;
            };
            let opened = ready.and_then(|()| self.send_request.send_request(request, false));
            match opened {
                Ok((response, send)) => {
                    let stream = Stream::Open {
                        send,
                        send_now,
                        response: Some(response),
                        body: None,
                        received: false,
                    };
                    self.streams.insert(call, stream);
                }
                Err(e) => {
                    match Failure::of(&e) {
                        Failure::GoAway(code) => inputs.push(Input::GoAway(code)),
                        Failure::Reset(code) => inputs.push(Input::Reset(call, code)),
                        // The connection is going: the stream was never sent.
                        Failure::Lost(_) => {}
                    }
                    inputs.push(Input::Refused(call));
                }
            }
        }
    }

    /// Reads the responses of open streams.
    fn receive(&mut self, cx: &mut Context<'_>, inputs: &mut Vec<Input>) {
        for (&call, stream) in &mut self.streams {
            let Stream::Open {
                response,
                body,
                received,
                ..
            } = stream
            else {
                continue;
            };
            if *received {
                continue;
            }
            if let Some(future) = response {
                match Pin::new(future).poll(cx) {
                    Poll::Pending => continue,
                    Poll::Ready(Ok(head)) => {
                        *response = None;
                        let (parts, recv) = head.into_parts();
                        let end = recv.is_end_stream();
                        inputs.push(Input::Head(call, parts, end));
                        if end {
                            *received = true;
                            continue;
                        }
                        *body = Some(recv);
                    }
                    Poll::Ready(Err(e)) => {
                        *response = None;
                        *received = true;
                        failed(call, &e, inputs);
                        continue;
                    }
                }
            }
            let Some(recv) = body else {
                continue;
            };
            loop {
                match recv.poll_data(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(data))) => {
                        inputs.push(Input::Data(call, data));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        *received = true;
                        failed(call, &e, inputs);
                        break;
                    }
                    Poll::Ready(None) => match recv.poll_trailers(cx) {
                        Poll::Pending => break,
                        Poll::Ready(result) => {
                            *received = true;
                            match result {
                                Ok(Some(trailers)) => inputs.push(Input::Trailers(call, trailers)),
                                Ok(None) => inputs.push(Input::End(call)),
                                Err(e) => failed(call, &e, inputs),
                            }
                            break;
                        }
                    },
                }
            }
        }
    }
}

/// What a stream's h2 error means for its call.
fn failed(call: CallId, error: &h2::Error, inputs: &mut Vec<Input>) {
    match Failure::of(error) {
        Failure::GoAway(code) => {
            inputs.push(Input::GoAway(code));
            inputs.push(Input::Refused(call));
        }
        Failure::Reset(code) => inputs.push(Input::Reset(call, code)),
        // The connection's own future reports the loss.
        Failure::Lost(_) => {}
    }
}

fn apply(endpoint: &mut ClientEndpoint, conn: ConnId, input: Input, now: Instant) {
    match input {
        Input::Head(call, parts, end) => endpoint.handle_response_head(call, &parts, end, now),
        Input::Data(call, data) => endpoint.handle_response_data(call, data, now),
        Input::Trailers(call, trailers) => endpoint.handle_response_trailers(call, &trailers, now),
        Input::End(call) => endpoint.handle_response_end(call, now),
        Input::Refused(call) => endpoint.handle_stream_refused(call, now),
        Input::Reset(call, code) => endpoint.handle_stream_reset(call, code, now),
        Input::GoAway(code) => {
            crate::observe::goaway_received(conn, code);
            endpoint.handle_goaway(conn, code, now)
        }
        Input::PingAck => endpoint.handle_ping_ack(conn, now),
        Input::MaxStreams(max) => endpoint.handle_max_streams(conn, max, now),
    }
}

/// Moves what the call wants to send onto its h2 stream, within the
/// capacity h2 granted; asks h2 for more when it wants more. Returns the
/// bytes of DATA it handed over.
fn transmit(
    endpoint: &mut ClientEndpoint,
    call: CallId,
    stream: &mut Stream,
    cx: &mut Context<'_>,
    now: Instant,
) -> usize {
    let Stream::Open { send, send_now, .. } = stream else {
        return 0;
    };
    let mut bytes = 0;
    loop {
        let capacity =
            capacity::granted(send, endpoint.send_wanted(call)).max(std::mem::take(send_now));
        let mut room = capacity;
        while let Some(transmit) = endpoint.poll_transmit(call, room, now) {
            match transmit {
                ClientTransmit::Data {
                    data,
                    end_of_stream,
                } => {
                    room = room.saturating_sub(data.len());
                    bytes += data.len();
                    let _ = send.send_data(data, end_of_stream);
                }
                ClientTransmit::Reset(code) => send.send_reset(Reason::from(code)),
            }
        }
        if endpoint.send_wanted(call) == 0 || !endpoint.has_call(call) || bytes >= BYTES_PER_POLL {
            return bytes;
        }
        // More to send than h2 granted: ask to be woken when it grants more.
        if !capacity::more_granted(send, cx) {
            return bytes;
        }
    }
}
