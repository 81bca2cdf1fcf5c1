//! A TCP delay proxy: an emulated link between a client and a server on
//! loopback.
//!
//! The kernels of these machines have no netem, so the benchmark brings
//! its own link: [`Link::start`] listens on a loopback port and forwards
//! every connection to the target, each direction delayed by half the
//! round trip, with an optional bandwidth cap. Bytes are read as they come,
//! stamped, and written once their time has come, so that the link holds
//! what is in flight (like a long cable) and neither side's windows are
//! hidden by it. Memory is what is in flight: at most the windows the two
//! ends allow.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An emulated link in front of a server.
pub struct Link {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// Listens on a loopback port and forwards to `target` with this round
    /// trip and, if given, this cap in bytes per second each way.
    pub fn start(
        target: SocketAddr,
        rtt: Duration,
        bytes_per_s: Option<f64>,
    ) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            for incoming in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let one_way = rtt / 2;
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let stop = stopped.clone();
                    thread::spawn(move || pump(from, to, one_way, bytes_per_s, stop));
                }
            }
        });
        Ok(Link { addr, stop })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Bytes in flight one way: (when they may leave, the bytes).
#[derive(Default)]
struct InFlight {
    queue: VecDeque<(Instant, Vec<u8>)>,
    closed: bool,
}

/// One direction: a reader thread stamps what arrives, this thread's
/// writer sends it when due.
fn pump(
    mut from: TcpStream,
    to: TcpStream,
    delay: Duration,
    bytes_per_s: Option<f64>,
    stop: Arc<AtomicBool>,
) {
    let flight = Arc::new((Mutex::new(InFlight::default()), Condvar::new()));
    let writer = {
        let flight = flight.clone();
        let mut to = to;
        thread::spawn(move || {
            let (lock, ready) = &*flight;
            loop {
                let mut state = lock.lock().unwrap();
                let Some(&(due, _)) = state.queue.front() else {
                    if state.closed {
                        let _ = to.shutdown(Shutdown::Write);
                        return;
                    }
                    drop(ready.wait(state).unwrap());
                    continue;
                };
                let now = Instant::now();
                if due > now {
                    drop(ready.wait_timeout(state, due - now).unwrap());
                    continue;
                }
                let (_, bytes) = state.queue.pop_front().unwrap();
                drop(state);
                if to.write_all(&bytes).is_err() {
                    return;
                }
            }
        })
    };
    let (lock, ready) = &*flight;
    let mut buf = vec![0u8; 256 * 1024];
    // With a cap, bytes leave no earlier than the link can carry them.
    let mut link_free = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        let sent = match bytes_per_s {
            Some(rate) => {
                link_free = link_free.max(now) + Duration::from_secs_f64(n as f64 / rate);
                link_free
            }
            None => now,
        };
        let mut state = lock.lock().unwrap();
        state.queue.push_back((sent + delay, buf[..n].to_vec()));
        ready.notify_one();
    }
    lock.lock().unwrap().closed = true;
    ready.notify_one();
    let _ = writer.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_delays_each_way_and_carries_every_byte() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0;
            while total < buf.len() {
                total += s.read(&mut buf[total..]).unwrap();
            }
            s.write_all(&buf).unwrap();
        });
        let link = Link::start(target, Duration::from_millis(40), None).unwrap();
        let mut c = TcpStream::connect(link.addr()).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        c.write_all(&data).unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "{:?}",
            start.elapsed()
        );
    }
}
