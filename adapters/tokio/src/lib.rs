//! The Raft gRPC transport on tokio.
//!
//! [`GrpcTransport`] carries hashicorp/raft's RPCs — AppendEntries (single
//! and pipelined), RequestVote, RequestPreVote, TimeoutNow and streamed
//! InstallSnapshot — over gRPC, wire-compatible with the Go library
//! `raft-grpc-transport`. It is the driver crate
//! (`raft-grpc-transport-driver`) on the [`TokioRuntime`]: this crate owns
//! only the runtime — tasks spawned on a tokio runtime [`Handle`], sockets
//! and name resolution on its reactor, timers on its time driver — and the
//! names of the driver's types for it. The sans-IO core
//! (`raft-grpc-transport`) decides everything.
//!
//! A [`TokioRuntime`] holds the handle of the runtime it runs on, so a
//! transport created inside a tokio runtime keeps running there, and the
//! futures it returns can be awaited from anywhere: that runtime's tasks,
//! another runtime, or a plain `block_on` on a thread of your own. The
//! runtime must be running for the transport to make progress (a
//! `current_thread` runtime runs its tasks only while a thread is inside
//! its `block_on`). The runtime needs its I/O and time drivers
//! (`enable_all`).
//!
//! ```
//! use raft_grpc_transport::message::{RaftRequest, RaftResponse, RequestVoteRequest, RequestVoteResponse};
//! use raft_grpc_transport_tokio::{Config, GrpcTransport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let follower = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
//!     let leader = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
//!
//!     // The follower's Raft loop: answer what arrives.
//!     let consumer = follower.consumer();
//!     tokio::spawn(async move {
//!         while let Some(rpc) = consumer.recv().await {
//!             if let RaftRequest::RequestVote(request) = &rpc.request {
//!                 let term = request.term;
//!                 rpc.respond(Ok(RaftResponse::RequestVote(RequestVoteResponse { term, granted: true, ..Default::default() })));
//!             }
//!         }
//!     });
//!
//!     let vote = leader
//!         .request_vote(follower.local_addr(), RequestVoteRequest { term: 2, ..Default::default() })
//!         .await?;
//!     assert!(vote.granted);
//!     leader.close().await;
//!     follower.close().await;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Outside a runtime, name the runtime yourself with
//! [`TokioRuntime::new`] and the driver's `*_on` constructors (or
//! `Builder::runtime`):
//!
//! ```
//! use raft_grpc_transport_tokio::{Config, GrpcTransport, TokioRuntime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! let tokio = TokioRuntime::new(runtime.handle().clone());
//! let transport =
//!     futures_lite::future::block_on(GrpcTransport::bind_on(tokio, "127.0.0.1:0", Config::default()))?;
//! // Awaited on a thread that is no part of the runtime.
//! futures_lite::future::block_on(transport.close());
//! # Ok(())
//! # }
//! ```
//!
//! # Public surface
//!
//! * [`GrpcTransport`], its [`Builder`] and [`Pipeline`]: the driver's types
//!   on [`TokioRuntime`]; [`Config`] (the core's) configures them;
//! * [`Consumer`], [`IncomingPipeline`], [`PipelineHandler`] and the API
//!   crate's [`Rpc`], [`Responder`], [`SnapshotReader`], [`HeartbeatHandler`],
//!   [`Transport`], [`TransportError`]: what incoming and outgoing RPCs look
//!   like;
//! * [`Connector`], [`tcp_connector`], [`PeerIo`], [`TokioIo`]:
//!   bring-your-own streams;
//! * [`InmemNetwork`], [`InmemConfig`], [`InmemTransport`]: the transport
//!   over in-memory streams, for tests;
//! * `tls` (cargo feature `tls`): `TlsServer` and `TlsClient` for the
//!   [`Builder`]'s `tls_server` and `tls_client`.
//! * `metrics` (cargo feature `metrics`): the names of the metrics the
//!   transport records through the `metrics` facade; the cargo feature
//!   `tracing` adds spans and events (the README's "Observability").

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use raft_grpc_transport::config::Config;
pub use raft_grpc_transport_api::{
    AppendPipeline, HeartbeatHandler, Responder, Rpc, SnapshotReader, Transport, TransportError,
};
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
pub use raft_grpc_transport_driver::{AuthorizationRequest, Authorizer, PeerInfo};
pub use raft_grpc_transport_driver::{Consumer, IncomingPipeline, PeerIo, PipelineHandler};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use raft_grpc_transport_driver::{BoxIo, Runtime};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

/// The transport on tokio.
pub type GrpcTransport = raft_grpc_transport_driver::GrpcTransport<TokioRuntime>;
/// Builds a [`GrpcTransport`] that listens on nothing by itself.
pub type Builder = raft_grpc_transport_driver::Builder<TokioRuntime>;
/// An AppendEntries pipeline of a [`GrpcTransport`].
pub type Pipeline = raft_grpc_transport_driver::Pipeline<TokioRuntime>;
/// Opens the byte stream to a peer address (TLS, a custom socket): any
/// tokio stream, as [`TokioIo`].
pub type Connector = raft_grpc_transport_driver::Connector<TokioIo>;
/// The future a [`Connector`] returns.
pub type ConnectFuture = raft_grpc_transport_driver::ConnectFuture<TokioIo>;
/// An in-memory network of transports (see
/// `raft_grpc_transport_driver::inmem`).
pub type InmemNetwork = raft_grpc_transport_driver::inmem::InmemNetwork<TokioRuntime>;
/// A transport on an [`InmemNetwork`]: a [`GrpcTransport`] over in-memory
/// streams.
pub type InmemTransport = GrpcTransport;

/// A byte stream to a peer in tokio's I/O traits (a `tokio::net::TcpStream`,
/// a `tokio-rustls` stream, a `tokio::io::duplex` end), boxed: what
/// [`GrpcTransport::serve_connection`] and connectors take (`From` any
/// [`PeerIo`]).
///
/// HTTP/2 runs over the box as it is, vectored writes included.
pub struct TokioIo(BoxIo);

impl<T: PeerIo> From<T> for TokioIo {
    fn from(stream: T) -> Self {
        TokioIo(Box::new(stream))
    }
}

impl std::fmt::Debug for TokioIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioIo").finish_non_exhaustive()
    }
}

/// The default connector: TCP with TCP_NODELAY, on the runtime of the
/// current context.
///
/// # Panics
///
/// Outside a tokio runtime context; use [`TokioRuntime::tcp_connector`]
/// there.
pub fn tcp_connector() -> Connector {
    TokioRuntime::default().tcp_connector()
}

/// A tokio runtime, by its [`Handle`]: tasks are spawned on it, sockets
/// and name resolution use its reactor, timers its time driver.
///
/// Its futures enter the handle while they are polled, so they work when
/// awaited outside any runtime (or inside another one). The runtime must
/// have its I/O and time drivers enabled.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Handle,
}

impl Default for TokioRuntime {
    /// The runtime of the current context, [`Handle::current`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime context; use [`TokioRuntime::new`] there.
    fn default() -> Self {
        TokioRuntime::new(Handle::current())
    }
}

impl TokioRuntime {
    /// The runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        TokioRuntime { handle }
    }

    /// The runtime of the current context, or `None` outside one.
    pub fn try_current() -> Option<Self> {
        Handle::try_current().ok().map(TokioRuntime::new)
    }

    /// The handle of the runtime it runs on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The default connector on this runtime: TCP with TCP_NODELAY.
    pub fn tcp_connector(&self) -> Connector {
        raft_grpc_transport_driver::tcp_connector(self.clone())
    }

    /// `future`, polled with this runtime entered.
    fn entered<F: Future>(&self, future: F) -> Entered<F> {
        Entered {
            handle: self.handle.clone(),
            future: Box::pin(future),
        }
    }
}

/// A future polled with a runtime entered: tokio's sockets register with
/// the reactor of the context they are created in, and its blocking pool
/// (which name resolution uses) is the current context's.
struct Entered<F> {
    handle: Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Entered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.future.as_mut().poll(cx)
    }
}

fn nodelay(stream: TcpStream) -> io::Result<TokioIo> {
    stream.set_nodelay(true)?;
    Ok(TokioIo::from(stream))
}

impl Runtime for TokioRuntime {
    type Io = TokioIo;
    type Listener = TcpListener;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        drop(self.handle.spawn(future));
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        // A `Sleep` takes the time driver of the context it is made in, and
        // the driver may ask for it from any thread.
        let _entered = self.handle.enter();
        tokio::time::sleep_until(deadline.into())
    }

    fn resolve(
        &self,
        address: String,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send + 'static {
        self.entered(async move {
            tokio::net::lookup_host(address.as_str())
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{address} resolves to no address"),
                    )
                })
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<TokioIo>> + Send + 'static {
        self.entered(async move { nodelay(TcpStream::connect(addr).await?) })
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let _entered = self.handle.enter();
        TcpListener::from_std(listener)
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn accept<'a>(
        &'a self,
        listener: &'a TcpListener,
    ) -> impl Future<Output = io::Result<(TokioIo, SocketAddr)>> + Send + 'a {
        // The accepted socket registers with the reactor of the context it
        // is polled in: the transport's, whoever polls.
        self.entered(async move {
            let (stream, remote) = listener.accept().await?;
            Ok((nodelay(stream)?, remote))
        })
    }

    fn into_h2(io: TokioIo) -> BoxIo {
        io.0
    }
}

/// The examples of this crate's `README.md`, compiled as doctests so that
/// the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
