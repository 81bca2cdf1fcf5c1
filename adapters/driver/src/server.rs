//! The server half of the driver: the core's `ServerEndpoint` over h2.
//!
//! This module owns the state the server side shares ([`ServerShared`]:
//! the endpoint behind one lock, each connection's inbox and waker, the
//! heartbeat and pipeline handlers, the events readers wait on), the
//! dispatch of the endpoint's outputs and events after every input, the
//! accept loop, one task per connection (the HTTP/2 handshake, then one
//! future that polls h2's accept loop and every stream on it), and the
//! timer task. Where a request goes, when a stream stops reading, how
//! answers are ordered and what a closing node answers are the endpoint's
//! decisions, not this module's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use futures_lite::future;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use raft_grpc_transport::call::ServerTransmit;
use raft_grpc_transport::http2::{CANCEL, Http2Settings};
use raft_grpc_transport::message::{AppendEntriesRequest, RaftResponse};
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::server::{
    Authorizer, PeerInfo, RequestId, ServerConfig, ServerEndpoint, ServerEvent, ServerOutput,
    StreamId,
};
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_api::HeartbeatHandler;

use crate::capacity;
use crate::client::{BYTES_PER_POLL, ROUNDS_PER_POLL, Turn};
use crate::h2_error::Failure;
use crate::hosted::HostedState;
use crate::incoming::IncomingPipeline;
use crate::observe::ServerMeters;
use crate::runtime::{BoxIo, Runtime};

/// Takes the AppendEntries pipeline streams peers open (see
/// [`GrpcTransport::set_pipeline_handler`](crate::GrpcTransport::set_pipeline_handler)).
/// It must not block.
pub type PipelineHandler = Arc<dyn Fn(IncomingPipeline) + Send + Sync>;

/// What a connection's task is asked to do.
enum Command {
    Release { stream: StreamId, bytes: usize },
    GoAway,
    Refuse(u32),
    Close,
    Ping,
    SetWindows { stream: u32, connection: u32 },
}

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

/// The state the server tasks share.
pub(crate) struct ServerState {
    pub(crate) endpoint: ServerEndpoint,
    conns: HashMap<ConnId, ConnSlot>,
    heartbeat: Option<HeartbeatHandler>,
    pipeline_handler: Option<PipelineHandler>,
    /// Readers of incoming snapshots, by request.
    pub(crate) snapshot_events: HashMap<RequestId, Arc<Event>>,
    /// Takers of pipelines that go apart, by stream.
    pub(crate) pipeline_events: HashMap<StreamId, Arc<Event>>,
    timer_armed: Option<Instant>,
    /// Streams another HTTP/2 stack accepted (see `hosted`).
    pub(crate) hosted: HostedState,
    /// The metric handles (see `observe`).
    pub(crate) meters: ServerMeters,
}

/// Work for after the lock: the application's handlers.
#[derive(Default)]
pub(crate) struct Deferred {
    heartbeats: Vec<(
        HeartbeatHandler,
        RequestId,
        AppendEntriesRequest,
        Arc<PeerInfo>,
    )>,
    pipelines: Vec<(PipelineHandler, StreamId)>,
    rpc_queued: bool,
}

/// The server half of a transport.
pub(crate) struct ServerShared {
    http2: Http2Settings,
    /// TLS under every accepted connection (unset: plain HTTP/2); set
    /// once, when the transport is built.
    #[cfg(feature = "tls")]
    pub(crate) tls: std::sync::OnceLock<crate::tls::TlsServer>,
    state: Mutex<ServerState>,
    timer: Event,
    /// Notified when requests enter the consumer queue, and on close.
    pub(crate) consumer_ready: Event,
    /// Notified when the transport closes.
    pub(crate) shutdown: Event,
    closed: AtomicBool,
    /// Accept loops still running, and who waits for them to stop.
    listening: AtomicUsize,
    stopped: Event,
}

impl ServerShared {
    pub(crate) fn new<R: Runtime>(
        runtime: &R,
        config: ServerConfig,
        http2: Http2Settings,
    ) -> Arc<Self> {
        let shared = Arc::new(ServerShared {
            http2,
            #[cfg(feature = "tls")]
            tls: std::sync::OnceLock::new(),
            state: Mutex::new(ServerState {
                endpoint: {
                    let mut endpoint = ServerEndpoint::new(config);
                    endpoint.set_rpc_records(ServerMeters::RECORDS);
                    endpoint
                },
                conns: HashMap::new(),
                heartbeat: None,
                pipeline_handler: None,
                snapshot_events: HashMap::new(),
                pipeline_events: HashMap::new(),
                timer_armed: None,
                hosted: HostedState::default(),
                meters: ServerMeters::new(),
            }),
            timer: Event::new(),
            consumer_ready: Event::new(),
            shutdown: Event::new(),
            closed: AtomicBool::new(false),
            listening: AtomicUsize::new(0),
            stopped: Event::new(),
        });
        runtime.spawn(run_timer(runtime.clone(), Arc::downgrade(&shared)));
        shared
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs one input on the endpoint, then carries out what it asks.
    pub(crate) fn update<T>(self: &Arc<Self>, f: impl FnOnce(&mut ServerState, Instant) -> T) -> T {
        self.update_from(None, f)
    }

    /// [`update`](Self::update) from the task of connection `own`, whose `f`
    /// sends what that connection's streams have after applying its inputs:
    /// the wakes of `own` that the outputs of `f` raise are already served
    /// and are cleared (answers of heartbeat handlers run after that wake it
    /// again); its commands stay in its inbox.
    fn update_from<T>(
        self: &Arc<Self>,
        own: Option<ConnId>,
        f: impl FnOnce(&mut ServerState, Instant) -> T,
    ) -> T {
        let mut state = self.lock();
        let result = f(&mut state, Instant::now());
        let deferred = self.dispatch(state, own);
        self.run_deferred(deferred);
        result
    }

    /// Dispatches, releases the lock, and wakes who must be woken; clears
    /// the wake of `served` (see [`update_from`](Self::update_from)).
    fn dispatch(&self, state: MutexGuard<'_, ServerState>, served: Option<ConnId>) -> Deferred {
        self.dispatch_then(state, served, |_| ()).0
    }

    /// [`dispatch`](Self::dispatch), then `after` under the same lock (what
    /// a hosted stream reads of the dispatch's outcome).
    pub(crate) fn dispatch_then<T>(
        &self,
        mut state: MutexGuard<'_, ServerState>,
        served: Option<ConnId>,
        after: impl FnOnce(&mut ServerState) -> T,
    ) -> (Deferred, T) {
        let deferred = state.dispatch();
        if let Some(slot) = served.and_then(|conn| state.conns.get_mut(&conn)) {
            slot.woken = false;
        }
        let result = after(&mut state);
        let rearm = state.timer_needs_rearm();
        drop(state);
        if rearm {
            self.timer.notify(usize::MAX);
        }
        if deferred.rpc_queued {
            self.consumer_ready.notify(usize::MAX);
        }
        (deferred, result)
    }

    /// Runs the application's handlers, out of the lock.
    pub(crate) fn run_deferred(self: &Arc<Self>, mut deferred: Deferred) {
        loop {
            for (handler, stream) in std::mem::take(&mut deferred.pipelines) {
                handler(IncomingPipeline::new(self.clone(), stream));
            }
            let Some((handler, id, request, peer)) = deferred.heartbeats.pop() else {
                return;
            };
            let trace = crate::observe::IncomingCall::delivered(
                peer.remote_addr,
                raft_grpc_transport::head::RpcMethod::AppendEntries,
                || crate::observe::Incoming::Heartbeat,
            );
            let result = handler(&request, &peer).map(RaftResponse::AppendEntries);
            trace.answered(result.as_ref().err());
            let mut state = self.lock();
            let _ = state.endpoint.respond(id, result, Instant::now());
            let more = self.dispatch(state, None);
            deferred.heartbeats.extend(more.heartbeats);
            deferred.pipelines.extend(more.pipelines);
        }
    }

    /// Sets the authorizer (`None`: every call may go on).
    pub(crate) fn set_authorizer(self: &Arc<Self>, authorizer: Option<Authorizer>) {
        self.update(|s, _| s.endpoint.set_authorizer(authorizer));
    }

    /// Sets the heartbeat handler (`None`: heartbeats go to the consumer).
    pub(crate) fn set_heartbeat_handler(self: &Arc<Self>, handler: Option<HeartbeatHandler>) {
        self.update(|s, _| {
            s.endpoint.set_heartbeat_fast_path(handler.is_some());
            s.heartbeat = handler;
        });
    }

    /// Sets the pipeline handler (`None`: appends go to the consumer).
    pub(crate) fn set_pipeline_handler(self: &Arc<Self>, handler: Option<PipelineHandler>) {
        self.update(|s, _| {
            s.endpoint.set_pipelines_apart(handler.is_some());
            s.pipeline_handler = handler;
        });
    }

    /// Closes the endpoint: every request it holds is answered, readers
    /// fail, connections get GOAWAY, the accept loops stop.
    pub(crate) fn close(self: &Arc<Self>) {
        self.closed.store(true, Ordering::SeqCst);
        self.update(|s, now| s.endpoint.close(now));
        self.shutdown.notify(usize::MAX);
        self.consumer_ready.notify(usize::MAX);
    }

    /// Waits until every accept loop has stopped and dropped its listener
    /// (so that its port can be bound again).
    pub(crate) async fn listeners_stopped(&self) {
        loop {
            let listener = self.stopped.listen();
            if self.listening.load(Ordering::SeqCst) == 0 {
                return;
            }
            listener.await;
        }
    }
}

impl ServerState {
    fn dispatch(&mut self) -> Deferred {
        let mut deferred = Deferred::default();
        loop {
            let mut progressed = false;
            while let Some(output) = self.endpoint.poll_output() {
                progressed = true;
                if self.hosted.owns(&output) {
                    let mut lost = Vec::new();
                    self.hosted.output(output, &mut lost);
                    for conn in lost {
                        self.endpoint.handle_connection_lost(
                            conn,
                            "retired by the transport",
                            Instant::now(),
                        );
                    }
                    continue;
                }
                match output {
                    ServerOutput::Transmit { conn, .. } => self.wake(conn),
                    ServerOutput::ReleaseCapacity {
                        conn,
                        stream,
                        bytes,
                    } => self.command(conn, Command::Release { stream, bytes }),
                    ServerOutput::GoAway { conn } => self.command(conn, Command::GoAway),
                    ServerOutput::Refuse { conn, error_code } => {
                        self.command(conn, Command::Refuse(error_code))
                    }
                    ServerOutput::Close { conn } => self.command(conn, Command::Close),
                    ServerOutput::Ping { conn } => self.command(conn, Command::Ping),
                    ServerOutput::SetWindows {
                        conn,
                        stream_window,
                        connection_window,
                    } => self.command(
                        conn,
                        Command::SetWindows {
                            stream: stream_window,
                            connection: connection_window,
                        },
                    ),
                }
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.deliver(event, &mut deferred);
            }
            if ServerMeters::RECORDS {
                while let Some(record) = self.endpoint.poll_rpc_record() {
                    self.meters.record(record);
                }
            }
            if !progressed {
                return deferred;
            }
        }
    }

    fn deliver(&mut self, event: ServerEvent, deferred: &mut Deferred) {
        match event {
            // The fast path is on only while a handler is set (both change
            // under this lock, and events never outlive an update): the
            // `None` arms cannot happen, and fail safe if they did.
            ServerEvent::Heartbeat { id, request, peer } => match &self.heartbeat {
                Some(handler) => deferred
                    .heartbeats
                    .push((handler.clone(), id, request, peer)),
                None => {
                    let status = Status::new(Code::Unavailable, "no heartbeat handler");
                    let _ = self.endpoint.respond(id, Err(status), Instant::now());
                }
            },
            ServerEvent::RpcQueued => deferred.rpc_queued = true,
            ServerEvent::PipelineOpened { pipeline } => {
                self.pipeline_events
                    .insert(pipeline, Arc::new(Event::new()));
                match &self.pipeline_handler {
                    Some(handler) => deferred.pipelines.push((handler.clone(), pipeline)),
                    None => self.endpoint.drop_pipeline(pipeline, Instant::now()),
                }
            }
            ServerEvent::PipelineReady { pipeline } => {
                if let Some(event) = self.pipeline_events.get(&pipeline) {
                    event.notify(usize::MAX);
                }
            }
            ServerEvent::SnapshotReady { id } => {
                if let Some(event) = self.snapshot_events.get(&id) {
                    event.notify(usize::MAX);
                }
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
async fn run_timer<R: Runtime>(runtime: R, shared: Weak<ServerShared>) {
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
        let closed = strong.is_closed();
        drop(strong);
        if closed && deadline.is_none() {
            return;
        }
        let fired = match deadline {
            Some(deadline) => {
                let sleep = runtime.sleep_until(deadline);
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

fn h2_server(settings: &Http2Settings) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_send_buffer_size(settings.max_send_buffer)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size);
    builder
}

/// Accepts connections until the transport closes.
pub(crate) fn serve_listener<R: Runtime>(
    runtime: R,
    shared: Arc<ServerShared>,
    listener: R::Listener,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    shared.listening.fetch_add(1, Ordering::SeqCst);
    async move {
        // Counted down however the loop ends (a panicking backend too),
        // so that close never waits for a loop that is gone.
        let _stopped = Stopped(shared.clone());
        accept_loop(&runtime, &shared, listener).await;
    }
}

/// Counts an accept loop out when dropped.
struct Stopped(Arc<ServerShared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.listening.fetch_sub(1, Ordering::SeqCst);
        self.0.stopped.notify(usize::MAX);
    }
}

/// Accepts until the transport closes; drops the listener when it ends.
async fn accept_loop<R: Runtime>(runtime: &R, shared: &Arc<ServerShared>, listener: R::Listener) {
    loop {
        let shutdown = shared.shutdown.listen();
        if shared.is_closed() {
            return;
        }
        let accepted = future::or(async { Some(runtime.accept(&listener).await) }, async {
            shutdown.await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((io, remote))) => {
                crate::observe::accepted(Some(remote));
                runtime.spawn(serve_connection(
                    runtime.clone(),
                    shared.clone(),
                    R::into_h2(io),
                    Some(remote),
                ))
            }
            // Out of file descriptors, say: wait a little, keep serving.
            Some(Err(error)) => {
                crate::observe::accept_failed(&error);
                runtime
                    .sleep_until(Instant::now() + Duration::from_millis(10))
                    .await
            }
        }
    }
}

/// Serves HTTP/2 on one established byte stream, until it closes.
pub(crate) async fn serve_connection<R: Runtime>(
    runtime: R,
    shared: Arc<ServerShared>,
    io: BoxIo,
    remote: Option<std::net::SocketAddr>,
) {
    let (conn, _served) = shared.update(|s, now| {
        let conn = s
            .endpoint
            .handle_peer_connection(PeerInfo::new(remote), now);
        s.conns.insert(conn, ConnSlot::default());
        (conn, s.meters.connection_served())
    });
    let handshake = async {
        #[cfg(feature = "tls")]
        let io = match shared.tls.get() {
            Some(tls) => match tls.accept(io).await {
                Ok((io, chain)) => {
                    if !chain.is_empty() {
                        let peer = PeerInfo::new(remote).with_certificates(chain);
                        shared.lock().endpoint.handle_peer_identity(conn, peer);
                    }
                    io
                }
                Err(e) => return Err(format!("TLS handshake failed: {e}")),
            },
            None => io,
        };
        h2_server(&shared.http2)
            .handshake::<BoxIo, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))
    };
    let abandoned = std::future::poll_fn(|cx| poll_closed(&shared, conn, cx));
    let handshake = future::or(async { Some(handshake.await) }, async {
        abandoned.await;
        None
    })
    .await;
    let connection = match handshake {
        // The endpoint gave up on it (too slow); it already forgot it.
        None => {
            shared.lock().conns.remove(&conn);
            return;
        }
        // Not TLS or not HTTP/2: drop this connection only.
        Some(Err(detail)) => {
            crate::observe::handshake_failed(remote, &detail);
            shared.update(|s, now| {
                s.conns.remove(&conn);
                s.endpoint.handle_connection_lost(conn, &detail, now);
            });
            return;
        }
        Some(Ok(connection)) => connection,
    };
    shared.update(|s, now| s.endpoint.handle_handshake_done(conn, now));
    let mut driver = Connection {
        conn,
        inputs: Vec::new(),
        ping_pong: None,
        ping_in_flight: false,
        connection,
        streams: BTreeMap::new(),
    };
    driver.ping_pong = driver.connection.ping_pong();
    let lost = loop {
        match std::future::poll_fn(|cx| driver.poll(cx, &shared)).await {
            Turn::Over(lost) => break lost,
            Turn::Yield => runtime.yield_now().await,
        }
    };
    shared.update(|s, now| {
        s.conns.remove(&conn);
        s.endpoint.handle_connection_lost(conn, &lost, now);
    });
}

/// Ready once the endpoint asked for the connection to close.
fn poll_closed(shared: &ServerShared, conn: ConnId, cx: &mut Context<'_>) -> Poll<()> {
    let mut state = shared.lock();
    match state.conns.get_mut(&conn) {
        Some(slot) if !slot.inbox.iter().any(|c| matches!(c, Command::Close)) => {
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        }
        _ => Poll::Ready(()),
    }
}

/// One incoming stream.
struct Stream {
    body: RecvStream,
    /// The request body ended (or failed).
    received: bool,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
}

/// What the streams of a connection report, applied under one lock.
// Made and applied in the same poll: no reason to box the new stream.
#[allow(clippy::large_enum_variant)]
enum Input {
    Head(http::request::Parts, RecvStream, SendResponse<Bytes>),
    Data(StreamId, Bytes),
    End(StreamId),
    Reset(StreamId, u32),
    PingAck,
}

/// An established connection: h2's accept loop (which also drives its
/// I/O) and its streams, polled by one task.
struct Connection {
    conn: ConnId,
    /// What the streams reported, not yet applied.
    inputs: Vec<Input>,
    ping_pong: Option<h2::PingPong>,
    ping_in_flight: bool,
    connection: h2::server::Connection<BoxIo, Bytes>,
    streams: BTreeMap<StreamId, Stream>,
}

impl Connection {
    /// Takes the connection's commands; with `register`, first records the
    /// task's waker, that it is polling, and that it has seen every wake so
    /// far (without, a wake stays for the round's end to see). `None` when
    /// the connection is forgotten.
    fn commands(
        &self,
        shared: &ServerShared,
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
    fn execute(&mut self, commands: VecDeque<Command>) -> Option<String> {
        for command in commands {
            match command {
                Command::Release { stream, bytes } => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        let _ = s.body.flow_control().release_capacity(bytes);
                    }
                }
                Command::GoAway => self.connection.graceful_shutdown(),
                Command::Refuse(code) => self.connection.abrupt_shutdown(code.into()),
                Command::Close => return Some("closed by the transport".to_owned()),
                Command::Ping => {
                    if let Some(ping_pong) = &mut self.ping_pong {
                        if ping_pong.send_ping(h2::Ping::opaque()).is_ok() {
                            self.ping_in_flight = true;
                        }
                    }
                }
                Command::SetWindows { stream, connection } => {
                    self.connection.set_target_window_size(connection);
                    let _ = self.connection.set_initial_window_size(stream);
                }
            }
        }
        None
    }

    /// Drives the connection; `Over(detail)` once it is over. Its rounds
    /// are the client connection's (see `client::Connection::poll`): apply
    /// and send under one lock, carry out what that asked of this
    /// connection, then one I/O poll flushes and reads; another round only
    /// when something arrived or another thread woke it.
    fn poll(&mut self, cx: &mut Context<'_>, shared: &Arc<ServerShared>) -> Poll<Turn<String>> {
        let mut moved = 0;
        for _ in 0..ROUNDS_PER_POLL {
            if moved >= BYTES_PER_POLL {
                break;
            }
            let Some(commands) = self.commands(shared, cx, true) else {
                return Poll::Ready(Turn::Over("closed".to_owned()));
            };
            if let Some(over) = self.execute(commands) {
                return Poll::Ready(Turn::Over(over));
            }
            let inputs = std::mem::take(&mut self.inputs);
            let conn = self.conn;
            let streams = &mut self.streams;
            shared.update_from(Some(conn), |s, now| {
                for input in inputs {
                    match input {
                        Input::Head(parts, body, respond) => {
                            let id = s.endpoint.handle_request_head(conn, &parts, now);
                            let received = body.is_end_stream();
                            streams.insert(
                                id,
                                Stream {
                                    body,
                                    received,
                                    respond,
                                    send: None,
                                },
                            );
                            if received {
                                s.endpoint.handle_end_of_stream(id, now);
                            }
                        }
                        Input::Data(id, data) => s.endpoint.handle_data(id, data, now),
                        Input::End(id) => s.endpoint.handle_end_of_stream(id, now),
                        Input::Reset(id, code) => s.endpoint.handle_reset(id, code, now),
                        Input::PingAck => s.endpoint.handle_ping_ack(conn, now),
                    }
                }
                streams.retain(|id, stream| {
                    transmit(&mut s.endpoint, *id, stream, cx, now);
                    !s.endpoint.stream_finished(*id)
                });
            });
            let Some(own) = self.commands(shared, cx, false) else {
                return Poll::Ready(Turn::Over("closed".to_owned()));
            };
            if let Some(over) = self.execute(own) {
                return Poll::Ready(Turn::Over(over));
            }
            let mut arrived = Vec::new();
            if self.ping_in_flight {
                if let Some(ping_pong) = &mut self.ping_pong {
                    if let Poll::Ready(result) = ping_pong.poll_pong(cx) {
                        self.ping_in_flight = false;
                        match result {
                            Ok(_) => arrived.push(Input::PingAck),
                            Err(e) => return Poll::Ready(Turn::Over(e.to_string())),
                        }
                    }
                }
            }
            // New streams, and the connection's I/O.
            loop {
                match self.connection.poll_accept(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        let (parts, body) = request.into_parts();
                        arrived.push(Input::Head(parts, body, respond));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Turn::Over(e.to_string())),
                    Poll::Ready(None) => {
                        return Poll::Ready(Turn::Over("the connection closed".to_owned()));
                    }
                }
            }
            self.receive(cx, &mut arrived, BYTES_PER_POLL.saturating_sub(moved));
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
                return Poll::Ready(Turn::Over("closed".to_owned()));
            };
            if self.inputs.is_empty() && !slot.woken {
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

    /// Reads request data (up to `budget` bytes), and notices resets.
    fn receive(&mut self, cx: &mut Context<'_>, inputs: &mut Vec<Input>, budget: usize) {
        let mut taken = 0;
        for (&id, stream) in &mut self.streams {
            while !stream.received && taken < budget {
                match stream.body.poll_data(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(data))) => {
                        taken += data.len();
                        inputs.push(Input::Data(id, data));
                    }
                    Poll::Ready(None) => {
                        stream.received = true;
                        inputs.push(Input::End(id));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        stream.received = true;
                        let code = match Failure::of(&e) {
                            Failure::Reset(code) => code,
                            Failure::GoAway(_) | Failure::Lost(_) => CANCEL,
                        };
                        inputs.push(Input::Reset(id, code));
                    }
                }
            }
            if stream.received {
                // The request is in: only a reset can still come.
                let reset = match &mut stream.send {
                    Some(send) => send.poll_reset(cx),
                    None => stream.respond.poll_reset(cx),
                };
                if let Poll::Ready(reason) = reset {
                    let code = reason.map_or(CANCEL, u32::from);
                    inputs.push(Input::Reset(id, code));
                }
            }
        }
    }
}

/// Moves what the stream's call wants to send onto h2, within the capacity
/// h2 granted. Returns whether anything happened.
fn transmit(
    endpoint: &mut ServerEndpoint,
    id: StreamId,
    stream: &mut Stream,
    cx: &mut Context<'_>,
    now: Instant,
) -> bool {
    let mut progress = false;
    loop {
        let capacity = match &mut stream.send {
            Some(send) => capacity::granted(send, endpoint.send_wanted(id)),
            None => 0,
        };
        let mut room = capacity;
        let mut opened = false;
        while let Some(transmit) = endpoint.poll_transmit(id, room, now) {
            progress = true;
            let sent = match transmit {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => match stream.respond.send_response(head, end_of_stream) {
                    Ok(send) => {
                        if !end_of_stream {
                            stream.send = Some(send);
                            opened = true;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                ServerTransmit::Data(data) => {
                    room = room.saturating_sub(data.len());
                    match &mut stream.send {
                        Some(send) => send.send_data(data, false),
                        None => Ok(()),
                    }
                }
                ServerTransmit::Trailers(trailers) => match &mut stream.send {
                    Some(send) => send.send_trailers(trailers),
                    None => Ok(()),
                },
            };
            if let Err(e) = sent {
                let code = match Failure::of(&e) {
                    Failure::Reset(code) => code,
                    _ => CANCEL,
                };
                endpoint.handle_reset(id, code, now);
                return true;
            }
            if opened {
                break;
            }
        }
        if opened {
            // The response stream exists now: reserve its capacity.
            continue;
        }
        if endpoint.send_wanted(id) == 0 {
            return progress;
        }
        let Some(send) = &mut stream.send else {
            return progress;
        };
        if !capacity::more_granted(send, cx) {
            return progress;
        }
    }
}
