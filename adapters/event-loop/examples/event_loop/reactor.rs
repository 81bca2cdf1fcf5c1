//! Readiness: the poll, the waker h2 is polled with, and the sockets.
//!
//! This module owns everything the loop knows about the operating system:
//! * [`Reactor`]: one `mio::Poll`, every socket registered with it, and
//!   the one [`Waker`] that every h2 future, stream and PING is polled
//!   with;
//! * [`LoopWaker`]: what that waker does — set a flag, and wake a
//!   `mio::Waker` so that a sleeping `Poll::poll` returns;
//! * [`Source`]: a non-blocking mio socket registered with the poll, with
//!   a flag for "the poll reported it" (it deregisters itself when
//!   dropped);
//! * [`Io`]: a connected `Source` as tokio's `AsyncRead` + `AsyncWrite`,
//!   which is all h2 asks of its transport.
//!
//! It knows nothing of HTTP/2 or Raft.
//!
//! # How a pass finds out what to do again
//!
//! mio is edge-triggered: it reports a socket when its readiness changes
//! (data arrived, the send buffer has room again, a connect finished), not
//! for as long as it stays ready. Every socket is registered once, for
//! reading and writing, and the loop polls every h2 connection and stream
//! on every pass, so it needs no per-task bookkeeping; it only has to know
//! *when not to sleep*. A future that returns `Pending` has done one of two
//! things first:
//! * read or written until `WouldBlock` ([`Io`] turns it into `Pending`,
//!   and h2 goes on until `Pending`): the socket's next change of readiness
//!   is an event, and `Poll::poll` returns for it;
//! * stored our waker inside h2 (a stream waiting for send capacity, the
//!   connection waiting for frames a stream just queued, a response not
//!   there yet): when h2 calls it, [`LoopWaker`] sets its flag, and the
//!   loop runs another pass instead of sleeping.
//!
//! Either way the next pass comes, so nothing is missed. A socket that h2
//! is not waiting on costs nothing: one that is readable while h2 waits to
//! write reports nothing more until more data comes, so a write-blocked
//! connection does not spin. A spurious pass costs a few `WouldBlock`s.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Registry, Token};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The token of the `mio::Waker`; sockets count up from 0.
const WAKE: Token = Token(usize::MAX);

/// The waker every h2 object is polled with.
///
/// h2 calls it from inside our own calls (on this thread): a stream's
/// `send_data` wakes the connection that must write the frame, a WINDOW_UPDATE
/// wakes the stream waiting in `poll_capacity`, and so on. Setting the flag
/// is what matters here: it tells the loop that some future can go on, so
/// it must not sleep. Waking the `mio::Waker` makes `Poll::poll` return at
/// once, which is what would wake the loop if the waker were called from
/// another thread (an application thread handing in work, say); on this
/// thread it only makes the next `poll` return without blocking.
pub struct LoopWaker {
    woken: AtomicBool,
    wakes: AtomicU64,
    waker: mio::Waker,
}

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        // One wake-up per sleep is enough.
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// A non-blocking mio socket registered with the poll.
///
/// It is registered for reading and writing at once and never
/// re-registered: with edge-triggered readiness there is nothing to re-arm.
/// The loop reads and writes it whenever it makes a pass; the flag only
/// tells the listener and a connect under way that an event came.
pub struct Source<T: mio::event::Source> {
    inner: T,
    registry: Rc<Registry>,
    /// The poll reported it since it was last looked at (true at first,
    /// so that a new socket is tried once).
    ready: Cell<bool>,
}

impl<T: mio::event::Source> Source<T> {
    /// The socket.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// Whether the poll reported this socket since the last call.
    pub fn take_ready(&self) -> bool {
        self.ready.replace(false)
    }

    /// Makes the next [`take_ready`](Self::take_ready) true: for an
    /// operation that failed with something other than `WouldBlock`, after
    /// which no event may come.
    pub fn try_again(&self) {
        self.ready.set(true);
    }
}

impl<T: mio::event::Source> Drop for Source<T> {
    fn drop(&mut self) {
        // mio asks for it: leave the poll before the socket closes (its
        // fields drop after this).
        let _ = self.registry.deregister(&mut self.inner);
    }
}

/// What the reactor needs of any registered socket, whatever its type.
trait Fired {
    /// The poll reported the socket.
    fn fired(&self);
}

impl<T: mio::event::Source> Fired for Source<T> {
    fn fired(&self) {
        self.ready.set(true);
    }
}

/// The poll, the waker and the registered sockets.
pub struct Reactor {
    poll: mio::Poll,
    /// For the sockets to deregister themselves with.
    registry: Rc<Registry>,
    waker: Arc<LoopWaker>,
    sources: HashMap<Token, Weak<dyn Fired>>,
    next_token: usize,
    events: Events,
    /// Calls of `wait`, and those that returned I/O events.
    pub waits: u64,
    pub io_wakeups: u64,
}

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        let poll = mio::Poll::new()?;
        let registry = Rc::new(poll.registry().try_clone()?);
        let waker = Arc::new(LoopWaker {
            woken: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
            waker: mio::Waker::new(poll.registry(), WAKE)?,
        });
        Ok(Reactor {
            poll,
            registry,
            waker,
            sources: HashMap::new(),
            next_token: 0,
            events: Events::with_capacity(64),
            waits: 0,
            io_wakeups: 0,
        })
    }

    /// The waker to poll h2 with (one for everything: see the module docs).
    pub fn waker(&self) -> Waker {
        Waker::from(self.waker.clone())
    }

    /// How often h2 called the waker.
    pub fn wakes(&self) -> u64 {
        self.waker.wakes.load(Ordering::Relaxed)
    }

    /// Registers a non-blocking socket, for reading and writing. It leaves
    /// the poll when the last `Rc` to it is dropped.
    pub fn register<T: mio::event::Source + 'static>(
        &mut self,
        mut inner: T,
    ) -> io::Result<Rc<Source<T>>> {
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.registry.register(&mut inner, token, interest)?;
        let source = Rc::new(Source {
            inner,
            registry: self.registry.clone(),
            ready: Cell::new(true),
        });
        let fired: Rc<dyn Fired> = source.clone();
        self.sources.insert(token, Rc::downgrade(&fired));
        Ok(source)
    }

    /// Whether h2 called the waker since the last call: then the loop must
    /// not sleep.
    pub fn take_woken(&self) -> bool {
        self.waker.woken.swap(false, Ordering::AcqRel)
    }

    /// Sleeps until a registered socket's readiness changes, the waker is
    /// called, or `timeout` passes (`None`: no timer is armed).
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Forget the sockets that were dropped.
        self.sources.retain(|_, source| source.strong_count() > 0);
        self.waits += 1;
        match self.poll.poll(&mut self.events, timeout) {
            // A signal: as good as a spurious wake-up.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            result => result?,
        }
        // A wake that came while we slept is consumed by this wait.
        self.waker.woken.store(false, Ordering::Release);
        let mut io = false;
        for event in self.events.iter() {
            if event.token() == WAKE {
                continue;
            }
            io = true;
            if let Some(source) = self.sources.get(&event.token()).and_then(Weak::upgrade) {
                source.fired();
            }
        }
        if io {
            self.io_wakeups += 1;
        }
        Ok(())
    }
}

/// A connected, non-blocking mio `TcpStream` as h2 wants its I/O.
///
/// On `WouldBlock` it returns `Pending` without keeping the waker: the
/// loop polls every connection on every pass, so the socket's next event
/// (which makes `Poll::poll` return) is all it needs.
pub struct Io(pub Rc<Source<TcpStream>>);

impl Io {
    fn stream(&self) -> &TcpStream {
        self.0.get()
    }
}

/// Runs a non-blocking operation: `Pending` on `WouldBlock`, retried on
/// `Interrupted`.
fn nonblocking<T>(mut op: impl FnMut() -> io::Result<T>) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            result => return Poll::Ready(result),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Safe code must hand `read` initialised memory.
        let unfilled = buf.initialize_unfilled();
        let read = nonblocking(|| this.stream().read(unfilled));
        read.map_ok(|n| buf.advance(n))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        nonblocking(|| this.stream().write(data))
    }

    // h2 writes a frame head and its payload (a zero-copy slice of a
    // snapshot chunk, say) as separate buffers: one `writev` sends both.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        nonblocking(|| this.stream().write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    // A TcpStream buffers nothing in user space.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream().shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
