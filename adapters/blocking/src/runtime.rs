//! The driver's runtime made of plain threads: a thread per task, each with
//! its own readiness poller.
//!
//! This module owns [`BlockingRuntime`]. Every task the driver spawns — the
//! task of one connection, an accept loop, an endpoint's timer — gets a
//! thread of its own, and that thread is its whole runtime: it polls the
//! task, then waits in `epoll` (through mio) for its sockets, its timers or
//! a wake-up from another thread. There is no executor to hop through and
//! no reactor thread: the thread that waits for a connection's socket is
//! the one that runs the connection, and a caller blocked in a call is
//! woken directly by the connection that finished it.
//!
//! It also owns the byte streams ([`BlockingIo`]: a non-blocking socket
//! that registers with the poller of the thread that first reads or
//! writes it), the listener, the timers, and [`block_on`] for the callers.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use raft_grpc_transport_driver::{BoxIo, Runtime};

/// The token of a thread's wake-up.
const WAKE: Token = Token(0);

/// Plain threads: a thread per task, each its own poller. See the module
/// docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingRuntime;

/// A thread's poller, registry and timers.
struct Reactor {
    poll: RefCell<mio::Poll>,
    registry: mio::Registry,
    waker: Arc<mio::Waker>,
    timers: RefCell<BinaryHeap<Reverse<Instant>>>,
    next_token: RefCell<usize>,
}

thread_local! {
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// The reactor of the current thread, if it runs a task.
fn reactor() -> Option<Rc<Reactor>> {
    REACTOR.with(|r| r.borrow().clone())
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(mio::Waker::new(&registry, WAKE)?);
        Ok(Reactor {
            poll: RefCell::new(poll),
            registry,
            waker,
            timers: RefCell::new(BinaryHeap::new()),
            next_token: RefCell::new(1),
        })
    }

    fn token(&self) -> Token {
        let mut next = self.next_token.borrow_mut();
        *next += 1;
        Token(*next)
    }
}

/// Wakes a task's thread: its flag, and its poller.
struct TaskWaker {
    woken: AtomicBool,
    poller: Arc<mio::Waker>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            let _ = self.poller.wake();
        }
    }
}

/// Runs `future` to its end on this thread, waiting in the thread's poller
/// between polls.
fn run(future: impl Future<Output = ()>) {
    let Ok(reactor) = Reactor::new().map(Rc::new) else {
        return;
    };
    REACTOR.with(|r| *r.borrow_mut() = Some(reactor.clone()));
    let task = Arc::new(TaskWaker {
        woken: AtomicBool::new(false),
        poller: reactor.waker.clone(),
    });
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut events = Events::with_capacity(64);
    loop {
        task.woken.store(false, Ordering::SeqCst);
        if future.as_mut().poll(&mut cx).is_ready() {
            break;
        }
        if task.woken.load(Ordering::SeqCst) {
            // Woken while it ran: poll again at once.
            continue;
        }
        let now = Instant::now();
        let timeout = {
            let mut timers = reactor.timers.borrow_mut();
            while timers.peek().is_some_and(|Reverse(t)| *t <= now) {
                timers.pop();
            }
            timers
                .peek()
                .map(|Reverse(t)| t.saturating_duration_since(now))
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            continue;
        }
        // Sockets, timers and wake-ups all end the wait: the task is polled
        // again and sees for itself what is ready.
        let _ = reactor.poll.borrow_mut().poll(&mut events, timeout);
    }
    REACTOR.with(|r| *r.borrow_mut() = None);
}

/// Runs `future` on the calling thread until it completes, parking between
/// polls. For the callers of the blocking API: their futures only wait for
/// wake-ups from the transport's threads.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match block_on_until(future, None) {
        Some(output) => output,
        None => unreachable!("no deadline"),
    }
}

/// [`block_on`], giving up at `deadline`.
pub fn block_on_until<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    struct Parker {
        thread: Thread,
        woken: AtomicBool,
    }
    impl Wake for Parker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::SeqCst);
            self.thread.unpark();
        }
    }
    let parker = Arc::new(Parker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(parker.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        while !parker.woken.swap(false, Ordering::SeqCst) {
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    thread::park_timeout(deadline - now);
                }
                None => thread::park(),
            }
        }
    }
}

/// A future that completes at a deadline, on the poller of the thread that
/// polls it (or on a helper thread, outside the runtime).
struct Sleep {
    deadline: Instant,
    helper: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match reactor() {
            Some(reactor) => reactor.timers.borrow_mut().push(Reverse(self.deadline)),
            None if !self.helper => {
                self.helper = true;
                let (deadline, waker) = (self.deadline, cx.waker().clone());
                thread::spawn(move || {
                    thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    waker.wake();
                });
            }
            None => {}
        }
        Poll::Pending
    }
}

/// A non-blocking TCP socket, registered with the poller of the thread
/// that first reads or writes it (a connection's stream belongs to its
/// connection's task, which never changes threads).
pub struct BlockingIo {
    stream: TcpStream,
    registered: bool,
}

impl std::fmt::Debug for BlockingIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingIo")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

impl From<std::net::TcpStream> for BlockingIo {
    /// Takes a connected std stream (made non-blocking, TCP_NODELAY on).
    fn from(stream: std::net::TcpStream) -> Self {
        let _ = stream.set_nonblocking(true);
        let _ = stream.set_nodelay(true);
        BlockingIo::new(TcpStream::from_std(stream))
    }
}

impl BlockingIo {
    fn new(stream: TcpStream) -> Self {
        BlockingIo {
            stream,
            registered: false,
        }
    }

    /// Registers with this thread's poller, once.
    fn register(&mut self) -> io::Result<()> {
        if self.registered {
            return Ok(());
        }
        let Some(reactor) = reactor() else {
            return Err(io::Error::other(
                "a BlockingIo is polled outside the blocking runtime's threads",
            ));
        };
        let token = reactor.token();
        reactor.registry.register(
            &mut self.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.registered = true;
        Ok(())
    }

    /// Runs `op` until it does not block; `Pending` when it would (the
    /// poller wakes the thread when the socket is ready).
    fn poll_io<T>(
        &mut self,
        mut op: impl FnMut(&mut TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        if let Err(e) = self.register() {
            return Poll::Ready(Err(e));
        }
        loop {
            match op(&mut self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl tokio::io::AsyncRead for BlockingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = std::task::ready!(self.poll_io(|s| s.read(buf.initialize_unfilled())))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for BlockingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(|s| s.write(buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(|s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.shutdown(std::net::Shutdown::Write))
    }
}

/// A bound TCP listener of the blocking runtime.
#[derive(Debug)]
pub struct BlockingListener {
    listener: TcpListener,
    registered: AtomicBool,
}

impl BlockingListener {
    /// Takes a bound std listener (made non-blocking).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(BlockingListener {
            listener: TcpListener::from_std(listener),
            registered: AtomicBool::new(false),
        })
    }
}

/// Waits for a connect to finish.
struct Connecting {
    io: Option<BlockingIo>,
}

impl Future for Connecting {
    type Output = io::Result<BlockingIo>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<BlockingIo>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(io::Error::other("polled after completion")));
        };
        if let Err(e) = io.register() {
            return Poll::Ready(Err(e));
        }
        if let Some(e) = io.stream.take_error()? {
            return Poll::Ready(Err(e));
        }
        match io.stream.peer_addr() {
            Ok(_) => {
                let io = self.io.take().expect("checked above");
                io.stream.set_nodelay(true)?;
                Poll::Ready(Ok(io))
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Waits for a connection on a listener.
struct Accepting<'a> {
    listener: &'a BlockingListener,
}

impl Future for Accepting<'_> {
    type Output = io::Result<(BlockingIo, SocketAddr)>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let listener = self.listener;
        if !listener.registered.swap(true, Ordering::SeqCst) {
            let Some(reactor) = reactor() else {
                return Poll::Ready(Err(io::Error::other(
                    "a listener is polled outside the blocking runtime's threads",
                )));
            };
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener.listener);
            reactor
                .registry
                .register(&mut SourceFd(&fd), reactor.token(), Interest::READABLE)?;
        }
        loop {
            match listener.listener.accept() {
                Ok((stream, remote)) => {
                    stream.set_nodelay(true)?;
                    return Poll::Ready(Ok((BlockingIo::new(stream), remote)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Runtime for BlockingRuntime {
    type Io = BlockingIo;
    type Listener = BlockingListener;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        let _ = thread::Builder::new()
            .name("raft-grpc".to_owned())
            .spawn(move || run(future));
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        Sleep {
            deadline,
            helper: false,
        }
    }

    fn resolve(
        &self,
        address: String,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send + 'static {
        // Resolution blocks the thread that asks: a connection's own.
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(&address).and_then(|mut addrs| {
            addrs.next().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{address} resolves to no address"),
                )
            })
        });
        std::future::ready(resolved)
    }

    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<BlockingIo>> + Send + 'static {
        let started = TcpStream::connect(addr).map(BlockingIo::new);
        async move { Connecting { io: Some(started?) }.await }
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<BlockingListener> {
        BlockingListener::from_std(std::net::TcpListener::bind(addr)?)
    }

    fn local_addr(listener: &BlockingListener) -> io::Result<SocketAddr> {
        listener.listener.local_addr()
    }

    fn accept<'a>(
        &'a self,
        listener: &'a BlockingListener,
    ) -> impl Future<Output = io::Result<(BlockingIo, SocketAddr)>> + Send + 'a {
        Accepting { listener }
    }

    fn into_h2(io: BlockingIo) -> BoxIo {
        Box::new(io)
    }
}
