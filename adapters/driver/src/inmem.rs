//! An in-memory network of transports, for tests, as hashicorp/raft has
//! one.
//!
//! [`InmemNetwork`] connects any number of transports by address with no
//! sockets: each is a real [`GrpcTransport`], and a connect opens an
//! in-memory duplex stream to the target's server, so every call runs the
//! same endpoints, HTTP/2 and semantics as over TCP (deadlines, the
//! pipeline window, snapshot sizes, heartbeat routing, shutdown). Links
//! can be cut and restored at will to simulate partitions: cutting one
//! breaks its streams at once (calls in flight fail with `UNAVAILABLE`)
//! and refuses new connects until it is restored.

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use raft_grpc_transport::pool::Backoff;

use crate::runtime::{BoxIo, Connector};
use crate::server::{self, ServerShared};
use crate::{Config, GrpcTransport, Runtime};

/// Bytes an in-memory stream buffers in each direction.
const PIPE_BUFFER: usize = 256 * 1024;

/// Settings of an in-memory transport: start from `Default` and use the
/// `with_*` setters (or assign fields); `#[non_exhaustive]`, so settings
/// can be added without a breaking change.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InmemConfig {
    /// Deadline of an RPC (default 10 s); snapshots scale it by size.
    pub rpc_timeout: Duration,
    /// Appends in flight on one pipeline (default 64).
    pub pipeline_window: usize,
    /// Snapshot bytes per message (default 64 KiB).
    pub snapshot_chunk_size: usize,
}

impl Default for InmemConfig {
    fn default() -> Self {
        InmemConfig {
            rpc_timeout: Duration::from_secs(10),
            pipeline_window: 64,
            snapshot_chunk_size: 64 * 1024,
        }
    }
}

impl InmemConfig {
    /// Sets [`rpc_timeout`](Self::rpc_timeout).
    pub fn with_rpc_timeout(mut self, rpc_timeout: Duration) -> Self {
        self.rpc_timeout = rpc_timeout;
        self
    }

    /// Sets [`pipeline_window`](Self::pipeline_window).
    pub fn with_pipeline_window(mut self, pipeline_window: usize) -> Self {
        self.pipeline_window = pipeline_window;
        self
    }

    /// Sets [`snapshot_chunk_size`](Self::snapshot_chunk_size).
    pub fn with_snapshot_chunk_size(mut self, snapshot_chunk_size: usize) -> Self {
        self.snapshot_chunk_size = snapshot_chunk_size;
        self
    }

    /// The transport's configuration: the defaults, these settings, and no
    /// reconnect backoff (a connect costs nothing here, and a healed
    /// partition should carry the next call).
    pub fn config(&self) -> Config {
        Config::default()
            .with_rpc_timeout(self.rpc_timeout)
            .with_pipeline_window(self.pipeline_window)
            .with_snapshot_chunk_size(self.snapshot_chunk_size)
            .with_backoff(Backoff::none())
    }
}

/// The in-memory network the transports live on. Cheap to clone.
pub struct InmemNetwork<R: Runtime> {
    runtime: R,
    state: Arc<Mutex<NetState>>,
}

impl<R: Runtime> Default for InmemNetwork<R> {
    fn default() -> Self {
        InmemNetwork::new()
    }
}

impl<R: Runtime> Clone for InmemNetwork<R> {
    fn clone(&self) -> Self {
        InmemNetwork {
            runtime: self.runtime.clone(),
            state: self.state.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for InmemNetwork<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InmemNetwork").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct NetState {
    nodes: HashMap<String, Weak<ServerShared>>,
    cut: HashSet<(String, String)>,
    /// The streams open on each link, to break when it is cut.
    streams: Vec<((String, String), Arc<Severance>)>,
}

fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl<R: Runtime> InmemNetwork<R> {
    /// An empty network.
    pub fn new() -> Self {
        InmemNetwork::on(R::default())
    }

    /// An empty network whose transports run on `runtime`.
    pub fn on(runtime: R) -> Self {
        InmemNetwork {
            runtime,
            state: Arc::default(),
        }
    }

    /// A transport at `addr` on this network.
    pub fn transport(&self, addr: &str, config: InmemConfig) -> GrpcTransport<R> {
        let from = addr.to_owned();
        let net = self.clone();
        let connector: Connector<BoxIo> = Arc::new(move |to: String| {
            let opened = net.open(&from, &to);
            Box::pin(async move { opened })
        });
        let transport = GrpcTransport::builder(addr, config.config())
            .runtime(self.runtime.clone())
            .h2_connector(connector)
            .build();
        self.lock()
            .nodes
            .insert(addr.to_owned(), Arc::downgrade(&transport.inner.server));
        transport
    }

    /// Opens a stream from `from` to `to`'s server.
    fn open(&self, from: &str, to: &str) -> io::Result<BoxIo> {
        let mut state = self.lock();
        let refused =
            |why: &str| io::Error::new(io::ErrorKind::ConnectionRefused, format!("{to}: {why}"));
        if state.cut.contains(&link(from, to)) {
            return Err(refused("network partition"));
        }
        let server = match state.nodes.get(to).and_then(Weak::upgrade) {
            Some(server) if !server.is_closed() => server,
            _ => return Err(refused("connection refused")),
        };
        let (client_end, server_end) = tokio::io::duplex(PIPE_BUFFER);
        let severance = Arc::new(Severance::default());
        state.streams.retain(|(_, s)| !s.is_cut());
        state.streams.push((link(from, to), severance.clone()));
        drop(state);
        let server_end = Severable::new(server_end, severance.clone(), 0);
        self.runtime.spawn(server::serve_connection(
            self.runtime.clone(),
            server,
            Box::new(server_end),
            None,
        ));
        Ok(Box::new(Severable::new(client_end, severance, 1)))
    }

    /// Cuts the link between `a` and `b`: calls either way fail with
    /// `UNAVAILABLE`, those in flight too.
    pub fn disconnect(&self, a: &str, b: &str) {
        let mut state = self.lock();
        let link = link(a, b);
        for (l, severance) in &state.streams {
            if *l == link {
                severance.cut();
            }
        }
        state.cut.insert(link);
    }

    /// Restores the link between `a` and `b`.
    pub fn connect(&self, a: &str, b: &str) {
        self.lock().cut.remove(&link(a, b));
    }

    /// Cuts every link of `addr`.
    pub fn isolate(&self, addr: &str) {
        let others: Vec<String> = self
            .lock()
            .nodes
            .keys()
            .filter(|n| *n != addr)
            .cloned()
            .collect();
        for other in others {
            self.disconnect(addr, &other);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a link was cut, and who to wake when it is.
#[derive(Default)]
struct Severance {
    cut: AtomicBool,
    /// The read and write wakers of both ends.
    wakers: Mutex<[Option<Waker>; 4]>,
}

impl Severance {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    fn register(&self, slot: usize, cx: &Context<'_>) {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some(cx.waker().clone());
    }
}

/// One end of an in-memory stream that breaks when its link is cut.
struct Severable {
    io: tokio::io::DuplexStream,
    severance: Arc<Severance>,
    /// Which end (0 or 1): its waker slots are `2 × end` (read) and
    /// `2 × end + 1` (write).
    end: usize,
}

impl Severable {
    fn new(io: tokio::io::DuplexStream, severance: Arc<Severance>, end: usize) -> Self {
        Severable { io, severance, end }
    }

    fn broken<T>(&self) -> Poll<io::Result<T>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "network partition",
        )))
    }
}

impl tokio::io::AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.severance.is_cut() {
            return self.broken();
        }
        self.severance.register(2 * self.end, cx);
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.severance.is_cut() {
            return self.broken();
        }
        self.severance.register(2 * self.end + 1, cx);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
