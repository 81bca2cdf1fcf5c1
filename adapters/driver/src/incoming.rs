//! Incoming RPCs on their way to the application.
//!
//! This module owns the handles the application takes incoming RPCs with:
//! the [`Consumer`] (the endpoint's consumer queue), an
//! [`IncomingPipeline`] (one pipeline stream's own queue, when a pipeline
//! handler is set), and the reader of an incoming snapshot's data. Each
//! pulls from the core's `ServerEndpoint` — taking a request is the moment
//! it is delivered — and waits on the events the driver's dispatch
//! notifies. Answers go back through the endpoint, which orders them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use event_listener::{Event, EventListener};
use futures_lite::Stream;
use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::message::RaftRequest;
use raft_grpc_transport::server::{IncomingRpc, PipelineRead, RequestId, SnapshotRead, StreamId};
use raft_grpc_transport_api::{Responder, Rpc, SnapshotData, SnapshotReader};

use crate::server::{ServerShared, ServerState};

/// Turns a request the endpoint delivered into the application's [`Rpc`].
/// Call under the lock that took it (its snapshot reader registers there).
fn make_rpc(shared: &Arc<ServerShared>, state: &mut ServerState, incoming: IncomingRpc) -> Rpc {
    let id = incoming.id;
    let snapshot = match &incoming.request {
        RaftRequest::InstallSnapshot(meta) => {
            let event = Arc::new(Event::new());
            state.snapshot_events.insert(id, event.clone());
            let data = EndpointSnapshot {
                shared: shared.clone(),
                id,
                event,
                listener: None,
                current: Bytes::new(),
                done: false,
            };
            Some(SnapshotReader::new(data, meta.size))
        }
        _ => None,
    };
    let answers = shared.clone();
    let trace = crate::observe::IncomingCall::delivered(
        incoming.peer.remote_addr,
        crate::observe::request_method(&incoming.request),
        || match state.endpoint.stream_method(id.stream) {
            Some(RpcMethod::AppendEntriesPipeline) => crate::observe::Incoming::Pipelined,
            _ => crate::observe::Incoming::Call,
        },
    );
    let responder = Responder::new(move |result| {
        trace.answered(result.as_ref().err());
        answers.update(|s, now| s.endpoint.respond(id, result, now).is_ok())
    });
    Rpc::from_peer(incoming.request, responder, snapshot, incoming.peer)
}

/// Where incoming RPCs arrive (heartbeats too, when no heartbeat handler
/// is set). Cloning gives another handle on the same queue.
pub struct Consumer {
    shared: Arc<ServerShared>,
    listener: Option<EventListener>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Clone for Consumer {
    fn clone(&self) -> Self {
        Consumer::new(self.shared.clone())
    }
}

impl Consumer {
    pub(crate) fn new(shared: Arc<ServerShared>) -> Self {
        Consumer {
            shared,
            listener: None,
        }
    }

    /// The next RPC if one is waiting; `Err(closed)` if none is, saying
    /// whether the transport is closed. When asked, and only when nothing
    /// is waiting, registers a listener before the lock is released: an RPC
    /// is queued under that lock and notified after it, so none queued
    /// meanwhile is missed, and a busy queue costs no listener per RPC.
    fn take(&self, listen: bool) -> Result<Rpc, (bool, Option<EventListener>)> {
        let shared = &self.shared;
        shared.update(|s, now| match s.endpoint.poll_rpc(now) {
            Some(incoming) => Ok(make_rpc(shared, s, incoming)),
            None => {
                let closed = s.endpoint.is_closed();
                let listener = (listen && !closed).then(|| shared.consumer_ready.listen());
                Err((closed, listener))
            }
        })
    }

    /// The next RPC; `None` once the transport is closed.
    pub async fn recv(&self) -> Option<Rpc> {
        loop {
            match self.take(true) {
                Ok(rpc) => return Some(rpc),
                Err((true, _)) => return None,
                Err((false, listener)) => {
                    if let Some(listener) = listener {
                        listener.await;
                    }
                }
            }
        }
    }

    /// The next RPC if one is waiting.
    pub fn try_recv(&self) -> Option<Rpc> {
        self.take(false).ok()
    }

    /// Whether the transport closed the queue (what is left can still be
    /// received).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl Stream for Consumer {
    type Item = Rpc;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Rpc>> {
        loop {
            if let Some(listener) = &mut self.listener {
                std::task::ready!(Pin::new(listener).poll(cx));
                self.listener = None;
            }
            match self.take(true) {
                Ok(rpc) => return Poll::Ready(Some(rpc)),
                Err((true, _)) => return Poll::Ready(None),
                Err((false, listener)) => self.listener = listener,
            }
        }
    }
}

/// One AppendEntries pipeline stream a peer opened, handed to the
/// transport's pipeline handler (see
/// [`GrpcTransport::set_pipeline_handler`](crate::GrpcTransport::set_pipeline_handler)):
/// its appends, in the order the peer sent them.
///
/// Each [`Rpc`] is an AppendEntries with its own responder. Answers may be
/// given in any order: the stream sends them back in request order. An
/// error answer ends the whole stream with that status, as gRPC streams
/// end (appends after it are not answered). At most `consumer_queue`
/// appends wait here; then the stream stops reading from the peer (HTTP/2
/// flow control holds it back). Dropping it ends the stream with
/// `UNAVAILABLE`.
pub struct IncomingPipeline {
    shared: Arc<ServerShared>,
    stream: StreamId,
    listener: Option<EventListener>,
}

impl std::fmt::Debug for IncomingPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingPipeline")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl IncomingPipeline {
    pub(crate) fn new(shared: Arc<ServerShared>, stream: StreamId) -> Self {
        IncomingPipeline {
            shared,
            stream,
            listener: None,
        }
    }

    /// The next append if one is waiting; `Err(None)` once the stream is
    /// over, `Err(Some(listener))` while it waits.
    fn take(&self) -> Result<Rpc, Option<EventListener>> {
        let shared = &self.shared;
        let stream = self.stream;
        // The stream's event is notified under the lock this runs in, so a
        // listener registered here, once nothing is waiting, misses nothing.
        shared.update(|s, now| match s.endpoint.poll_pipeline_rpc(stream, now) {
            PipelineRead::Rpc(incoming) => Ok(make_rpc(shared, s, incoming)),
            PipelineRead::Pending => Err(s.pipeline_events.get(&stream).map(|e| e.listen())),
            PipelineRead::Ended => Err(None),
        })
    }

    /// The next append, in the order the peer sent them; `None` once the
    /// stream is over. A stream that ends while appends still wait here
    /// (the peer reset it, its deadline passed, an answer was an error,
    /// the transport closed) drops them: their answers could go nowhere.
    pub async fn recv(&self) -> Option<Rpc> {
        loop {
            match self.take() {
                Ok(rpc) => return Some(rpc),
                Err(None) => return None,
                Err(Some(listener)) => listener.await,
            }
        }
    }
}

impl Stream for IncomingPipeline {
    type Item = Rpc;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Rpc>> {
        loop {
            if let Some(listener) = &mut self.listener {
                std::task::ready!(Pin::new(listener).poll(cx));
                self.listener = None;
            }
            match self.take() {
                Ok(rpc) => return Poll::Ready(Some(rpc)),
                Err(None) => return Poll::Ready(None),
                Err(Some(listener)) => self.listener = Some(listener),
            }
        }
    }
}

impl Drop for IncomingPipeline {
    fn drop(&mut self) {
        let stream = self.stream;
        self.shared.update(|s, now| {
            s.pipeline_events.remove(&stream);
            s.endpoint.drop_pipeline(stream, now);
        });
    }
}

/// An incoming snapshot's data, read from the endpoint as it arrives.
struct EndpointSnapshot {
    shared: Arc<ServerShared>,
    id: RequestId,
    event: Arc<Event>,
    listener: Option<EventListener>,
    /// What is left of the chunk being read with `poll_read`.
    current: Bytes,
    done: bool,
}

impl SnapshotData for EndpointSnapshot {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let this = &mut *self;
        loop {
            if !this.current.is_empty() {
                return Poll::Ready(Ok(Some(std::mem::take(&mut this.current))));
            }
            if this.done {
                return Poll::Ready(Ok(None));
            }
            if let Some(listener) = &mut this.listener {
                std::task::ready!(Pin::new(listener).poll(cx));
                this.listener = None;
            }
            let (id, event) = (this.id, &this.event);
            let (read, listener) = this.shared.update(|s, now| {
                let listener = event.listen();
                let read = s.endpoint.read_snapshot(id, now);
                if let SnapshotRead::Data(data) = &read {
                    s.meters.snapshot_received(data.len());
                }
                let listener = (read == SnapshotRead::Pending).then_some(listener);
                (read, listener)
            });
            match read {
                SnapshotRead::Data(data) => return Poll::Ready(Ok(Some(data))),
                SnapshotRead::End => {
                    this.done = true;
                    return Poll::Ready(Ok(None));
                }
                SnapshotRead::Failed(status) => {
                    this.done = true;
                    return Poll::Ready(Err(io::Error::other(status)));
                }
                SnapshotRead::Pending => this.listener = listener,
            }
        }
    }
}

impl futures_io::AsyncRead for EndpointSnapshot {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.current.is_empty() {
            match std::task::ready!(self.as_mut().poll_chunk(cx))? {
                Some(chunk) => self.current = chunk,
                None => return Poll::Ready(Ok(0)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl Drop for EndpointSnapshot {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.update(|s, now| {
            s.snapshot_events.remove(&id);
            s.endpoint.release_snapshot(id, now);
        });
    }
}
