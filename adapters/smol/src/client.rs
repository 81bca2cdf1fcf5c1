//! The client half: drives the core's `ClientEndpoint` with sockets, h2 and
//! timers.
//!
//! This module owns the tasks that carry out what the endpoint decides: a
//! connect task per connection (TCP through the [`Connector`], then the
//! HTTP/2 handshake), a driver task per connection (h2's connection future
//! and keepalive pings), a task per stream (request data under h2 flow
//! control, and the response), and one timer task. They share the endpoint
//! behind a mutex; after every input, [`ClientShared::update`] executes the
//! endpoint's outputs and delivers its events to the callers waiting on
//! them. Nothing here decides which connection to use, when a call is over
//! or what it returns: the endpoint does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_io::{Async, Timer};
use bytes::Bytes;
use event_listener::Event;
use futures_lite::future;
use h2::Reason;
use h2::client::SendRequest;
use http::Request;
use raft_grpc_transport::call::ClientTransmit;
use raft_grpc_transport::client::{CallId, ClientEndpoint, ClientEvent, ClientOutput};
use raft_grpc_transport::message::{AppendEntriesResponse, RaftResponse};
use raft_grpc_transport::pool::ConnId;
use raft_grpc_transport::snapshot::SnapshotProgress;
use raft_grpc_transport::{Code, RpcMethod, Status};
use smol::Task;

use crate::config::Config;
use crate::io::H2Io;

/// HTTP/2 REFUSED_STREAM.
const REFUSED_STREAM: u32 = 0x7;

/// A byte stream to a peer, as the connector makes it.
pub trait PeerStream:
    futures_lite::AsyncRead + futures_lite::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Send + Unpin + 'static> PeerStream
    for T
{
}

/// The future a [`Connector`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn PeerStream>>> + Send>>;

/// Opens the byte stream to a peer address; the transport runs HTTP/2 over
/// it. The default connects with TCP and sets TCP_NODELAY; put TLS or a
/// custom socket underneath with your own.
pub type Connector = Arc<dyn Fn(String) -> ConnectFuture + Send + Sync>;

/// The default connector: TCP with TCP_NODELAY.
pub fn tcp_connector() -> Connector {
    Arc::new(|peer: String| {
        Box::pin(async move {
            let stream = Async::<std::net::TcpStream>::connect(resolve_addr(&peer).await?).await?;
            stream.get_ref().set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn PeerStream>)
        }) as ConnectFuture
    })
}

pub(crate) async fn resolve_addr(peer: &str) -> io::Result<std::net::SocketAddr> {
    if let Ok(addr) = peer.parse() {
        return Ok(addr);
    }
    let peer = peer.to_owned();
    smol::unblock(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&peer)?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{peer} resolves to no address"),
                )
            })
    })
    .await
}

/// A pipeline's waiters.
pub(crate) struct PipelineWaiters {
    pub(crate) appended: async_channel::Sender<(u64, Result<AppendEntriesResponse, Status>)>,
    pub(crate) ready: Arc<Event>,
    /// Its stream was opened on a connection.
    pub(crate) opened: bool,
    /// Why it closed, once it did.
    pub(crate) closed: Option<Status>,
}

/// The state the client tasks share.
pub(crate) struct ClientState {
    pub(crate) endpoint: ClientEndpoint,
    conns: HashMap<ConnId, ConnEntry>,
    streams: HashMap<CallId, Arc<Event>>,
    pub(crate) calls: HashMap<CallId, async_channel::Sender<Result<RaftResponse, Status>>>,
    pub(crate) pipelines: HashMap<CallId, PipelineWaiters>,
    pub(crate) snapshots: HashMap<CallId, Arc<Event>>,
    pub(crate) progress: HashMap<CallId, SnapshotProgress>,
}

struct ConnEntry {
    send: Option<SendRequest<Bytes>>,
    /// The connect-and-drive task: dropping it closes the connection.
    _task: Task<()>,
}

/// The client half of a transport.
pub(crate) struct ClientShared {
    state: Mutex<ClientState>,
    timer: Event,
    config: Config,
    connector: Connector,
    _timer_task: Mutex<Option<Task<()>>>,
}

impl ClientShared {
    pub(crate) fn new(config: Config, connector: Connector) -> Arc<ClientShared> {
        let shared = Arc::new(ClientShared {
            state: Mutex::new(ClientState {
                endpoint: ClientEndpoint::new(config.client()),
                conns: HashMap::new(),
                streams: HashMap::new(),
                calls: HashMap::new(),
                pipelines: HashMap::new(),
                snapshots: HashMap::new(),
                progress: HashMap::new(),
            }),
            timer: Event::new(),
            config,
            connector,
            _timer_task: Mutex::new(None),
        });
        let task = smol::spawn(run_timer(Arc::downgrade(&shared)));
        *shared._timer_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        shared
    }

    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one input on the endpoint, then carries out what it asks.
    pub(crate) fn update<R>(self: &Arc<Self>, f: impl FnOnce(&mut ClientState, Instant) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state, Instant::now());
        self.dispatch(&mut state);
        drop(state);
        self.timer.notify(usize::MAX);
        result
    }

    /// Reads the state without an input.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&ClientState) -> R) -> R {
        f(&self.lock())
    }

    fn dispatch(self: &Arc<Self>, state: &mut ClientState) {
        loop {
            let mut progressed = false;
            while let Some(output) = state.endpoint.poll_output() {
                progressed = true;
                match output {
                    ClientOutput::Connect { conn, peer } => {
                        let task = smol::spawn(run_connect(self.clone(), conn, peer));
                        state.conns.insert(
                            conn,
                            ConnEntry {
                                send: None,
                                _task: task,
                            },
                        );
                    }
                    ClientOutput::Close { conn } => {
                        // Dropping the driver task closes the connection.
                        state.conns.remove(&conn);
                    }
                    ClientOutput::OpenStream {
                        conn,
                        call,
                        request,
                    } => {
                        let notify = Arc::new(Event::new());
                        state.streams.insert(call, notify.clone());
                        if let Some(p) = state.pipelines.get_mut(&call) {
                            p.opened = true;
                            p.ready.notify(usize::MAX);
                        }
                        match state.conns.get(&conn).and_then(|c| c.send.clone()) {
                            Some(send) => {
                                smol::spawn(run_stream(
                                    self.clone(),
                                    conn,
                                    call,
                                    send,
                                    request,
                                    notify,
                                ))
                                .detach();
                            }
                            None => {
                                state
                                    .endpoint
                                    .stream_reset(call, REFUSED_STREAM, Instant::now())
                            }
                        }
                    }
                    ClientOutput::Transmit { call } => {
                        if let Some(notify) = state.streams.get(&call) {
                            notify.notify(usize::MAX);
                        }
                    }
                }
            }
            while let Some(event) = state.endpoint.poll_event() {
                progressed = true;
                match event {
                    ClientEvent::Completed { call, result } => {
                        state.progress.remove(&call);
                        if let Some(waiter) = state.calls.remove(&call) {
                            let _ = waiter.try_send(result);
                        }
                        if let Some(wants) = state.snapshots.remove(&call) {
                            wants.notify(usize::MAX);
                        }
                    }
                    ClientEvent::Appended {
                        pipeline,
                        seq,
                        result,
                    } => {
                        if let Some(p) = state.pipelines.get(&pipeline) {
                            let _ = p.appended.try_send((seq, result));
                        }
                    }
                    ClientEvent::PipelineClosed { pipeline, status } => {
                        // The entry stays until the Pipeline handle goes, so
                        // that its opener can read why.
                        if let Some(p) = state.pipelines.get_mut(&pipeline) {
                            p.closed = Some(status);
                            p.appended.close();
                            p.ready.notify(usize::MAX);
                        }
                    }
                    ClientEvent::PipelineReady { pipeline } => {
                        if let Some(p) = state.pipelines.get(&pipeline) {
                            p.ready.notify(usize::MAX);
                        }
                    }
                    ClientEvent::SnapshotWantsData { call } => {
                        if let Some(wants) = state.snapshots.get(&call) {
                            wants.notify(usize::MAX);
                        }
                    }
                    ClientEvent::SnapshotProgress { call, progress } => {
                        state.progress.insert(call, progress);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        state.streams.retain(|call, notify| {
            let alive = state.endpoint.has_call(*call);
            if !alive {
                notify.notify(usize::MAX);
            }
            alive
        });
    }
}

/// Calls `handle_timeout` whenever the endpoint's next deadline passes.
async fn run_timer(shared: std::sync::Weak<ClientShared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let listener = strong.timer.listen();
        let deadline = strong.read(|s| s.endpoint.poll_timeout());
        drop(strong);
        let fired = match deadline {
            Some(deadline) => {
                future::or(
                    async {
                        Timer::at(deadline).await;
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

/// Opens a connection, then drives it until it ends.
async fn run_connect(shared: Arc<ClientShared>, conn: ConnId, peer: String) {
    let config = &shared.config;
    let deadline = Instant::now() + config.connect_timeout;
    let connect = async {
        let io = (shared.connector)(peer.clone()).await?;
        config
            .h2_client()
            .handshake::<_, Bytes>(H2Io(io))
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    };
    let failed = |e: io::Error| {
        let status = Status::new(Code::Unavailable, format!("connecting to {peer}: {e}"));
        shared.update(|s, now| s.endpoint.connect_failed(conn, status, now));
    };
    let (send, mut connection) = match future::or(connect, expire(deadline)).await {
        Ok(pair) => pair,
        Err(e) => return failed(e),
    };
    // h2's handshake ends once our preface is written. One PING round trip
    // proves the peer speaks HTTP/2 (its SETTINGS come first, so the stream
    // limit read next is the peer's).
    let mut ping_pong = connection.ping_pong();
    let proven = async {
        match &mut ping_pong {
            Some(ping_pong) => ping_pong
                .ping(h2::Ping::opaque())
                .await
                .map(drop)
                .map_err(|e| io::Error::other(e.to_string())),
            None => Ok(()),
        }
    };
    let ended = async {
        let result = (&mut connection).await;
        Err(io::Error::other(match result {
            Ok(()) => "the peer closed the connection".to_owned(),
            Err(e) => e.to_string(),
        }))
    };
    if let Err(e) = future::or(proven, future::or(ended, expire(deadline))).await {
        return failed(e);
    }
    let max_streams = u32::try_from(send.current_max_send_streams()).ok();
    shared.update(|s, now| {
        if let Some(entry) = s.conns.get_mut(&conn) {
            entry.send = Some(send);
            s.endpoint.connected(conn, max_streams, now);
        }
    });
    let drive = async {
        match (&mut connection).await {
            Ok(()) => Status::new(Code::Unavailable, format!("connection to {peer} closed")),
            Err(e) => Status::new(Code::Unavailable, format!("connection to {peer} lost: {e}")),
        }
    };
    let busy = || shared.read(|s| s.endpoint.pool().open_streams(conn) > 0);
    let ping = keepalive_loop(
        ping_pong,
        config.keepalive_interval,
        config.keepalive_timeout,
        &peer,
        busy,
    );
    let status = future::or(drive, ping).await;
    shared.update(|s, now| {
        s.conns.remove(&conn);
        s.endpoint.connection_lost(conn, status, now);
    });
}

/// Fails with "connect timed out" at `deadline`.
async fn expire<T>(deadline: Instant) -> io::Result<T> {
    Timer::at(deadline).await;
    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
}

/// Pings the peer every `interval` while `busy` (calls in flight);
/// returns when a pong is late.
async fn keepalive_loop(
    ping_pong: Option<h2::PingPong>,
    interval: Option<std::time::Duration>,
    timeout: std::time::Duration,
    peer: &str,
    busy: impl Fn() -> bool,
) -> Status {
    let (Some(mut ping_pong), Some(interval)) = (ping_pong, interval) else {
        return future::pending().await;
    };
    loop {
        Timer::after(interval).await;
        if !busy() {
            continue;
        }
        let pong = async { ping_pong.ping(h2::Ping::opaque()).await.is_ok() };
        let late = async {
            Timer::after(timeout).await;
            false
        };
        if !future::or(pong, late).await {
            return Status::new(Code::Unavailable, format!("keepalive to {peer} timed out"));
        }
    }
}

/// What the stream's h2 error means for the call.
fn report_h2_error(shared: &Arc<ClientShared>, conn: ConnId, call: CallId, error: &h2::Error) {
    shared.update(|s, now| {
        if error.is_go_away() {
            s.endpoint.goaway(conn, now);
            s.endpoint.stream_reset(call, REFUSED_STREAM, now);
        } else if let Some(reason) = error.reason() {
            s.endpoint.stream_reset(call, reason.into(), now);
        } else {
            let status = Status::new(Code::Unavailable, format!("connection lost: {error}"));
            s.endpoint.connection_lost(conn, status, now);
        }
    });
}

/// Runs one call's stream: the request under flow control, and the
/// response.
async fn run_stream(
    shared: Arc<ClientShared>,
    conn: ConnId,
    call: CallId,
    send_request: SendRequest<Bytes>,
    request: Request<()>,
    notify: Arc<Event>,
) {
    // Only a pipeline sends many small messages in a row; a snapshot's
    // data goes out as it is.
    let path = request.uri().path();
    let joins_pieces = path == RpcMethod::AppendEntriesPipeline.path();
    // A unary request is sent whole at once; a stream's data goes at the
    // pace h2 grants.
    let eager = !joins_pieces && path != RpcMethod::InstallSnapshot.path();
    let opened = async { send_request.ready().await?.send_request(request, false) }.await;
    let (response, send) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            if e.is_go_away() || e.reason().is_none() {
                shared.update(|s, now| {
                    s.endpoint.goaway(conn, now);
                    s.endpoint.stream_reset(call, REFUSED_STREAM, now);
                });
            } else {
                report_h2_error(&shared, conn, call, &e);
            }
            return;
        }
    };
    let sending = send_loop(&shared, call, send, &notify, joins_pieces, eager);
    let receiving = async {
        receive(&shared, conn, call, response).await;
        notify.notify(usize::MAX);
    };
    future::zip(sending, receiving).await;
}

/// What a new stream hands h2 before h2 has granted it capacity: HTTP/2's
/// default initial stream window, so a small request leaves in one write.
const EAGER_FIRST_SEND: usize = 65_535;

async fn send_loop(
    shared: &Arc<ClientShared>,
    call: CallId,
    mut send: h2::SendStream<Bytes>,
    notify: &Event,
    joins_pieces: bool,
    eager: bool,
) {
    // h2 says `None` once the stream can send no more (the peer closed or
    // reset it): from then on, only the listener or a reset can wake us.
    let mut capacity_may_grow = true;
    let mut first = eager;
    loop {
        let listener = notify.listen();
        let wanted = shared.read(|s| s.endpoint.send_wanted(call));
        if wanted > 0 {
            send.reserve_capacity(wanted);
        }
        let mut capacity = send.capacity();
        if std::mem::take(&mut first) {
            // A new unary stream gets no capacity until h2's connection task has
            // opened it, so waiting for capacity would put the request's
            // HEADERS and its first DATA in separate writes, and wake the
            // peer twice. Up to HTTP/2's initial window is handed to h2 at
            // once instead: h2 buffers it and sends it with the HEADERS,
            // still within the peer's flow-control window.
            capacity = capacity.max(wanted.min(EAGER_FIRST_SEND));
        }
        let mut transmits = Vec::new();
        let alive = shared.update(|s, now| {
            while let Some(t) =
                s.endpoint
                    .poll_transmit(call, capacity.saturating_sub(sent_len(&transmits)), now)
            {
                transmits.push(t);
            }
            s.endpoint.has_call(call)
        });
        let transmits = if joins_pieces {
            coalesce(transmits)
        } else {
            transmits
        };
        for transmit in transmits {
            match transmit {
                ClientTransmit::Data {
                    data,
                    end_of_stream,
                } => {
                    if send.send_data(data, end_of_stream).is_err() || end_of_stream {
                        return;
                    }
                }
                ClientTransmit::Reset(code) => {
                    send.send_reset(Reason::from(code));
                    return;
                }
            }
        }
        if !alive {
            return;
        }
        let more = shared.read(|s| s.endpoint.send_wanted(call));
        if more > 0 && capacity_may_grow {
            // Wait for capacity, or for something else to do.
            let capacity = future::poll_fn(|cx| send.poll_capacity(cx));
            let woken = async {
                listener.await;
                Some(Ok(usize::MAX))
            };
            match future::or(capacity, woken).await {
                Some(Ok(0)) | None => capacity_may_grow = false,
                Some(Ok(_)) => {}
                Some(Err(_)) => return,
            }
        } else {
            // Nothing to send, or no capacity to come (the peer closed its
            // side): wait to be told, or for the peer to reset the stream.
            let reset = async {
                let _ = future::poll_fn(|cx| send.poll_reset(cx)).await;
                true
            };
            let woken = async {
                listener.await;
                false
            };
            if future::or(reset, woken).await && !shared.read(|s| s.endpoint.has_call(call)) {
                return;
            }
        }
        // Let the response side of this task run.
        future::yield_now().await;
    }
}

/// Pieces at most this long are copied together into one DATA frame.
const COALESCE_PIECE_MAX: usize = 16 * 1024;
/// The most bytes one coalesced DATA frame carries.
const COALESCE_MAX: usize = 64 * 1024;

/// Joins runs of small data pieces (pipelined appends) into one buffer
/// each; used on pipeline streams only. h2 writes every DATA frame over 256 bytes with a
/// write of its own, so 64 pipelined 1 KiB appends would otherwise cost 64
/// system calls and as many wake-ups of the peer. Large pieces (zero-copy
/// payloads) pass through as they are.
fn coalesce(transmits: Vec<ClientTransmit>) -> Vec<ClientTransmit> {
    let small = |t: &ClientTransmit| matches!(t, ClientTransmit::Data { data, end_of_stream: false } if data.len() <= COALESCE_PIECE_MAX);
    if transmits.iter().filter(|t| small(t)).count() < 2 {
        return transmits;
    }
    let mut out = Vec::with_capacity(transmits.len());
    let mut run = bytes::BytesMut::new();
    let flush = |run: &mut bytes::BytesMut, out: &mut Vec<ClientTransmit>| {
        if !run.is_empty() {
            out.push(ClientTransmit::Data {
                data: run.split().freeze(),
                end_of_stream: false,
            });
        }
    };
    for t in transmits {
        match t {
            ClientTransmit::Data { data, .. } if small(&t) => {
                if run.len() + data.len() > COALESCE_MAX {
                    flush(&mut run, &mut out);
                }
                run.extend_from_slice(&data);
            }
            other => {
                flush(&mut run, &mut out);
                out.push(other);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

fn sent_len(transmits: &[ClientTransmit]) -> usize {
    transmits
        .iter()
        .map(|t| match t {
            ClientTransmit::Data { data, .. } => data.len(),
            ClientTransmit::Reset(_) => 0,
        })
        .sum()
}

async fn receive(
    shared: &Arc<ClientShared>,
    conn: ConnId,
    call: CallId,
    response: h2::client::ResponseFuture,
) {
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return report_h2_error(shared, conn, call, &e),
    };
    let (parts, mut body) = response.into_parts();
    let end = body.is_end_stream();
    shared.update(|s, now| s.endpoint.response_head(call, &parts, end, now));
    if end {
        return;
    }
    loop {
        match body.data().await {
            Some(Ok(data)) => {
                let n = data.len();
                shared.update(|s, now| s.endpoint.response_data(call, data, now));
                let _ = body.flow_control().release_capacity(n);
            }
            Some(Err(e)) => return report_h2_error(shared, conn, call, &e),
            None => break,
        }
    }
    match body.trailers().await {
        Ok(Some(trailers)) => {
            shared.update(|s, now| s.endpoint.response_trailers(call, &trailers, now))
        }
        Ok(None) => shared.update(|s, now| s.endpoint.response_end(call, now)),
        Err(e) => report_h2_error(shared, conn, call, &e),
    }
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;

    fn data(len: usize, byte: u8, end_of_stream: bool) -> ClientTransmit {
        ClientTransmit::Data {
            data: Bytes::from(vec![byte; len]),
            end_of_stream,
        }
    }

    fn concat(transmits: &[ClientTransmit]) -> Vec<u8> {
        let mut all = Vec::new();
        for t in transmits {
            if let ClientTransmit::Data { data, .. } = t {
                all.extend_from_slice(data);
            }
        }
        all
    }

    #[test]
    fn small_pieces_join_large_ones_and_ends_pass_through_in_order() {
        let big = Bytes::from(vec![9u8; COALESCE_PIECE_MAX + 1]);
        let input = vec![
            data(1000, 1, false),
            data(1000, 2, false),
            ClientTransmit::Data {
                data: big.clone(),
                end_of_stream: false,
            },
            data(10, 3, false),
            data(10, 4, true),
        ];
        let expected = concat(&input);
        let out = coalesce(input);
        assert_eq!(concat(&out), expected, "bytes and their order are kept");
        assert_eq!(out.len(), 4, "the two leading pieces are joined");
        // The large piece is passed on as it was: no copy.
        match &out[1] {
            ClientTransmit::Data { data, .. } => assert_eq!(data.as_ptr(), big.as_ptr()),
            ClientTransmit::Reset(_) => panic!("a reset"),
        }
        assert!(matches!(
            out[3],
            ClientTransmit::Data {
                end_of_stream: true,
                ..
            }
        ));
    }

    #[test]
    fn a_joined_frame_stays_within_the_bound() {
        let input: Vec<_> = (0..200).map(|i| data(1000, i as u8, false)).collect();
        let expected = concat(&input);
        let out = coalesce(input);
        assert_eq!(concat(&out), expected);
        for t in &out {
            if let ClientTransmit::Data { data, .. } = t {
                assert!(data.len() <= COALESCE_MAX);
            }
        }
        assert_eq!(out.len(), 4, "200 KB in frames of at most 64 KiB");
    }
}
