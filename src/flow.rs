//! Receive windows that follow the link: a bandwidth-delay estimate.
//!
//! This module owns [`WindowTuner`], the policy that sizes a connection's
//! HTTP/2 receive windows from what the link carries, the way grpc-go does
//! it. A fixed window caps a stream at one window per round trip: 1 MiB
//! per 20 ms is 50 MB/s, however fast the link. So while data arrives, the
//! receiver sends a PING and counts the bytes that arrive until its answer:
//! that count is what the link delivered in one round trip at the current
//! window. When it fills most of the window (two thirds) and the measured
//! bandwidth is the best seen, the window doubles past it — up to a cap,
//! which bounds what one peer can make a node buffer. On loopback the
//! round trip is too short to fill a window, and nothing changes.
//!
//! It owns no connection: an endpoint feeds it the bytes that arrive and
//! the PING's answer, and applies the windows it returns.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use raft_grpc_transport::flow::WindowTuner;
//!
//! let t0 = Instant::now();
//! let mut tuner = WindowTuner::new(1 << 20, 16 << 20);
//! // Data arrives: measure (send a PING).
//! assert!(tuner.on_data(16_384, t0));
//! // A whole window arrives within the round trip: the link can do more.
//! assert!(!tuner.on_data(1 << 20, t0 + Duration::from_millis(10)));
//! assert_eq!(tuner.on_ping_ack(t0 + Duration::from_millis(20)), Some(2 * ((1 << 20) + 16_384)));
//! ```

use std::time::Instant;

/// Fraction of the window a round trip must fill for the window to grow.
const FILL: f64 = 0.66;
/// How much past the measured sample the window goes.
const GROWTH: f64 = 2.0;
/// Weight of a new round-trip sample once ten were taken.
const RTT_WEIGHT: f64 = 0.9;

/// Sizes one connection's receive windows from a bandwidth-delay estimate.
#[derive(Debug, Clone)]
pub struct WindowTuner {
    /// The window in force (per stream, and at least this per connection).
    window: u32,
    /// The most it may grow to.
    max: u32,
    /// Bytes arrived since the measuring PING was sent.
    sample: u64,
    /// When the measuring PING went out, while it is in flight.
    sent_at: Option<Instant>,
    /// Smoothed round trip, seconds.
    rtt: f64,
    samples: u32,
    /// The best bandwidth seen, bytes per second.
    best: f64,
}

impl WindowTuner {
    /// A tuner starting at `initial` bytes, growing to at most `max`.
    pub fn new(initial: u32, max: u32) -> Self {
        WindowTuner {
            window: initial,
            max: max.max(initial),
            sample: 0,
            sent_at: None,
            rtt: 0.0,
            samples: 0,
            best: 0.0,
        }
    }

    /// The window in force.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Whether a measuring PING is in flight.
    pub fn measuring(&self) -> bool {
        self.sent_at.is_some()
    }

    /// `bytes` of DATA arrived at `now`. Returns true when a PING must be
    /// sent now to measure (none is in flight, and the window may still
    /// grow).
    pub fn on_data(&mut self, bytes: usize, now: Instant) -> bool {
        if self.window >= self.max {
            return false;
        }
        if self.sent_at.is_some() {
            self.sample += bytes as u64;
            return false;
        }
        self.sample = bytes as u64;
        self.sent_at = Some(now);
        true
    }

    /// The measuring PING was answered at `now`. Returns the new window
    /// when it grows.
    pub fn on_ping_ack(&mut self, now: Instant) -> Option<u32> {
        let sent = self.sent_at.take()?;
        let rtt = now.saturating_duration_since(sent).as_secs_f64().max(1e-6);
        self.samples = self.samples.saturating_add(1);
        if self.samples < 10 {
            self.rtt += (rtt - self.rtt) / f64::from(self.samples);
        } else {
            self.rtt += (rtt - self.rtt) * RTT_WEIGHT;
        }
        let bandwidth = self.sample as f64 / (self.rtt * 1.5);
        if bandwidth > self.best {
            self.best = bandwidth;
        }
        let filled = self.sample as f64 >= FILL * f64::from(self.window);
        if filled && bandwidth >= self.best && self.window < self.max {
            let grown = (GROWTH * self.sample as f64).min(f64::from(self.max)) as u32;
            if grown > self.window {
                self.window = grown;
                return Some(grown);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A link of `rate` bytes/s and `rtt`, receiving through a window that
    /// the tuner sizes: how many round trips until the window settles, and
    /// at what.
    fn settle(rate: f64, rtt: Duration, initial: u32, max: u32) -> (usize, u32) {
        let mut tuner = WindowTuner::new(initial, max);
        let mut now = Instant::now();
        for round in 0..100 {
            // One round trip delivers what the window lets through.
            let delivered = (f64::from(tuner.window()) * 1.0).min(rate * rtt.as_secs_f64());
            assert!(tuner.on_data(1, now) || tuner.window() >= max);
            tuner.on_data(delivered as usize, now + rtt / 2);
            now += rtt;
            if tuner.on_ping_ack(now).is_none() {
                return (round, tuner.window());
            }
        }
        (100, tuner.window())
    }

    #[test]
    fn a_long_fat_link_grows_the_window_to_its_cap() {
        // 1 GB/s at 20 ms: the product is 20 MB; the cap is 16 MiB.
        let (rounds, window) = settle(1e9, Duration::from_millis(20), 1 << 20, 16 << 20);
        assert_eq!(window, 16 << 20);
        assert!(rounds <= 5, "{rounds} round trips");
    }

    #[test]
    fn the_window_stops_near_the_bandwidth_delay_product() {
        // 100 MB/s at 20 ms: 2 MB in flight is all the link holds.
        let (_, window) = settle(100e6, Duration::from_millis(20), 1 << 20, 64 << 20);
        assert!((2_000_000..=8_000_000).contains(&window), "{window}");
    }

    #[test]
    fn loopback_leaves_the_window_alone() {
        // 2 GB/s at 50 µs: 100 KB per round trip never fills 1 MiB.
        let (rounds, window) = settle(2e9, Duration::from_micros(50), 1 << 20, 16 << 20);
        assert_eq!((rounds, window), (0, 1 << 20));
    }

    #[test]
    fn one_ping_at_a_time_and_none_at_the_cap() {
        let t0 = Instant::now();
        let mut tuner = WindowTuner::new(1 << 20, 1 << 20);
        assert!(!tuner.on_data(100, t0), "already at the cap");
        let mut tuner = WindowTuner::new(1 << 20, 4 << 20);
        assert!(tuner.on_data(100, t0));
        assert!(!tuner.on_data(100, t0), "one PING in flight");
        assert!(tuner.measuring());
        assert_eq!(tuner.on_ping_ack(t0), None);
        assert!(!tuner.measuring());
        assert_eq!(tuner.on_ping_ack(t0), None, "no PING in flight");
    }
}
