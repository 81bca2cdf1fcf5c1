//! What the driver needs from a runtime, and nothing more.
//!
//! This module owns the [`Runtime`] trait — spawn a task, a timer at an
//! instant, resolve a name, connect, bind and accept, and hand a stream to
//! HTTP/2 — and the byte-stream types the driver runs HTTP/2 over
//! ([`PeerIo`], [`BoxIo`]) and opens them with ([`Connector`]). Each
//! backend (smol, tokio, plain threads) is an implementation of it in a
//! crate of its own; the driver is written once against it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A byte stream HTTP/2 runs over, in the I/O traits h2 is written
/// against (tokio's, which need no tokio runtime).
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// A boxed [`PeerIo`].
pub type BoxIo = Box<dyn PeerIo>;

/// The future a [`Connector`] returns.
pub type ConnectFuture<Io> = Pin<Box<dyn Future<Output = io::Result<Io>> + Send>>;

/// Opens the byte stream to a peer address; the transport runs HTTP/2 over
/// it. The default resolves the address and connects with TCP
/// (TCP_NODELAY on); put TLS or a custom socket underneath with your own.
pub type Connector<Io> = Arc<dyn Fn(String) -> ConnectFuture<Io> + Send + Sync>;

/// A runtime the driver can run on: the few things it cannot do itself.
///
/// Every future it returns must make progress without being polled from
/// inside this runtime's own executor (a caller may await the transport's
/// futures from anywhere). `Default` gives the runtime transports use
/// unless told otherwise ([`Builder::runtime`](crate::Builder::runtime)).
pub trait Runtime: Clone + Default + Send + Sync + 'static {
    /// The byte streams of this runtime: what users hand the transport
    /// (an accepted TLS stream, a test pipe) and connectors return.
    type Io: Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// Runs `future` to its end in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F);

    /// A future that completes at `deadline` (at once if it passed).
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// Resolves `address` (`host:port`) to a socket address.
    fn resolve(
        &self,
        address: String,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send + 'static;

    /// Connects to `addr` with TCP, TCP_NODELAY on.
    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;

    /// Binds a TCP listener.
    fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener>;

    /// The address a listener is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts the next connection (TCP_NODELAY on), and says whose it is.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send + 'a;

    /// The stream, as HTTP/2 reads and writes it.
    fn into_h2(io: Self::Io) -> BoxIo;

    /// Lets the runtime's other tasks, and its I/O, run before the calling
    /// task goes on: a connection's task calls it after a poll that moved
    /// its budget of data, so that a snapshot cannot hold a heartbeat's
    /// connection back. The default wakes the task at once, which suits
    /// executors that poll their I/O between tasks on their own.
    fn yield_now(&self) -> impl Future<Output = ()> + Send + 'static {
        YieldOnce(false)
    }
}

/// Pending once, woken at once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The default connector of a runtime: resolve, then TCP.
pub fn tcp_connector<R: Runtime>(runtime: R) -> Connector<R::Io> {
    Arc::new(move |peer: String| {
        let runtime = runtime.clone();
        Box::pin(async move {
            let addr = match peer.parse() {
                Ok(addr) => addr,
                Err(_) => runtime.resolve(peer).await?,
            };
            runtime.connect(addr).await
        })
    })
}
