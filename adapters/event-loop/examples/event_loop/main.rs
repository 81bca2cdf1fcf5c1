//! The sans-IO core in a hand-written event loop.
//!
//! One thread, no async runtime and no executor: non-blocking sockets and
//! a readiness poll (both from `mio`), and h2's futures and streams polled
//! by hand with a hand-made waker. In that one loop a
//! `ServerEndpoint` serves on a TCP listener, and a `ClientEndpoint` calls
//! it over loopback TCP: every unary RPC, a pipeline, a 64 MiB snapshot,
//! then `close()`.
//!
//! This file owns the loop ([`EventLoop`]) and `main`:
//! * `reactor.rs`: the poll, the waker, the socket wrapper h2 runs on;
//! * `client.rs`: the client endpoint's connections and outputs over h2;
//! * `server.rs`: the listener, the server endpoint's connections and
//!   outputs over h2, and the application that answers;
//! * `steps.rs`: what the client's application does, step by step.
//!
//! Run it with `cargo run --release -p raft-grpc-event-loop --example
//! event_loop`.
//!
//! # One turn of the loop
//!
//! 1. **Timers.** A deadline of either endpoint that passed becomes
//!    `handle_timeout(now)`.
//! 2. **A pass** over every connection of both sides: accept, connect,
//!    handshake, h2's I/O, PINGs, new streams, incoming data, and each
//!    stream's `poll_transmit` within the send capacity h2 granted. What
//!    h2 reports goes into the endpoints as `handle_*` inputs.
//! 3. **The drain rule.** After those inputs, drain each endpoint's
//!    `poll_output` (carried out on h2 at once, or at the next pass for
//!    sending) and `poll_event` until both are empty. The server's
//!    application answers right there; the client's events wait for the
//!    client's application.
//! 4. **The application** (a step) looks at its events and may issue
//!    commands (`start_rpc`, `append`, `push_snapshot_data`, `close`, …),
//!    each followed by a drain.
//! 5. **Sleep**, unless anything happened or h2 called the waker: `wait`
//!    in `mio::Poll::poll` until a socket's readiness changes or the
//!    earliest `poll_timeout()` of both endpoints. mio is edge-triggered,
//!    which this loop satisfies by polling every connection after any
//!    wake-up (see `reactor.rs`).
#![forbid(unsafe_code)]

mod client;
mod reactor;
mod server;
mod steps;

use std::error::Error;
use std::net::TcpListener;
use std::process::ExitCode;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use raft_grpc_transport::config::Config;

use client::ClientSide;
use reactor::Reactor;
use server::ServerSide;

/// What any step can fail with; `main` prints it and exits non-zero.
pub type Failure = Box<dyn Error>;

/// The whole run must be over by then, so that it can never hang in CI.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Both endpoints, their connections, and the poll, on one thread.
pub struct EventLoop {
    reactor: Reactor,
    waker: Waker,
    pub server: ServerSide,
    pub client: ClientSide,
    watchdog: Instant,
    turns: u64,
}

impl EventLoop {
    fn new(listener: TcpListener, config: &Config) -> Result<EventLoop, Failure> {
        let mut reactor = Reactor::new()?;
        let http2 = config.http2();
        let server = ServerSide::new(&mut reactor, listener, config.server(), &http2)?;
        let client = ClientSide::new(config.client(), &http2);
        Ok(EventLoop {
            waker: reactor.waker(),
            reactor,
            server,
            client,
            watchdog: Instant::now() + WATCHDOG,
            turns: 0,
        })
    }

    /// Runs the loop until the application (`app`, called once per turn)
    /// returns `Some`, an error, or the watchdog fires.
    pub fn run_until<T>(
        &mut self,
        what: &str,
        mut app: impl FnMut(&mut EventLoop, Instant) -> Result<Option<T>, Failure>,
    ) -> Result<T, Failure> {
        loop {
            let now = Instant::now();
            if now >= self.watchdog {
                let why = format!("watchdog: {WATCHDOG:?} passed while waiting for {what}");
                return Err(why.into());
            }
            let mut busy = self.turn(now);
            if let Some(done) = app(self, now)? {
                return Ok(done);
            }
            busy |= self.drain(now);
            self.sleep(busy)?;
        }
    }

    /// Timers, one pass, the drain. Returns whether anything happened.
    fn turn(&mut self, now: Instant) -> bool {
        self.turns += 1;
        // Timers: spurious timeouts are harmless, a missed one is not.
        let due = |deadline: Option<Instant>| deadline.is_some_and(|t| t <= now);
        if due(self.client.endpoint.poll_timeout()) {
            self.client.endpoint.handle_timeout(now);
        }
        if due(self.server.endpoint.poll_timeout()) {
            self.server.endpoint.handle_timeout(now);
        }
        let mut busy = self.drain(now);
        // One pass over every connection of both sides; what h2 reports
        // goes into the endpoints as it is found ...
        let mut cx = Context::from_waker(&self.waker);
        busy |= self.server.pass(&mut self.reactor, &mut cx, now);
        busy |= self.client.pass(&mut cx, now);
        // ... and is drained once the pass is over.
        busy | self.drain(now)
    }

    /// The drain rule, for both endpoints: call it after every input or
    /// command, and always before sleeping.
    pub fn drain(&mut self, now: Instant) -> bool {
        let server = self.server.drain(now);
        let client = self.client.drain(&mut self.reactor, now);
        server | client
    }

    /// Sleeps until a socket's readiness changes, h2 wakes us, or the
    /// earliest timer of both endpoints; not at all if the turn did anything.
    fn sleep(&mut self, busy: bool) -> Result<(), Failure> {
        let woken = self.reactor.take_woken();
        let timeout = if busy || woken {
            Some(Duration::ZERO) // collect readiness, do not block
        } else {
            let timers = [
                self.client.endpoint.poll_timeout(),
                self.server.endpoint.poll_timeout(),
                Some(self.watchdog),
            ];
            let earliest = timers.into_iter().flatten().min();
            earliest.map(|t| t.saturating_duration_since(Instant::now()))
        };
        self.reactor.wait(timeout)?;
        Ok(())
    }

    /// How the loop spent its time.
    pub fn stats(&self) -> String {
        format!(
            "{} turns, {} waits in the poller ({} returned I/O), {} waker calls",
            self.turns,
            self.reactor.waits,
            self.reactor.io_wakeups,
            self.reactor.wakes()
        )
    }
}

fn run() -> Result<(), Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let peer = listener.local_addr()?.to_string();
    let config = Config::default();
    let mut event_loop = EventLoop::new(listener, &config)?;
    println!("event_loop: one thread, no runtime; server listening on {peer}");
    steps::run(&mut event_loop, &peer)?;
    println!("event_loop: {}", event_loop.stats());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("event_loop: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("event_loop: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
