//! The h2 driver of the Raft gRPC transport, generic over a runtime.
//!
//! [`GrpcTransport`] carries hashicorp/raft's RPCs — AppendEntries (single
//! and pipelined), RequestVote, RequestPreVote, TimeoutNow and streamed
//! InstallSnapshot — over gRPC, wire-compatible with the Go library
//! `raft-grpc-transport`. It is the one driver of the sans-IO core
//! (`raft-grpc-transport`): the core's `ClientEndpoint` and
//! `ServerEndpoint` decide everything (connections and lanes, PINGs,
//! deadlines, framing, where requests go, back-pressure, answer order,
//! outcomes), and this crate moves bytes, timers and tasks between them,
//! h2 and a [`Runtime`]:
//!
//! ```text
//!  application ──calls──▶ ClientEndpoint ──outputs──▶ connection task ──▶ h2 ──▶ socket
//!  application ◀─events── ClientEndpoint ◀──inputs─── connection task ◀── h2 ◀── socket
//!  Consumer ◀─poll_rpc─── ServerEndpoint ◀──inputs─── connection task ◀── h2 ◀── socket
//!  Responder ──respond──▶ ServerEndpoint ──outputs──▶ connection task ──▶ h2 ──▶ socket
//! ```
//!
//! One task per connection polls h2's connection and every stream on it;
//! each endpoint sits behind one lock, and every input is followed by the
//! dispatch of what the endpoint asks (the `client` and `server` modules).
//! A backend crate supplies the [`Runtime`] (smol, tokio, plain threads)
//! and re-exports this crate's types for it.
//!
//! Modules: [`runtime`] (the trait, byte streams, connectors), `client`
//! and `server` (the two halves), `incoming` ([`Consumer`],
//! [`IncomingPipeline`], snapshot readers), [`inmem`] (an in-memory network
//! of transports over in-memory streams), `h2_error` (the one reading of
//! h2's errors), `capacity` (the one way both halves get send capacity),
//! `observe` (every place the transport reports itself: `tracing` with the
//! cargo feature `tracing`, metrics with `metrics`, whose names are in the
//! `metrics` module).
//!
//! # Public surface
//!
//! [`GrpcTransport`], [`Builder`] (with `tls_server` and `tls_client`
//! under the cargo feature `tls`: the `tls` module), [`Pipeline`]; [`Consumer`],
//! [`IncomingPipeline`], [`PipelineHandler`]; the [`runtime`] module
//! ([`Runtime`], [`PeerIo`], [`BoxIo`], [`Connector`], [`ConnectFuture`],
//! [`tcp_connector`]); the [`inmem`] module; and re-exports of [`Config`] and
//! of the API crate's types ([`Rpc`], [`Responder`], [`SnapshotReader`],
//! [`HeartbeatHandler`], [`Transport`], [`TransportError`], …).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod capacity;
mod client;
mod h2_error;
pub mod hosted;
mod incoming;
pub mod inmem;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod observe;
pub mod runtime;
mod server;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use incoming::{Consumer, IncomingPipeline};
pub use raft_grpc_transport::config::Config;
pub use raft_grpc_transport::server::{AuthorizationRequest, Authorizer, PeerInfo};
pub use raft_grpc_transport_api::{
    AppendPipeline, HeartbeatHandler, Responder, Rpc, SnapshotReader, Transport, TransportError,
};
pub use runtime::{BoxIo, ConnectFuture, Connector, PeerIo, Runtime, tcp_connector};
pub use server::PipelineHandler;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use event_listener::Event;
use futures_io::AsyncRead;
use futures_lite::AsyncReadExt;
use raft_grpc_transport::client::{AppendError, CallId, OutgoingRpc, PeerStats, UnaryRequest};
use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::pool::Lane;
use raft_grpc_transport::snapshot::SnapshotProgress;
use raft_grpc_transport::{Code, Status};

use client::{ClientShared, PipelineWaiters};
use server::ServerShared;

/// A Raft transport over gRPC on runtime `R`: serves the Raft service and
/// calls peers.
///
/// Cheap to clone; every clone is the same transport. Dropping the last
/// handle closes it.
pub struct GrpcTransport<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for GrpcTransport<R> {
    fn clone(&self) -> Self {
        GrpcTransport {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<R: Runtime> {
    runtime: R,
    local_addr: String,
    client: Arc<ClientShared<R>>,
    server: Arc<ServerShared>,
    closed: AtomicBool,
}

impl<R: Runtime> Drop for Inner<R> {
    /// The last handle is gone without `close`: close anyway, so that the
    /// connection tasks end and free what they hold.
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.server.close();
            self.client.update(|s, now| s.endpoint.close(now));
        }
    }
}

impl<R: Runtime> std::fmt::Debug for GrpcTransport<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl<R: Runtime> GrpcTransport<R> {
    /// Binds a TCP listener on `addr` and serves on it. With port 0 the
    /// system picks one: [`local_addr`](Self::local_addr) says which.
    pub async fn bind(addr: &str, config: Config) -> io::Result<Self> {
        GrpcTransport::bind_on(R::default(), addr, config).await
    }

    /// [`bind`](Self::bind), on this runtime.
    pub async fn bind_on(runtime: R, addr: &str, config: Config) -> io::Result<Self> {
        GrpcTransport::builder(addr, config)
            .runtime(runtime)
            .bind()
            .await
    }

    /// Serves on a listener you bound.
    pub fn from_listener(listener: R::Listener, config: Config) -> io::Result<Self> {
        GrpcTransport::from_listener_on(R::default(), listener, config)
    }

    /// [`from_listener`](Self::from_listener), on this runtime.
    pub fn from_listener_on(runtime: R, listener: R::Listener, config: Config) -> io::Result<Self> {
        let local_addr = R::local_addr(&listener)?.to_string();
        Ok(GrpcTransport::builder(local_addr, config)
            .runtime(runtime)
            .serve(listener))
    }

    /// A transport that listens on nothing by itself: give it connections
    /// with [`serve_connection`](Self::serve_connection) (TLS, say), and a
    /// connector of your own for its calls. `local_addr` is the address
    /// peers know it by.
    pub fn builder(local_addr: impl Into<String>, config: Config) -> Builder<R> {
        Builder {
            runtime: None,
            local_addr: local_addr.into(),
            config,
            connector: None,
            #[cfg(feature = "tls")]
            tls_server: None,
            #[cfg(feature = "tls")]
            tls_client: None,
        }
    }

    /// Serves the Raft service on an established byte stream (a TLS
    /// stream, an in-memory pipe), in the background, until it closes.
    pub fn serve_connection(&self, io: impl Into<R::Io>) {
        let io = R::into_h2(io.into());
        let server = self.inner.server.clone();
        self.inner.runtime.spawn(server::serve_connection(
            self.inner.runtime.clone(),
            server,
            io,
            None,
        ));
    }

    /// Serves requests that another HTTP/2 stack accepted (hyper under a
    /// tonic or axum server, say) on this transport's endpoint, beside its
    /// own connections: see the [`hosted`] module.
    pub fn hosted(&self) -> hosted::HostedServer {
        hosted::HostedServer::new(self.inner.server.clone())
    }

    /// The runtime it runs on.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// The address peers reach this transport at.
    pub fn local_addr(&self) -> &str {
        &self.inner.local_addr
    }

    /// Where incoming RPCs arrive. Every handle shares one queue.
    pub fn consumer(&self) -> Consumer {
        Consumer::new(self.inner.server.clone())
    }

    /// Answers heartbeats with `handler` instead of the consumer queue, so
    /// that they are answered while the consumer is busy (installing a
    /// snapshot, say). `None` sends them to the consumer again. The
    /// handler runs on a connection's task and must not block.
    pub fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        self.inner.server.set_heartbeat_handler(handler);
    }

    /// Asks `authorizer`, once per stream a peer opens from now on and
    /// before its request reaches the consumer (or the heartbeat handler),
    /// whether the call may go on, given the peer (its address and, under
    /// mutual TLS, its verified certificate chain), the method and the
    /// request metadata; a refusal answers the caller with the status the
    /// authorizer gave (`PERMISSION_DENIED`, `UNAUTHENTICATED`). `None`
    /// lets every call in. It runs on a connection's task and must not
    /// block.
    pub fn set_authorizer(&self, authorizer: Option<Authorizer>) {
        self.inner.server.set_authorizer(authorizer);
    }

    /// Sends `metadata` with every request from now on (an `authorization`
    /// token for the peers' authorizers, say). Names that gRPC reserves
    /// (`content-type`, `te`, `user-agent`, `grpc-*`, …) are refused.
    pub fn set_request_metadata(
        &self,
        metadata: http::HeaderMap,
    ) -> Result<(), raft_grpc_transport::metadata::ReservedMetadataError> {
        self.inner
            .client
            .update(|s, _| s.endpoint.set_request_metadata(metadata))
    }

    /// Hands every AppendEntries pipeline stream that a peer opens from now
    /// on to `handler`, as an [`IncomingPipeline`] of its appends in order,
    /// instead of putting them on the consumer queue with the appends of
    /// other streams; `None` sends them to the consumer again. A relay or
    /// proxy needs this to keep each stream's appends together and in
    /// order. The handler runs on a connection's task and must not block:
    /// spawn a task that takes the appends.
    pub fn set_pipeline_handler(&self, handler: Option<PipelineHandler>) {
        self.inner.server.set_pipeline_handler(handler);
    }

    /// Sends one unary RPC of any kind and waits for its answer.
    pub async fn call(
        &self,
        target: &str,
        rpc: OutgoingRpc,
    ) -> Result<RaftResponse, TransportError> {
        let (tx, rx) = async_channel::bounded(1);
        let trace = observe::OutgoingCall::start(
            &self.inner.client.meters,
            target,
            rpc.method(),
            // The core puts heartbeats, alone of AppendEntries, on the
            // control lane.
            rpc.method() == RpcMethod::AppendEntries && rpc.lane() == Lane::Control,
        );
        let call = self.inner.client.update(|s, now| {
            let call = s.endpoint.start_rpc(target, rpc, now);
            s.calls.insert(call, tx);
            call
        });
        let guard = CancelOnDrop::new(&self.inner.client, call);
        let result = rx.recv().await;
        guard.disarm();
        let result = result.unwrap_or(Err(TransportError::Shutdown));
        trace.finish(result.as_ref().err());
        result
    }

    /// Sends a unary request and returns its typed response.
    pub async fn unary<Q: UnaryRequest>(
        &self,
        target: &str,
        request: Q,
    ) -> Result<Q::Response, TransportError> {
        Q::response(self.call(target, request.into()).await?)
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
        let mut trace =
            observe::OutgoingCall::start(&client.meters, target, RpcMethod::InstallSnapshot, false);
        let (total, mut sent) = (meta.size, 0u64);
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
        // Chunks pushed since this task last waited: a source and a
        // connection both as fast as they come would keep it from ever
        // giving its thread back to the executor's other tasks.
        let mut unbroken = 0u32;
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
                unbroken = 0;
                listener.await;
                continue;
            }
            if unbroken >= CHUNKS_BEFORE_YIELD {
                unbroken = 0;
                client.runtime.yield_now().await;
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
                    client.update(|s, now| s.endpoint.finish_snapshot(call, now));
                    break;
                }
                Ok(n) => {
                    let chunk = buf.split_to(n).freeze();
                    buf.clear();
                    client.update(|s, now| {
                        let _ = s.endpoint.push_snapshot_data(call, chunk, now);
                    });
                    trace.snapshot_progress(sent, sent + n as u64, total);
                    sent += n as u64;
                    unbroken += 1;
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
        let result = match result.unwrap_or(Err(TransportError::Shutdown)) {
            Ok(RaftResponse::InstallSnapshot(response)) => Ok(response),
            Ok(other) => Err(TransportError::Status(Status::new(
                Code::Internal,
                format!("unexpected {} for this call", other.proto_name()),
            ))),
            Err(error) => Err(error),
        };
        trace.finish(result.as_ref().err());
        result
    }

    /// Per peer, by address: its connections (each slot's state, those
    /// draining, connect failures and the last error), calls and pipelines
    /// in flight, gRPC bytes each way, and the snapshots being sent to it
    /// with their progress.
    pub fn stats(&self) -> Vec<PeerStats> {
        self.inner
            .client
            .read(|s| s.endpoint.peer_stats(std::time::Instant::now()))
    }

    /// How far the snapshots being sent to peers got.
    pub fn snapshot_progress(&self) -> Vec<SnapshotProgress> {
        self.inner
            .client
            .read(|s| s.progress.values().copied().collect())
    }

    /// Opens an AppendEntries pipeline to `target`: returns once its stream
    /// is open, or with the error that kept it from opening (the peer
    /// unreachable, say), so that a caller can fall back at once.
    pub async fn append_entries_pipeline(
        &self,
        target: &str,
    ) -> Result<Pipeline<R>, TransportError> {
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
            trace: observe::PipelineTrace::open(&self.inner.client.meters, target),
        };
        loop {
            let listener = pipeline.ready.listen();
            let state = self
                .inner
                .client
                .read(|s| s.pipelines.get(&id).map(|p| (p.opened, p.closed.clone())));
            match state {
                Some((_, Some(error))) => return Err(error),
                Some((true, None)) => return Ok(pipeline),
                Some((false, None)) => listener.await,
                None => return Err(TransportError::PipelineShutdown),
            }
        }
    }

    /// Removes a peer that left the cluster: its connections take no new
    /// call and close once the calls on them are done (at once when idle);
    /// a later call to it connects afresh, without the reconnect backoff it
    /// had.
    pub fn remove_peer(&self, target: &str) {
        self.inner
            .client
            .update(|s, now| s.endpoint.remove_peer(target, now));
    }

    /// Closes the transport: pending and later calls fail with
    /// [`TransportError::Shutdown`], the listener stops, connections close
    /// gracefully, RPCs the server still holds (queued for the consumer or
    /// delivered) are answered with the shutdown status (`UNAVAILABLE`),
    /// and the consumer ends. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.server.close();
        self.inner.client.update(|s, now| s.endpoint.close(now));
        self.inner.server.listeners_stopped().await;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

/// Builds a [`GrpcTransport`] that listens on nothing by itself.
pub struct Builder<R: Runtime> {
    /// `None`: `R::default()`, taken when the transport is built.
    runtime: Option<R>,
    local_addr: String,
    config: Config,
    /// `None`: TCP through the runtime.
    connector: Option<Connector<BoxIo>>,
    #[cfg(feature = "tls")]
    tls_server: Option<tls::TlsServer>,
    #[cfg(feature = "tls")]
    tls_client: Option<tls::TlsClient>,
}

/// `connector`'s streams with a TLS handshake on top.
#[cfg(feature = "tls")]
fn tls_connector(connector: Connector<BoxIo>, tls: tls::TlsClient) -> Connector<BoxIo> {
    Arc::new(move |peer: String| {
        let connect = connector(peer.clone());
        let tls = tls.clone();
        Box::pin(async move { tls.connect(&peer, connect.await?).await })
    })
}

/// A connector of the runtime's streams, as HTTP/2 takes them.
fn into_h2_connector<R: Runtime>(connector: Connector<R::Io>) -> Connector<BoxIo> {
    Arc::new(move |peer: String| {
        let connect = connector(peer);
        Box::pin(async move { connect.await.map(R::into_h2) })
    })
}

impl<R: Runtime> Builder<R> {
    /// Opens connections to peers with `connector` instead of plain TCP.
    pub fn connector(mut self, connector: Connector<R::Io>) -> Builder<R> {
        self.connector = Some(into_h2_connector::<R>(connector));
        self
    }

    /// Runs the transport on `runtime` instead of `R::default()`.
    pub fn runtime(mut self, runtime: R) -> Builder<R> {
        self.runtime = Some(runtime);
        self
    }

    /// Opens connections with a connector of ready HTTP/2 streams.
    pub(crate) fn h2_connector(mut self, connector: Connector<BoxIo>) -> Builder<R> {
        self.connector = Some(connector);
        self
    }

    /// Serves TLS (or mutual TLS) on every connection it accepts, from its
    /// listener or [`serve_connection`](GrpcTransport::serve_connection):
    /// a client that does not complete the handshake, or does not
    /// negotiate ALPN `h2`, is dropped, and the others are served on.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_server(mut self, tls: tls::TlsServer) -> Builder<R> {
        self.tls_server = Some(tls);
        self
    }

    /// Calls peers over TLS (or mutual TLS), on the streams its connector
    /// opens, and says `:scheme https`. A peer whose certificate does not
    /// verify, or that does not negotiate ALPN `h2`, fails the connect:
    /// its calls fail with `UNAVAILABLE` and a message naming the TLS
    /// error.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client(mut self, tls: tls::TlsClient) -> Builder<R> {
        self.tls_client = Some(tls);
        self
    }

    /// Binds a TCP listener on the builder's `local_addr` and serves on
    /// it; with port 0 the system picks one, and the transport's
    /// [`local_addr`](GrpcTransport::local_addr) is the bound address.
    pub async fn bind(mut self) -> io::Result<GrpcTransport<R>> {
        let runtime = self.runtime.clone().unwrap_or_default();
        let addr = match self.local_addr.parse() {
            Ok(addr) => addr,
            Err(_) => runtime.resolve(self.local_addr.clone()).await?,
        };
        let listener = runtime.bind(addr)?;
        self.local_addr = R::local_addr(&listener)?.to_string();
        self.runtime = Some(runtime);
        Ok(self.serve(listener))
    }

    /// The transport, serving on `listener`.
    pub fn serve(self, listener: R::Listener) -> GrpcTransport<R> {
        let transport = self.build();
        let runtime = transport.inner.runtime.clone();
        let server = transport.inner.server.clone();
        runtime.spawn(server::serve_listener(runtime.clone(), server, listener));
        transport
    }

    /// The transport.
    pub fn build(self) -> GrpcTransport<R> {
        let runtime = self.runtime.unwrap_or_default();
        let http2 = self.config.http2();
        let server = ServerShared::new(&runtime, self.config.server(), http2);
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls_server {
            // A new server: nothing set it before.
            let _ = server.tls.set(tls);
        }
        let connector = self
            .connector
            .unwrap_or_else(|| into_h2_connector::<R>(tcp_connector(runtime.clone())));
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut client_config = self.config.client();
        #[cfg(feature = "tls")]
        let connector = match self.tls_client {
            Some(tls) => {
                client_config.https = true;
                tls_connector(connector, tls)
            }
            None => connector,
        };
        let client = ClientShared::new(runtime.clone(), client_config, http2, connector);
        GrpcTransport {
            inner: Arc::new(Inner {
                runtime,
                local_addr: self.local_addr,
                client,
                server,
                closed: AtomicBool::new(false),
            }),
        }
    }
}

/// Cancels a call whose caller stopped waiting.
struct CancelOnDrop<'a, R: Runtime> {
    client: &'a Arc<ClientShared<R>>,
    call: Option<CallId>,
}

impl<'a, R: Runtime> CancelOnDrop<'a, R> {
    fn new(client: &'a Arc<ClientShared<R>>, call: CallId) -> Self {
        CancelOnDrop {
            client,
            call: Some(call),
        }
    }

    fn disarm(mut self) {
        self.call = None;
    }
}

impl<R: Runtime> Drop for CancelOnDrop<'_, R> {
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

/// Snapshot chunks an outgoing snapshot pushes without waiting before it
/// yields to the executor once.
const CHUNKS_BEFORE_YIELD: u32 = 16;

/// An AppendEntries pipeline to one peer: appends go out without waiting
/// for earlier answers, and complete in the order they were sent.
pub struct Pipeline<R: Runtime> {
    client: Arc<ClientShared<R>>,
    id: CallId,
    appended: async_channel::Receiver<(u64, Result<AppendEntriesResponse, TransportError>)>,
    ready: Arc<Event>,
    trace: observe::PipelineTrace,
}

impl<R: Runtime> std::fmt::Debug for Pipeline<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("id", &self.id).finish()
    }
}

impl<R: Runtime> Pipeline<R> {
    /// Sends an AppendEntries; waits while the window is full (this is the
    /// back-pressure). Returns the append's sequence number, which its
    /// completion carries.
    pub async fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        loop {
            let listener = self.ready.listen();
            let result = self.client.update(|s, now| {
                let result = s.endpoint.append(self.id, request, now);
                // A pipeline the endpoint forgot is over: its last event
                // said why.
                let closed = s.pipelines.get(&self.id).and_then(|p| p.closed.clone());
                (result, closed)
            });
            match result {
                (Ok(seq), _) => {
                    self.trace.appended();
                    return Ok(seq);
                }
                (Err(AppendError::Full), _) => listener.await,
                (Err(AppendError::Closed(error)), _) => return Err(error),
                (Err(AppendError::TooLarge(status)), _) => {
                    return Err(TransportError::Status(status));
                }
                (Err(_), Some(error)) => return Err(error),
                (Err(_), None) => return Err(TransportError::PipelineShutdown),
            }
        }
    }

    /// The next completion, in send order: the sequence number and the
    /// response or error. `None` once the pipeline is closed and every
    /// append has completed.
    pub async fn next(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        let completion = self.appended.recv().await.ok();
        if let Some((_, result)) = &completion {
            self.trace.completed(result.is_ok());
        }
        completion
    }

    /// Closes the pipeline: appends in flight complete with
    /// [`TransportError::PipelineShutdown`].
    pub fn close(&self) {
        self.client
            .update(|s, now| s.endpoint.close_pipeline(self.id, now));
    }
}

impl<R: Runtime> Drop for Pipeline<R> {
    fn drop(&mut self) {
        let closed = self.client.update(|s, now| {
            s.endpoint.close_pipeline(self.id, now);
            s.pipelines.remove(&self.id).and_then(|p| p.closed)
        });
        let error = closed.filter(|e| *e != TransportError::PipelineShutdown);
        self.trace.end(error.as_ref());
    }
}

impl<R: Runtime> Transport for GrpcTransport<R> {
    type Pipeline = Pipeline<R>;

    fn local_addr(&self) -> &str {
        GrpcTransport::local_addr(self)
    }

    async fn recv_rpc(&self) -> Option<Rpc> {
        Consumer::new(self.inner.server.clone()).recv().await
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        GrpcTransport::set_heartbeat_handler(self, handler)
    }

    async fn call(&self, target: &str, rpc: OutgoingRpc) -> Result<RaftResponse, TransportError> {
        GrpcTransport::call(self, target, rpc).await
    }

    async fn install_snapshot<D: AsyncRead + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        data: D,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        GrpcTransport::install_snapshot(self, target, meta, data).await
    }

    async fn append_entries_pipeline(&self, target: &str) -> Result<Pipeline<R>, TransportError> {
        GrpcTransport::append_entries_pipeline(self, target).await
    }

    fn remove_peer(&self, target: &str) {
        GrpcTransport::remove_peer(self, target)
    }

    async fn close(&self) {
        GrpcTransport::close(self).await
    }
}

impl<R: Runtime> AppendPipeline for Pipeline<R> {
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
