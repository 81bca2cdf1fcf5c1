//! A blocking gRPC transport for Raft, for programs without an async
//! runtime.
//!
//! [`BlockingTransport`] is the transport (the h2 driver,
//! `raft-grpc-transport-driver`, on the [`BlockingRuntime`]) behind
//! blocking methods and std types: std listeners and streams in, `std::io`
//! readers for snapshots both ways, a blocking consumer shaped like
//! `std::sync::mpsc::Receiver`, a blocking pipeline. It depends on no async
//! executor or reactor crate.
//!
//! # Threads
//!
//! Every connection has a thread of its own, which waits in `epoll` for
//! its socket and runs the connection's HTTP/2 when it is ready; the
//! listener and each endpoint's timer have one too (see [`runtime`]). A
//! blocking method parks only its caller's thread, and the connection that
//! finishes the call wakes it directly: one wake-up each way, no executor
//! or reactor thread in between. Any number of threads may call at once.
//! The heartbeat handler runs on a connection's thread: it must not block.
//!
//! ```
//! use std::thread;
//! use raft_grpc_transport::message::{RequestVoteRequest, RpcHeader};
//! use raft_grpc_transport_blocking::{BlockingTransport, Config};
//!
//! let follower = BlockingTransport::bind("127.0.0.1:0", Config::default())?;
//! let consumer = follower.consumer();
//! thread::spawn(move || {
//!     for rpc in consumer.iter() {
//!         rpc.answer_reference(RpcHeader::default());
//!     }
//! });
//!
//! let leader = BlockingTransport::bind("127.0.0.1:0", Config::default())?;
//! let vote = leader.request_vote(follower.local_addr(), RequestVoteRequest { term: 3, ..Default::default() })?;
//! assert!(vote.granted);
//! leader.close();
//! follower.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Public surface
//!
//! * [`BlockingTransport`] (= [`Blocking`] over [`GrpcTransport`]): every
//!   RPC as a blocking method; [`Blocking`] puts any `Transport` (a
//!   `MigrationTransport`, an [`InmemTransport`]) behind the same methods;
//!   [`Config`] (the core's) configures it; [`Builder`] with
//!   [`BlockingTransport::bind_builder`] adds TLS (the `tls` module, cargo
//!   feature `tls`) or a custom connector;
//! * `metrics` (cargo feature `metrics`): the names of the metrics the
//!   transport records; the cargo feature `tracing` adds spans and events;
//! * [`Consumer`], [`Rpc`], [`SnapshotReader`] (a `std::io::Read`),
//!   [`Responder`], [`HeartbeatHandler`], [`IncomingPipeline`],
//!   [`PipelineHandler`]: incoming RPCs; [`Pipeline`] ([`BlockingPipeline`]):
//!   outgoing pipelines; [`TransportError`]: failed calls;
//! * [`runtime`]: [`BlockingRuntime`], [`BlockingIo`], [`BlockingListener`],
//!   [`block_on`], [`block_on_until`]; [`Connector`], [`tcp_connector`]:
//!   bring-your-own streams;
//! * [`InmemNetwork`], [`InmemConfig`], [`InmemTransport`]: the transport
//!   over in-memory streams, for tests.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod runtime;

use std::io::{self, Read};
use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_grpc_transport::Status;
use raft_grpc_transport::client::{OutgoingRpc, UnaryRequest};
pub use raft_grpc_transport::config::Config;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftRequest, RaftResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, RpcHeader, TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::snapshot::SnapshotProgress;
use raft_grpc_transport_api::migration::MigrationTransport;
use raft_grpc_transport_api::{AppendPipeline, Transport};
pub use raft_grpc_transport_api::{HeartbeatHandler, Responder, TransportError};
pub use raft_grpc_transport_driver::inmem::InmemConfig;
/// The metrics the transport records (cargo feature `metrics`): their
/// names, labels and meaning.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use raft_grpc_transport_driver::metrics;
/// TLS and mutual TLS (cargo feature `tls`): give a `TlsServer` and a
/// `TlsClient` to the transport's builder.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use raft_grpc_transport_driver::tls;
pub use raft_grpc_transport_driver::{
    AuthorizationRequest, Authorizer, IncomingPipeline, PeerInfo, PipelineHandler,
};
pub use runtime::{BlockingIo, BlockingListener, BlockingRuntime, block_on, block_on_until};

/// The async transport on the blocking runtime (for code that awaits, or
/// that wraps it, as [`Blocking`] does).
pub type GrpcTransport = raft_grpc_transport_driver::GrpcTransport<BlockingRuntime>;
/// Opens the byte stream to a peer address (a custom socket): any
/// [`BlockingIo`].
pub type Connector = raft_grpc_transport_driver::Connector<BlockingIo>;
/// An in-memory network of transports on the blocking runtime.
pub type InmemNetwork = raft_grpc_transport_driver::inmem::InmemNetwork<BlockingRuntime>;
/// A transport on an [`InmemNetwork`].
pub type InmemTransport = GrpcTransport;

/// The default connector: TCP with TCP_NODELAY.
pub fn tcp_connector() -> Connector {
    raft_grpc_transport_driver::tcp_connector(BlockingRuntime)
}

/// Builds a [`GrpcTransport`] (TLS, a connector, the runtime);
/// [`BlockingTransport::bind_builder`] binds and serves it.
pub type Builder = raft_grpc_transport_driver::Builder<BlockingRuntime>;

/// The gRPC transport with blocking methods: [`Blocking`] over
/// [`GrpcTransport`], with std listeners and streams in and an
/// mpsc-shaped [`Consumer`]. Cheap to clone; every clone is the same
/// transport.
pub type BlockingTransport = Blocking<GrpcTransport>;

impl Blocking<GrpcTransport> {
    /// Binds a TCP listener on `addr` and serves on it (port 0: the system
    /// picks one; [`local_addr`](Self::local_addr) says which).
    pub fn bind(addr: &str, config: Config) -> io::Result<BlockingTransport> {
        block_on(GrpcTransport::bind(addr, config)).map(Blocking::new)
    }

    /// Binds the builder's `local_addr` and serves on it: the way to a
    /// blocking transport with TLS (`Builder::tls_server`,
    /// `Builder::tls_client`) or a custom connector.
    pub fn bind_builder(builder: Builder) -> io::Result<BlockingTransport> {
        block_on(builder.bind()).map(Blocking::new)
    }

    /// Serves on a std listener you bound.
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: Config,
    ) -> io::Result<BlockingTransport> {
        Ok(Blocking::new(GrpcTransport::from_listener(
            BlockingListener::from_std(listener)?,
            config,
        )?))
    }

    /// A transport that listens on nothing by itself (give it connections
    /// with [`serve_connection`](Self::serve_connection)); `local_addr` is
    /// the address peers know it by, `connector` opens its connections
    /// (`None`: TCP with TCP_NODELAY).
    pub fn unbound(
        local_addr: impl Into<String>,
        config: Config,
        connector: Option<Connector>,
    ) -> BlockingTransport {
        let builder = GrpcTransport::builder(local_addr, config);
        let builder = match connector {
            Some(connector) => builder.connector(connector),
            None => builder,
        };
        Blocking::new(builder.build())
    }

    /// Serves the Raft service on an accepted std stream, in the
    /// background, until it closes.
    pub fn serve_connection(&self, stream: std::net::TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        self.inner.serve_connection(stream);
        Ok(())
    }

    /// Asks `authorizer` about every stream a peer opens (see
    /// `GrpcTransport::set_authorizer`).
    pub fn set_authorizer(&self, authorizer: Option<Authorizer>) {
        self.inner.set_authorizer(authorizer);
    }

    /// Sends `metadata` with every request (see
    /// `GrpcTransport::set_request_metadata`).
    pub fn set_request_metadata(
        &self,
        metadata: http::HeaderMap,
    ) -> Result<(), raft_grpc_transport::metadata::ReservedMetadataError> {
        self.inner.set_request_metadata(metadata)
    }

    /// Hands every AppendEntries pipeline stream a peer opens to `handler`
    /// (see `GrpcTransport::set_pipeline_handler`).
    pub fn set_pipeline_handler(&self, handler: Option<PipelineHandler>) {
        self.inner.set_pipeline_handler(handler);
    }

    /// Where incoming RPCs arrive, shaped like `std::sync::mpsc::Receiver`.
    /// Every handle shares one queue.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            inner: self.inner.consumer(),
        }
    }

    /// How far the snapshots being sent got.
    pub fn snapshot_progress(&self) -> Vec<SnapshotProgress> {
        self.inner.snapshot_progress()
    }

    /// Per peer: connections, calls in flight, bytes each way, snapshots
    /// (see [`GrpcTransport::stats`]).
    pub fn stats(&self) -> Vec<raft_grpc_transport::client::PeerStats> {
        self.inner.stats()
    }
}

/// One incoming RPC, with its snapshot data (for InstallSnapshot) as a
/// `std::io::Read`. `#[non_exhaustive]`, as the async [`Rpc`](raft_grpc_transport_api::Rpc).
#[derive(Debug)]
#[non_exhaustive]
pub struct Rpc {
    /// The request.
    pub request: RaftRequest,
    /// Answers it (never blocks).
    pub responder: Responder,
    /// For InstallSnapshot, the snapshot's data: read it to its end (it
    /// fails if fewer or more bytes than declared arrive, or a checksum
    /// does not match).
    pub snapshot: Option<SnapshotReader>,
    /// Who sent it (see the async `Rpc::peer`).
    pub peer: std::sync::Arc<PeerInfo>,
}

impl Rpc {
    fn from_async(rpc: raft_grpc_transport_api::Rpc) -> Rpc {
        Rpc {
            request: rpc.request,
            responder: rpc.responder,
            snapshot: rpc.snapshot.map(|inner| SnapshotReader { inner }),
            peer: rpc.peer,
        }
    }

    /// Answers the RPC; false if the call is already over.
    pub fn respond(self, result: Result<RaftResponse, Status>) -> bool {
        self.responder.respond(result)
    }

    /// Answers the way `node serve` does (`raft_grpc_transport::reference`),
    /// reading a snapshot first.
    pub fn answer_reference(self, header: RpcHeader) -> bool {
        let rpc = raft_grpc_transport_api::Rpc::from_peer(
            self.request,
            self.responder,
            self.snapshot.map(|s| s.inner),
            self.peer,
        );
        block_on(raft_grpc_transport_api::reference::answer(rpc, header))
    }
}

/// An incoming snapshot's data as a blocking reader.
#[derive(Debug)]
pub struct SnapshotReader {
    inner: raft_grpc_transport_api::SnapshotReader,
}

impl SnapshotReader {
    /// The next chunk as it arrived, without a copy; `None` at the end.
    pub fn chunk(&mut self) -> io::Result<Option<Bytes>> {
        block_on(self.inner.chunk())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    /// The snapshot's declared size.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        block_on(std::future::poll_fn(|cx| {
            futures_io::AsyncRead::poll_read(std::pin::Pin::new(&mut *inner), cx, buf)
        }))
    }
}

/// The blocking side of the consumer queue, shaped like
/// `std::sync::mpsc::Receiver`. Cloning gives another handle on the same
/// queue.
#[derive(Debug, Clone)]
pub struct Consumer {
    inner: raft_grpc_transport_driver::Consumer,
}

impl Consumer {
    /// Waits for the next RPC; `Err` once the transport is closed.
    pub fn recv(&self) -> Result<Rpc, RecvError> {
        block_on(self.inner.recv())
            .map(Rpc::from_async)
            .ok_or(RecvError)
    }

    /// Waits at most `timeout` for the next RPC.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Rpc, RecvTimeoutError> {
        match block_on_until(self.inner.recv(), Some(Instant::now() + timeout)) {
            Some(Some(rpc)) => Ok(Rpc::from_async(rpc)),
            Some(None) => Err(RecvTimeoutError::Disconnected),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// The next RPC if one is waiting.
    pub fn try_recv(&self) -> Result<Rpc, TryRecvError> {
        match self.inner.try_recv() {
            Some(rpc) => Ok(Rpc::from_async(rpc)),
            None if self.inner.is_closed() => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Every RPC until the transport closes.
    pub fn iter(&self) -> impl Iterator<Item = Rpc> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }
}

impl IntoIterator for Consumer {
    type Item = Rpc;
    type IntoIter = Box<dyn Iterator<Item = Rpc> + Send>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(std::iter::from_fn(move || self.recv().ok()))
    }
}

/// The gRPC transport's blocking pipeline.
pub type Pipeline = BlockingPipeline<raft_grpc_transport_driver::Pipeline<BlockingRuntime>>;

/// A `std::io::Read` seen as an `AsyncRead` whose reads complete at once:
/// they block the calling thread, which is blocked in the call anyway.
struct StdRead<R>(R);

impl<R: Read + Unpin> futures_io::AsyncRead for StdRead<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(self.0.read(buf))
    }
}

/// Any [`Transport`] — the gRPC one ([`BlockingTransport`]), a
/// `MigrationTransport`, an `InmemTransport` — behind blocking methods.
/// Each call parks only its caller's thread.
#[derive(Debug, Clone)]
pub struct Blocking<T> {
    inner: T,
}

impl<T: Transport> Blocking<T> {
    /// Wraps `transport`.
    pub fn new(transport: T) -> Self {
        Blocking { inner: transport }
    }

    /// The transport underneath (the async one, for code that has a
    /// runtime).
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The address peers reach it at.
    pub fn local_addr(&self) -> &str {
        self.inner.local_addr()
    }

    /// Waits for the next incoming RPC; `None` once it is closed.
    pub fn recv(&self) -> Option<Rpc> {
        block_on(self.inner.recv_rpc()).map(Rpc::from_async)
    }

    /// Waits at most `timeout` for the next incoming RPC.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Rpc, RecvTimeoutError> {
        let received = block_on_until(self.inner.recv_rpc(), Some(Instant::now() + timeout));
        match received {
            Some(Some(rpc)) => Ok(Rpc::from_async(rpc)),
            Some(None) => Err(RecvTimeoutError::Disconnected),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Answers heartbeats with `handler` instead of the consumer.
    pub fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        self.inner.set_heartbeat_handler(handler);
    }

    /// Sends one unary RPC of any kind and waits for its answer.
    pub fn call(&self, target: &str, rpc: OutgoingRpc) -> Result<RaftResponse, TransportError> {
        block_on(self.inner.call(target, rpc))
    }

    /// Sends a unary request and waits for its typed response.
    pub fn unary<Q: UnaryRequest + Send>(
        &self,
        target: &str,
        request: Q,
    ) -> Result<Q::Response, TransportError> {
        block_on(self.inner.unary(target, request))
    }

    /// Sends AppendEntries and waits for the answer.
    pub fn append_entries(
        &self,
        target: &str,
        request: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError> {
        self.unary(target, request)
    }

    /// Sends RequestVote and waits for the answer.
    pub fn request_vote(
        &self,
        target: &str,
        request: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError> {
        self.unary(target, request)
    }

    /// Sends RequestPreVote and waits for the answer.
    pub fn request_pre_vote(
        &self,
        target: &str,
        request: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError> {
        self.unary(target, request)
    }

    /// Sends TimeoutNow and waits for the answer.
    pub fn timeout_now(
        &self,
        target: &str,
        request: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError> {
        self.unary(target, request)
    }

    /// Streams a snapshot read from `data` (on this thread).
    pub fn install_snapshot(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        data: impl Read + Unpin + Send,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        block_on(self.inner.install_snapshot(target, meta, StdRead(data)))
    }

    /// Opens an AppendEntries pipeline to `target`.
    pub fn append_entries_pipeline(
        &self,
        target: &str,
    ) -> Result<BlockingPipeline<T::Pipeline>, TransportError> {
        block_on(self.inner.append_entries_pipeline(target)).map(|inner| BlockingPipeline { inner })
    }

    /// Serializes a peer's address.
    pub fn encode_peer(&self, id: &str, addr: &str) -> Bytes {
        self.inner.encode_peer(id, addr)
    }

    /// Reads a peer's address back.
    pub fn decode_peer(&self, peer: &[u8]) -> String {
        self.inner.decode_peer(peer)
    }

    /// Removes a peer that left the cluster: its connections close once
    /// the calls on them are done; a later call to it connects afresh.
    pub fn remove_peer(&self, target: &str) {
        self.inner.remove_peer(target);
    }

    /// Closes the transport. Idempotent.
    pub fn close(&self) {
        block_on(self.inner.close());
    }
}

impl<P: Transport, S: Transport> Blocking<MigrationTransport<P, S>> {
    /// Streams a snapshot opened by `open`: on the primary, and again from
    /// a freshly opened reader on the secondary when the primary's error
    /// says so.
    pub fn install_snapshot_from<R: Read + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        mut open: impl FnMut() -> io::Result<R> + Send,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        block_on(
            self.inner
                .install_snapshot_from(target, meta, move || open().map(StdRead)),
        )
    }
}

/// A pipeline of a [`Blocking`] transport: appends wait only while the
/// window is full; completions come in send order.
#[derive(Debug)]
pub struct BlockingPipeline<P> {
    inner: P,
}

impl<P: AppendPipeline> BlockingPipeline<P> {
    /// Sends an AppendEntries, waiting while the window is full.
    pub fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        block_on(self.inner.append(request))
    }

    /// Waits for the next completion, in send order.
    pub fn next_completion(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        block_on(self.inner.next())
    }

    /// Every completion, in send order, until the pipeline closes.
    pub fn completions(
        &self,
    ) -> impl Iterator<Item = (u64, Result<AppendEntriesResponse, TransportError>)> + '_ {
        std::iter::from_fn(move || self.next_completion())
    }

    /// Closes the pipeline: appends in flight complete with
    /// [`TransportError::PipelineShutdown`].
    pub fn close(&self) {
        self.inner.close();
    }
}

/// The examples of this crate's `README.md`, compiled as doctests so that
/// the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
