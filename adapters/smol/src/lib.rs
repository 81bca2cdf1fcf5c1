//! The Raft gRPC transport on smol / async-io, usable from any executor.
//!
//! [`GrpcTransport`] carries hashicorp/raft's RPCs — AppendEntries (single
//! and pipelined), RequestVote, RequestPreVote, TimeoutNow and streamed
//! InstallSnapshot — over gRPC, wire-compatible with the Go library
//! `raft-grpc-transport`. It is the driver crate
//! (`raft-grpc-transport-driver`) on the [`SmolRuntime`]: this crate is
//! only the runtime — tasks on smol's global executor, sockets and timers
//! on async-io's reactor — and the names of the driver's types for it.
//! The sans-IO core (`raft-grpc-transport`) decides everything.
//!
//! Because its tasks run on smol's executor threads and its I/O on
//! async-io's reactor thread, the futures it returns can be awaited from
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
//!
//! # Public surface
//!
//! * [`GrpcTransport`], its [`Builder`] and [`Pipeline`]: the driver's types
//!   on [`SmolRuntime`]; [`Config`] (the core's) configures them;
//! * [`Consumer`], [`IncomingPipeline`], [`PipelineHandler`] and the API
//!   crate's [`Rpc`], [`Responder`], [`SnapshotReader`], [`HeartbeatHandler`],
//!   [`Transport`], [`TransportError`]: what incoming and outgoing RPCs look
//!   like;
//! * [`Connector`], [`tcp_connector`], [`PeerStream`], [`SmolIo`], [`H2Io`]:
//!   bring-your-own streams (a TLS stream, a Unix socket, …);
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

mod io;

pub use io::H2Io;
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
pub use raft_grpc_transport_driver::{Consumer, IncomingPipeline, PipelineHandler};

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use async_io::{Async, Timer};
use raft_grpc_transport_driver::{BoxIo, Runtime};

/// The transport on smol.
pub type GrpcTransport = raft_grpc_transport_driver::GrpcTransport<SmolRuntime>;
/// Builds a [`GrpcTransport`] that listens on nothing by itself.
pub type Builder = raft_grpc_transport_driver::Builder<SmolRuntime>;
/// An AppendEntries pipeline of a [`GrpcTransport`].
pub type Pipeline = raft_grpc_transport_driver::Pipeline<SmolRuntime>;
/// Opens the byte stream to a peer address (TLS, a custom socket): any
/// futures-io stream, as [`SmolIo`].
pub type Connector = raft_grpc_transport_driver::Connector<SmolIo>;
/// The future a [`Connector`] returns.
pub type ConnectFuture = raft_grpc_transport_driver::ConnectFuture<SmolIo>;
/// An in-memory network of transports (see
/// `raft_grpc_transport_driver::inmem`).
pub type InmemNetwork = raft_grpc_transport_driver::inmem::InmemNetwork<SmolRuntime>;
/// A transport on an [`InmemNetwork`]: a [`GrpcTransport`] over in-memory
/// streams.
pub type InmemTransport = GrpcTransport;

/// A byte stream to a peer in the futures-io traits (a TCP socket under
/// async-io, a TLS stream of the futures world).
pub trait PeerStream:
    futures_lite::AsyncRead + futures_lite::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Send + Unpin + 'static> PeerStream
    for T
{
}

/// A [`PeerStream`], boxed: what [`GrpcTransport::serve_connection`] and
/// connectors take (`From` any [`PeerStream`]).
pub struct SmolIo(Box<dyn PeerStream>);

impl<T: PeerStream> From<T> for SmolIo {
    fn from(stream: T) -> Self {
        SmolIo(Box::new(stream))
    }
}

/// The default connector: TCP with TCP_NODELAY, through async-io.
pub fn tcp_connector() -> Connector {
    raft_grpc_transport_driver::tcp_connector(SmolRuntime)
}

/// smol's global executor for tasks, async-io's reactor for sockets and
/// timers, `blocking`'s pool for name resolution.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    type Io = SmolIo;
    type Listener = Async<TcpListener>;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        let timer = Timer::at(deadline);
        async move {
            timer.await;
        }
    }

    fn resolve(
        &self,
        address: String,
    ) -> impl Future<Output = std::io::Result<SocketAddr>> + Send + 'static {
        smol::unblock(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&address)?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{address} resolves to no address"),
                    )
                })
        })
    }

    // Not an `async fn`: the future must not borrow `self`.
    #[allow(clippy::manual_async_fn)]
    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = std::io::Result<SmolIo>> + Send + 'static {
        async move {
            let stream = Async::<TcpStream>::connect(addr).await?;
            stream.get_ref().set_nodelay(true)?;
            Ok(SmolIo::from(stream))
        }
    }

    fn bind(&self, addr: SocketAddr) -> std::io::Result<Async<TcpListener>> {
        Async::<TcpListener>::bind(addr)
    }

    fn local_addr(listener: &Async<TcpListener>) -> std::io::Result<SocketAddr> {
        listener.get_ref().local_addr()
    }

    async fn accept(
        &self,
        listener: &Async<TcpListener>,
    ) -> std::io::Result<(SmolIo, std::net::SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        stream.get_ref().set_nodelay(true)?;
        Ok((SmolIo::from(stream), remote))
    }

    fn into_h2(io: SmolIo) -> BoxIo {
        Box::new(H2Io(io.0))
    }

    /// Through the reactor: async-executor polls async-io's reactor only
    /// between batches of 200 task runs while it has work, so a task that
    /// only woke itself could keep another connection's I/O (a heartbeat
    /// behind a snapshot) waiting for milliseconds. The task goes on only
    /// once the reactor has fired a timer for it: that pass of the reactor
    /// also woke every task whose socket became ready.
    ///
    /// (A `Timer` alone is not enough: it completes on any poll after its
    /// instant, and the snapshot's consumer wakes the task at once.)
    fn yield_now(&self) -> impl Future<Output = ()> + Send + 'static {
        ThroughReactor {
            timer: Timer::after(std::time::Duration::from_micros(1)),
            fired: None,
        }
    }
}

/// [`SmolRuntime::yield_now`]'s future: ready once the reactor woke its
/// timer's own waker, whatever else woke the task before.
struct ThroughReactor {
    timer: Timer,
    /// Set when the timer is registered: whether the reactor fired it, and
    /// the task to wake then.
    fired: Option<Arc<Fired>>,
}

/// The waker the reactor fires.
struct Fired {
    done: AtomicBool,
    task: Mutex<Waker>,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.done.store(true, Ordering::Release);
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wake_by_ref();
    }
}

impl Future for ThroughReactor {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.fired {
            Some(fired) => {
                if fired.done.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                let mut task = fired.task.lock().unwrap_or_else(|e| e.into_inner());
                if !task.will_wake(cx.waker()) {
                    task.clone_from(cx.waker());
                }
                drop(task);
                // It may have fired meanwhile, with the old waker.
                if fired.done.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            None => {
                let fired = Arc::new(Fired {
                    done: AtomicBool::new(false),
                    task: Mutex::new(cx.waker().clone()),
                });
                let waker = Waker::from(fired.clone());
                // Polled once, with the waker only the reactor fires; never
                // again (a later poll would complete on the clock alone).
                if Pin::new(&mut self.timer)
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
                {
                    return Poll::Ready(());
                }
                self.fired = Some(fired);
                Poll::Pending
            }
        }
    }
}

/// The examples of this crate's `README.md`, compiled as doctests so that
/// the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
