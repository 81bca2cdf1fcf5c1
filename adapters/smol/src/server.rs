//! The server half: accepts connections and runs one core `ServerCall` per
//! HTTP/2 stream.
//!
//! This module owns the accept loop, the task per connection (the HTTP/2
//! handshake and h2's accept loop, which also drives the connection's
//! I/O), and the task per stream, which moves bytes between h2 and the
//! `ServerCall` and hands requests to the application: heartbeats to the
//! [`HeartbeatHandler`](crate::HeartbeatHandler) when one is set, the
//! appends of a pipeline stream to its own
//! [`IncomingPipeline`](crate::IncomingPipeline) when a
//! [`PipelineHandler`](crate::PipelineHandler) is set, everything else to
//! the [`Consumer`](crate::Consumer) queue. A connection that does
//! not speak HTTP/2 fails its handshake and is dropped; the others go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use async_io::{Async, Timer};
use bytes::Bytes;
use event_listener::Event;
use futures_lite::future;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::Request;
use raft_grpc_transport::call::{ServerCall, ServerEvent, ServerTransmit};
use raft_grpc_transport::heartbeat::is_heartbeat;
use raft_grpc_transport::message::{RaftRequest, RaftResponse};
use raft_grpc_transport::{Code, RpcMethod, Status};

use crate::PipelineHandler;
use crate::client::PeerStream;
use crate::config::Config;
use crate::io::H2Io;
use crate::rpc::{Answer, AnswerOrder, ChannelSnapshot, IncomingPipeline, responder};
use raft_grpc_transport_api::{HeartbeatHandler, Responder, Rpc, SnapshotReader};

/// Snapshot chunks buffered between a stream and its reader.
const SNAPSHOT_BUFFER: usize = 2;

/// What the server tasks share.
pub(crate) struct ServerShared {
    pub(crate) config: Config,
    pub(crate) consumer: async_channel::Sender<Rpc>,
    pub(crate) heartbeat: RwLock<Option<HeartbeatHandler>>,
    pub(crate) pipeline: RwLock<Option<PipelineHandler>>,
    pub(crate) shutdown: Event,
    pub(crate) closed: AtomicBool,
}

impl ServerShared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn heartbeat_handler(&self) -> Option<HeartbeatHandler> {
        self.heartbeat
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn pipeline_handler(&self) -> Option<PipelineHandler> {
        self.pipeline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Accepts TCP connections until the transport closes.
pub(crate) async fn serve_listener(
    shared: Arc<ServerShared>,
    listener: Async<std::net::TcpListener>,
) {
    loop {
        let shutdown = shared.shutdown.listen();
        if shared.is_closed() {
            return;
        }
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, _))) => {
                let _ = stream.get_ref().set_nodelay(true);
                smol::spawn(serve_connection(shared.clone(), stream)).detach();
            }
            // Out of file descriptors, say: wait a little, keep serving.
            Some(Err(_)) => {
                Timer::after(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves HTTP/2 on one established byte stream.
pub(crate) async fn serve_connection(shared: Arc<ServerShared>, io: impl PeerStream) {
    let handshake = shared.config.h2_server().handshake::<_, Bytes>(H2Io(io));
    let timeout = async {
        Timer::after(shared.config.connect_timeout).await;
        None
    };
    let Some(Ok(mut connection)) = future::or(async { Some(handshake.await) }, timeout).await
    else {
        // Not HTTP/2, or too slow: drop this connection only.
        return;
    };
    let mut shutting_down = false;
    loop {
        let shutdown = shared.shutdown.listen();
        if shared.is_closed() && !shutting_down {
            shutting_down = true;
            connection.graceful_shutdown();
        }
        let next = future::or(async { Some(connection.accept().await) }, async {
            shutdown.await;
            None
        })
        .await;
        match next {
            None => continue,
            Some(Some(Ok((request, respond)))) => {
                smol::spawn(serve_stream(shared.clone(), request, respond)).detach();
            }
            Some(Some(Err(_)) | None) => return,
        }
    }
}

enum Wake {
    Shutdown,
    Data(Option<Result<Bytes, h2::Error>>),
    Answer(Answer),
    Reset(Result<h2::Reason, h2::Error>),
    Timer,
    Room,
    Capacity,
}

/// The snapshot channel of a stream.
struct SnapshotFeed {
    tx: async_channel::Sender<Result<Bytes, Status>>,
    room: Arc<Event>,
    failure: Arc<Mutex<Option<Status>>>,
}

/// Runs one incoming call.
async fn serve_stream(
    shared: Arc<ServerShared>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, mut body) = request.into_parts();
    let mut call = match ServerCall::new(&parts, shared.config.server(), Instant::now()) {
        Ok(call) => call,
        Err(rejection) => {
            let _ = respond.send_response(rejection.to_response(), true);
            return;
        }
    };
    // A pipeline stream gets its own queue when a pipeline handler is set;
    // dropping the sender when the stream is over ends its
    // `IncomingPipeline`.
    let pipeline = (call.method() == RpcMethod::AppendEntriesPipeline)
        .then(|| shared.pipeline_handler())
        .flatten()
        .map(|handler| {
            let (tx, rx) = async_channel::bounded(shared.config.consumer_queue.max(1));
            handler(IncomingPipeline::new(rx));
            tx
        });
    let (answer_tx, answer_rx) = async_channel::unbounded::<Answer>();
    let mut order = AnswerOrder::default();
    let mut next_seq = 0u64;
    let mut feed: Option<SnapshotFeed> = None;
    let mut send: Option<SendStream<Bytes>> = None;
    let mut body_done = false;
    let mut shutdown_handled = false;
    loop {
        // Listen before looking, so that room made meanwhile is not missed.
        let room = feed.as_ref().map(|f| f.room.listen());
        // 1. Hand what arrived to the application.
        let mut blocked_on_reader = false;
        while let Some(event) = call.peek_event() {
            if matches!(event, ServerEvent::SnapshotData(_))
                && feed.as_ref().is_some_and(|f| f.tx.is_full())
            {
                blocked_on_reader = true;
                break;
            }
            let Some(event) = call.poll_event() else {
                break;
            };
            match event {
                ServerEvent::SnapshotData(data) => {
                    if let Some(f) = &feed {
                        // A reader that was dropped takes nothing: drain.
                        let _ = f.tx.try_send(Ok(data));
                    }
                }
                ServerEvent::SnapshotEnd => feed = None,
                ServerEvent::Failed(status) => {
                    if let Some(f) = feed.take() {
                        *f.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    }
                }
                ServerEvent::Request(request) => {
                    let responder = responder(next_seq, answer_tx.clone());
                    next_seq += 1;
                    let stream = (&mut respond, &mut send);
                    let queue = pipeline.as_ref();
                    let to = (queue, &mut feed);
                    deliver(&shared, &mut call, stream, request, responder, to).await;
                }
            }
        }
        // 2. Put what the call has on the stream.
        transmit(&mut call, &mut respond, &mut send);
        if call.is_finished() {
            return;
        }
        // 3. Wait for the next input.
        let now = Instant::now();
        let shutdown = shared.shutdown.listen();
        let deadline = call.poll_timeout();
        let wants_data = call.wants_data() && !body_done;
        let want_capacity = send.is_some() && call.send_wanted() > 0;
        let room = room.filter(|_| blocked_on_reader);
        let data = async {
            if wants_data {
                Wake::Data(body.data().await)
            } else {
                future::pending().await
            }
        };
        let answer = async {
            match answer_rx.recv().await {
                Ok(answer) => Wake::Answer(answer),
                Err(_) => future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    Timer::at(at).await;
                    Wake::Timer
                }
                None => future::pending().await,
            }
        };
        let room = async {
            match room {
                Some(listener) => {
                    listener.await;
                    Wake::Room
                }
                None => future::pending().await,
            }
        };
        let stream_events = async {
            match &mut send {
                Some(s) if want_capacity => match future::poll_fn(|cx| s.poll_capacity(cx)).await {
                    Some(Ok(_)) => Wake::Capacity,
                    Some(Err(e)) => Wake::Reset(Err(e)),
                    None => future::pending().await,
                },
                Some(s) => Wake::Reset(future::poll_fn(|cx| s.poll_reset(cx)).await),
                None => Wake::Reset(future::poll_fn(|cx| respond.poll_reset(cx)).await),
            }
        };
        let shutdown = async {
            if shutdown_handled {
                return future::pending().await;
            }
            if !shared.is_closed() {
                shutdown.await;
            }
            Wake::Shutdown
        };
        let wake = future::or(
            future::or(future::or(data, answer), shutdown),
            future::or(future::or(timer, room), stream_events),
        )
        .await;
        let now = Instant::now().max(now);
        match wake {
            Wake::Data(Some(Ok(data))) => {
                let n = data.len();
                call.handle_data(data, now);
                let _ = body.flow_control().release_capacity(n);
            }
            Wake::Data(None) => {
                body_done = true;
                call.handle_end_of_stream(now);
            }
            Wake::Data(Some(Err(e))) | Wake::Reset(Err(e)) => match e.reason() {
                Some(reason) if e.is_reset() => call.handle_reset(reason.into(), now),
                _ => call.handle_connection_lost(Status::new(
                    Code::Unavailable,
                    format!("connection lost: {e}"),
                )),
            },
            Wake::Reset(Ok(reason)) => call.handle_reset(reason.into(), now),
            Wake::Answer(answer) => {
                for result in order.take(answer) {
                    let _ = match result {
                        Ok(response) => call.respond(response),
                        Err(status) => call.respond_error(status),
                    };
                }
            }
            Wake::Timer => call.handle_timeout(now),
            Wake::Shutdown => {
                shutdown_handled = true;
                // Answer now rather than wait for an application that is
                // going away; a snapshot reader gets the error too.
                let _ = call.respond_error(Status::new(Code::Unavailable, "transport shut down"));
                if let Some(f) = feed.take() {
                    *f.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Status::new(Code::Unavailable, "transport shut down"));
                }
            }
            Wake::Room | Wake::Capacity => {}
        }
    }
}

/// How a wait for room in the consumer queue ended.
enum Delivery {
    Delivered,
    Refused,
    Reset(Result<h2::Reason, h2::Error>),
    Deadline,
}

/// Hands a request to the heartbeat handler, the stream's own pipeline
/// queue (`pipeline`) or the consumer. While the queue is full, the call
/// still sees the client's reset, its deadline and shutdown: the request
/// is then dropped, never delivered late.
async fn deliver(
    shared: &Arc<ServerShared>,
    call: &mut ServerCall,
    (respond, send): (&mut SendResponse<Bytes>, &mut Option<SendStream<Bytes>>),
    request: RaftRequest,
    responder: Responder,
    (pipeline, feed): (
        Option<&async_channel::Sender<Rpc>>,
        &mut Option<SnapshotFeed>,
    ),
) {
    if let RaftRequest::AppendEntries(append) = &request {
        if is_heartbeat(append) {
            if let Some(handler) = shared.heartbeat_handler() {
                responder.respond(handler(append).map(RaftResponse::AppendEntries));
                return;
            }
        }
    }
    let snapshot = if let RaftRequest::InstallSnapshot(meta) = &request {
        let (tx, rx) = async_channel::bounded(SNAPSHOT_BUFFER);
        let room = Arc::new(Event::new());
        let failure = Arc::new(Mutex::new(None));
        *feed = Some(SnapshotFeed {
            tx,
            room: room.clone(),
            failure: failure.clone(),
        });
        Some(SnapshotReader::new(
            ChannelSnapshot::new(rx, room, failure),
            meta.size,
        ))
    } else {
        None
    };
    let rpc = Rpc {
        request,
        responder,
        snapshot,
    };
    let shutdown = shared.shutdown.listen();
    if shared.is_closed() {
        let _ = call.respond_error(Status::new(Code::Unavailable, "transport shut down"));
        return;
    }
    let deadline = call.poll_timeout();
    let sent = async {
        match pipeline.unwrap_or(&shared.consumer).send(rpc).await {
            Ok(()) => Delivery::Delivered,
            Err(_) => Delivery::Refused,
        }
    };
    let closed = async {
        shutdown.await;
        Delivery::Refused
    };
    let reset = async {
        Delivery::Reset(match send {
            Some(s) => future::poll_fn(|cx| s.poll_reset(cx)).await,
            None => future::poll_fn(|cx| respond.poll_reset(cx)).await,
        })
    };
    let late = async {
        match deadline {
            Some(at) => {
                Timer::at(at).await;
                Delivery::Deadline
            }
            None => future::pending().await,
        }
    };
    match future::or(future::or(sent, closed), future::or(reset, late)).await {
        Delivery::Delivered => {}
        Delivery::Refused => {
            let message = if pipeline.is_some() && !shared.is_closed() {
                "the pipeline handler dropped this stream"
            } else {
                "transport shut down"
            };
            let _ = call.respond_error(Status::new(Code::Unavailable, message));
        }
        Delivery::Reset(Ok(reason)) => call.handle_reset(reason.into(), Instant::now()),
        Delivery::Reset(Err(e)) => call.handle_connection_lost(Status::new(
            Code::Unavailable,
            format!("connection lost: {e}"),
        )),
        Delivery::Deadline => call.handle_timeout(Instant::now()),
    }
}

/// Moves what the call wants to send onto the h2 stream.
fn transmit(
    call: &mut ServerCall,
    respond: &mut SendResponse<Bytes>,
    send: &mut Option<SendStream<Bytes>>,
) {
    loop {
        let capacity = match send {
            Some(s) => {
                let wanted = call.send_wanted();
                if wanted > 0 {
                    s.reserve_capacity(wanted);
                }
                s.capacity()
            }
            None => 0,
        };
        let Some(transmit) = call.poll_transmit(capacity) else {
            return;
        };
        let sent = match transmit {
            ServerTransmit::Head {
                head,
                end_of_stream,
            } => respond.send_response(head, end_of_stream).map(|s| {
                if !end_of_stream {
                    *send = Some(s);
                }
            }),
            ServerTransmit::Data(data) => match send {
                Some(s) => s.send_data(data, false),
                None => Ok(()),
            },
            ServerTransmit::Trailers(trailers) => match send {
                Some(s) => s.send_trailers(trailers),
                None => Ok(()),
            },
        };
        if let Err(e) = sent {
            call.handle_connection_lost(Status::new(
                Code::Unavailable,
                format!("sending the response: {e}"),
            ));
        }
    }
}
