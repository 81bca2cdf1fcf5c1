//! An async gRPC transport for Raft over raw h2 and `async-io`, usable from
//! any executor.
//!
//! [`GrpcTransport`] carries hashicorp/raft's RPCs — AppendEntries (single
//! and pipelined), RequestVote, RequestPreVote, TimeoutNow and streamed
//! InstallSnapshot — over gRPC, wire-compatible with the Go library
//! `raft-grpc-transport`. It is a thin adapter: the sans-IO core
//! (`raft-grpc-transport`) decides everything (connections and lanes,
//! deadlines, framing, flow of snapshot data, outcomes), and this crate
//! moves bytes and time between it, TCP sockets (or any byte stream you
//! give it) and h2.
//!
//! Its background tasks run on smol's global executor and its I/O on
//! async-io's reactor thread, so the futures it returns can be awaited from
//! any executor: smol, `futures_lite::future::block_on`, tokio, …
//!
//! ```
//! use raft_grpc_transport::message::{RaftRequest, RaftResponse, RequestVoteRequest, RequestVoteResponse};
//! use raft_grpc_transport_smol::{Config, GrpcTransport};
//!
//! # futures_lite::future::block_on(async {
//! let follower = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
//! let leader = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
//!
//! // The follower's Raft loop: answer what arrives.
//! let consumer = follower.consumer();
//! smol::spawn(async move {
//!     while let Some(rpc) = consumer.recv().await {
//!         if let RaftRequest::RequestVote(request) = &rpc.request {
//!             let term = request.term;
//!             rpc.respond(Ok(RaftResponse::RequestVote(RequestVoteResponse { term, granted: true, ..Default::default() })));
//!         }
//!     }
//! })
//! .detach();
//!
//! let vote = leader
//!     .request_vote(follower.local_addr(), RequestVoteRequest { term: 2, ..Default::default() })
//!     .await?;
//! assert!(vote.granted);
//! leader.close().await;
//! follower.close().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
pub mod inmem;
mod io;
mod rpc;
mod server;

pub use client::{ConnectFuture, Connector, PeerStream, tcp_connector};
pub use config::Config;
pub use inmem::{InmemConfig, InmemNetwork, InmemPipeline, InmemTransport};
pub use io::H2Io;
pub use raft_grpc_transport_api::{
    AppendPipeline, HeartbeatHandler, Responder, Rpc, SnapshotReader, Transport, TransportError,
};
pub use rpc::{Consumer, IncomingPipeline};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_io::Async;
use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::{AsyncRead, AsyncReadExt};
use raft_grpc_transport::client::{CallId, OutgoingRpc, UnaryRequest, transport_shutdown};
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::pipeline::pipeline_shutdown;
use raft_grpc_transport::snapshot::SnapshotProgress;
use raft_grpc_transport::{Code, Status};
use smol::Task;

use client::{ClientShared, PipelineWaiters};
use server::ServerShared;

/// A Raft transport over gRPC: serves the Raft service and calls peers.
///
/// Cheap to clone; every clone is the same transport.
#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: String,
    client: Arc<ClientShared>,
    server: Arc<ServerShared>,
    consumer: Consumer,
    listener: Mutex<Option<Task<()>>>,
    closed: AtomicBool,
}

impl Drop for Inner {
    /// The last handle is gone without `close`: close anyway, so that the
    /// connection tasks (which hold the client half) end and free it.
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.server.closed.store(true, Ordering::SeqCst);
            self.server.shutdown.notify(usize::MAX);
            self.server.consumer.close();
            self.client.update(|s, now| s.endpoint.close(now));
        }
    }
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl GrpcTransport {
    /// Binds a TCP listener on `addr` and serves on it. With port 0 the
    /// system picks one: [`local_addr`](Self::local_addr) says which.
    pub async fn bind(addr: &str, config: Config) -> std::io::Result<GrpcTransport> {
        let addr = client::resolve_addr(addr).await?;
        GrpcTransport::from_listener(Async::<std::net::TcpListener>::bind(addr)?, config)
    }

    /// Serves on a listener you bound.
    pub fn from_listener(
        listener: Async<std::net::TcpListener>,
        config: Config,
    ) -> std::io::Result<GrpcTransport> {
        let local_addr = listener.get_ref().local_addr()?.to_string();
        let transport = GrpcTransport::builder(local_addr, config).build();
        let task = smol::spawn(server::serve_listener(
            transport.inner.server.clone(),
            listener,
        ));
        *transport
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(transport)
    }

    /// A transport that listens on nothing by itself: give it connections
    /// with [`serve_connection`](Self::serve_connection) (TLS, say), and a
    /// connector of your own for its calls. `local_addr` is the address
    /// peers know it by.
    pub fn builder(local_addr: impl Into<String>, config: Config) -> Builder {
        Builder {
            local_addr: local_addr.into(),
            config,
            connector: tcp_connector(),
        }
    }

    /// Serves the Raft service on an established byte stream (any
    /// `AsyncRead + AsyncWrite`, e.g. a TLS stream), until it closes.
    pub fn serve_connection(&self, io: impl PeerStream) {
        smol::spawn(server::serve_connection(self.inner.server.clone(), io)).detach();
    }

    /// The address peers reach this transport at.
    pub fn local_addr(&self) -> &str {
        &self.inner.local_addr
    }

    /// Where incoming RPCs arrive. Every handle shares one queue.
    pub fn consumer(&self) -> Consumer {
        self.inner.consumer.clone()
    }

    /// Answers heartbeats with `handler` instead of the consumer queue, so
    /// that they are answered while the consumer is busy (installing a
    /// snapshot, say). `None` sends them to the consumer again.
    pub fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        *self
            .inner
            .server
            .heartbeat
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Hands every AppendEntries pipeline stream that a peer opens from now
    /// on to `handler`, as an [`IncomingPipeline`] of its appends in order,
    /// instead of putting them on the consumer queue with the appends of
    /// other streams; `None` sends them to the consumer again. A relay or
    /// proxy needs this to keep each stream's appends together and in
    /// order. The handler runs on the stream's task and must not block:
    /// spawn a task that takes the appends.
    pub fn set_pipeline_handler(&self, handler: Option<PipelineHandler>) {
        *self
            .inner
            .server
            .pipeline
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Serializes a peer's address, as hashicorp/raft's `EncodePeer`.
    pub fn encode_peer(&self, _id: &str, addr: &str) -> Bytes {
        Bytes::copy_from_slice(addr.as_bytes())
    }

    /// Reads a peer's address back, as hashicorp/raft's `DecodePeer`.
    pub fn decode_peer(&self, peer: &[u8]) -> String {
        String::from_utf8_lossy(peer).into_owned()
    }

    /// Sends one unary RPC of any kind and waits for its answer.
    pub async fn call(
        &self,
        target: &str,
        rpc: OutgoingRpc,
    ) -> Result<RaftResponse, TransportError> {
        let (tx, rx) = async_channel::bounded(1);
        let call = self.inner.client.update(|s, now| {
            let call = s.endpoint.start_rpc(target, rpc, now);
            s.calls.insert(call, tx);
            call
        });
        let guard = CancelOnDrop::new(&self.inner.client, call);
        let result = rx.recv().await;
        guard.disarm();
        self.outcome(result)
    }

    /// Sends a unary request and returns its typed response.
    pub async fn unary<R: UnaryRequest>(
        &self,
        target: &str,
        request: R,
    ) -> Result<R::Response, TransportError> {
        R::response(self.call(target, request.into()).await?)
    }

    /// Sends AppendEntries (a heartbeat travels on the control lane).
    pub async fn append_entries(
        &self,
        target: &str,
        request: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError> {
        self.unary(target, request).await
    }

    /// Sends RequestVote.
    pub async fn request_vote(
        &self,
        target: &str,
        request: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError> {
        self.unary(target, request).await
    }

    /// Sends RequestPreVote.
    pub async fn request_pre_vote(
        &self,
        target: &str,
        request: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError> {
        self.unary(target, request).await
    }

    /// Sends TimeoutNow (leadership transfer).
    pub async fn timeout_now(
        &self,
        target: &str,
        request: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError> {
        self.unary(target, request).await
    }

    /// Streams a snapshot of `meta.size` bytes read from `data` to `target`.
    /// The peer receives exactly `meta.size` bytes or the install fails;
    /// memory stays bounded (two chunks in flight) whatever the size.
    pub async fn install_snapshot(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        mut data: impl AsyncRead + Unpin,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        let (tx, rx) = async_channel::bounded(1);
        let wants = Arc::new(Event::new());
        let client = &self.inner.client;
        let call = client.update(|s, now| {
            let call = s.endpoint.start_snapshot(target, meta, now);
            s.calls.insert(call, tx);
            s.snapshots.insert(call, wants.clone());
            call
        });
        let guard = CancelOnDrop::new(client, call);
        let read_size = client.read(|s| s.endpoint.config().snapshot_chunk_size);
        // Reads go into one allocation until it is used up, so that short
        // reads (a pipe, a socket) do not each pin a chunk-sized buffer.
        let mut buf = BytesMut::new();
        loop {
            let listener = wants.listen();
            let (wanted, over) = client.read(|s| {
                (
                    s.endpoint.snapshot_wants_data(call),
                    !s.calls.contains_key(&call),
                )
            });
            if over {
                break;
            }
            if !wanted {
                listener.await;
                continue;
            }
            if buf.capacity() < read_size / 4 {
                buf = BytesMut::with_capacity(read_size);
            }
            let room = buf.capacity().min(read_size);
            buf.resize(room, 0);
            // The call may end (the peer failed it, a deadline passed) while
            // the source is slow: stop reading then.
            let read = async { Some(data.read(&mut buf).await) };
            let over = async {
                loop {
                    let listener = wants.listen();
                    if !client.read(|s| s.calls.contains_key(&call)) {
                        return None;
                    }
                    listener.await;
                }
            };
            let Some(read) = futures_lite::future::or(read, over).await else {
                break;
            };
            match read {
                Ok(0) => {
                    client.update(|s, now| s.endpoint.snapshot_end(call, now));
                    break;
                }
                Ok(n) => {
                    let chunk = buf.split_to(n).freeze();
                    buf.clear();
                    client.update(|s, now| {
                        let _ = s.endpoint.snapshot_data(call, chunk, now);
                    });
                }
                Err(e) => {
                    let status =
                        Status::new(Code::Aborted, format!("reading the snapshot failed: {e}"));
                    client.update(|s, now| s.endpoint.cancel(call, status, now));
                    break;
                }
            }
        }
        let result = rx.recv().await;
        guard.disarm();
        match self.outcome(result)? {
            RaftResponse::InstallSnapshot(response) => Ok(response),
            other => Err(TransportError::Status(Status::new(
                Code::Internal,
                format!("unexpected {} for this call", other.proto_name()),
            ))),
        }
    }

    /// How far the snapshot being sent to a peer got, if one is.
    pub fn snapshot_progress(&self) -> Vec<SnapshotProgress> {
        self.inner
            .client
            .read(|s| s.progress.values().copied().collect())
    }

    /// Opens an AppendEntries pipeline to `target`: returns once its stream
    /// is open, or with the error that kept it from opening (the peer
    /// unreachable, say), so that a caller can fall back at once.
    pub async fn append_entries_pipeline(&self, target: &str) -> Result<Pipeline, TransportError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Shutdown);
        }
        let (appended_tx, appended) = async_channel::unbounded();
        let ready = Arc::new(Event::new());
        let id = self.inner.client.update(|s, now| {
            let id = s.endpoint.open_pipeline(target, now);
            s.pipelines.insert(
                id,
                PipelineWaiters {
                    appended: appended_tx,
                    ready: ready.clone(),
                    opened: false,
                    closed: None,
                },
            );
            id
        });
        let pipeline = Pipeline {
            client: self.inner.client.clone(),
            id,
            appended,
            ready,
            transport_closed: self.clone(),
        };
        loop {
            let listener = pipeline.ready.listen();
            let state = self
                .inner
                .client
                .read(|s| s.pipelines.get(&id).map(|p| (p.opened, p.closed.clone())));
            match state {
                Some((_, Some(status))) => return Err(self.error(status)),
                Some((true, None)) => return Ok(pipeline),
                Some((false, None)) => listener.await,
                None => return Err(TransportError::PipelineShutdown),
            }
        }
    }

    /// Closes the transport: pending and later calls fail with
    /// [`TransportError::Shutdown`], the listener stops, connections close
    /// gracefully, RPCs still queued for the consumer are answered with
    /// `UNAVAILABLE` ("transport shut down"), and the consumer ends.
    /// Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.server.closed.store(true, Ordering::SeqCst);
        self.inner.server.shutdown.notify(usize::MAX);
        self.inner.client.update(|s, now| s.endpoint.close(now));
        self.inner.server.consumer.close();
        // RPCs still queued for the consumer are answered, not left behind.
        while let Some(rpc) = self.inner.consumer.try_recv() {
            rpc.respond(Err(transport_shutdown()));
        }
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = listener {
            task.cancel().await;
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    fn outcome(
        &self,
        result: Result<Result<RaftResponse, Status>, async_channel::RecvError>,
    ) -> Result<RaftResponse, TransportError> {
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(status)) => Err(self.error(status)),
            Err(_) => Err(TransportError::Shutdown),
        }
    }

    fn error(&self, status: Status) -> TransportError {
        if self.is_closed() && status == transport_shutdown() {
            TransportError::Shutdown
        } else if status == pipeline_shutdown() {
            TransportError::PipelineShutdown
        } else {
            TransportError::Status(status)
        }
    }
}

/// Takes the AppendEntries pipeline streams peers open (see
/// [`GrpcTransport::set_pipeline_handler`]). It must not block.
pub type PipelineHandler = Arc<dyn Fn(IncomingPipeline) + Send + Sync>;

/// Builds a [`GrpcTransport`] that listens on nothing by itself.
pub struct Builder {
    local_addr: String,
    config: Config,
    connector: Connector,
}

impl Builder {
    /// Opens connections to peers with `connector` instead of plain TCP.
    pub fn connector(mut self, connector: Connector) -> Builder {
        self.connector = connector;
        self
    }

    /// The transport.
    pub fn build(self) -> GrpcTransport {
        let (tx, rx) = async_channel::bounded(self.config.consumer_queue.max(1));
        let server = Arc::new(ServerShared {
            config: self.config.clone(),
            consumer: tx,
            heartbeat: RwLock::new(None),
            pipeline: RwLock::new(None),
            shutdown: Event::new(),
            closed: AtomicBool::new(false),
        });
        GrpcTransport {
            inner: Arc::new(Inner {
                local_addr: self.local_addr,
                client: ClientShared::new(self.config, self.connector),
                server,
                consumer: Consumer::new(rx),
                listener: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        }
    }
}

/// Cancels a call whose caller stopped waiting.
struct CancelOnDrop<'a> {
    client: &'a Arc<ClientShared>,
    call: Option<CallId>,
}

impl<'a> CancelOnDrop<'a> {
    fn new(client: &'a Arc<ClientShared>, call: CallId) -> Self {
        CancelOnDrop {
            client,
            call: Some(call),
        }
    }

    fn disarm(mut self) {
        self.call = None;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.client.update(|s, now| {
                s.calls.remove(&call);
                s.snapshots.remove(&call);
                s.endpoint.cancel(
                    call,
                    Status::new(Code::Cancelled, "the caller stopped waiting"),
                    now,
                );
            });
        }
    }
}

/// An AppendEntries pipeline to one peer: appends go out without waiting
/// for earlier answers, and complete in the order they were sent.
pub struct Pipeline {
    client: Arc<ClientShared>,
    id: CallId,
    appended: async_channel::Receiver<(u64, Result<AppendEntriesResponse, Status>)>,
    ready: Arc<Event>,
    transport_closed: GrpcTransport,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("id", &self.id).finish()
    }
}

impl Pipeline {
    /// Sends an AppendEntries; waits while the window is full (this is the
    /// back-pressure). Returns the append's sequence number, which its
    /// completion carries.
    pub async fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        loop {
            let listener = self.ready.listen();
            let result = self
                .client
                .update(|s, now| s.endpoint.pipeline_append(self.id, request, now));
            match result {
                Ok(seq) => return Ok(seq),
                Err(raft_grpc_transport::client::AppendError::Full) => listener.await,
                Err(raft_grpc_transport::client::AppendError::Closed(status)) => {
                    return Err(self.transport_closed.error(status));
                }
                Err(raft_grpc_transport::client::AppendError::TooLarge(status)) => {
                    return Err(TransportError::Status(status));
                }
                Err(_) => return Err(TransportError::PipelineShutdown),
            }
        }
    }

    /// The next completion, in send order: the sequence number and the
    /// response or error. `None` once the pipeline is closed and every
    /// append has completed.
    pub async fn next(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        let (seq, result) = self.appended.recv().await.ok()?;
        Some((
            seq,
            result.map_err(|status| self.transport_closed.error(status)),
        ))
    }

    /// Closes the pipeline: appends in flight complete with
    /// [`TransportError::PipelineShutdown`].
    pub fn close(&self) {
        self.client
            .update(|s, now| s.endpoint.close_pipeline(self.id, now));
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.client.update(|s, now| {
            s.endpoint.close_pipeline(self.id, now);
            s.pipelines.remove(&self.id);
        });
    }
}

impl Transport for GrpcTransport {
    type Pipeline = Pipeline;

    fn local_addr(&self) -> &str {
        GrpcTransport::local_addr(self)
    }

    async fn recv_rpc(&self) -> Option<Rpc> {
        self.inner.consumer.recv().await
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        GrpcTransport::set_heartbeat_handler(self, handler)
    }

    async fn call(&self, target: &str, rpc: OutgoingRpc) -> Result<RaftResponse, TransportError> {
        GrpcTransport::call(self, target, rpc).await
    }

    async fn install_snapshot<R: AsyncRead + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        data: R,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        GrpcTransport::install_snapshot(self, target, meta, data).await
    }

    async fn append_entries_pipeline(&self, target: &str) -> Result<Pipeline, TransportError> {
        GrpcTransport::append_entries_pipeline(self, target).await
    }

    async fn close(&self) {
        GrpcTransport::close(self).await
    }
}

impl AppendPipeline for Pipeline {
    async fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        Pipeline::append(self, request).await
    }

    async fn next(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        Pipeline::next(self).await
    }

    fn close(&self) {
        Pipeline::close(self)
    }
}
