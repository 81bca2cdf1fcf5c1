//! One client connection's liveness: the handshake PING and keepalive.
//!
//! This module owns [`Liveness`], the PING policy of one connection as
//! gRPC's rules and grpc-go's servers want it:
//! * a new connection is not ready until one PING round trip proves the
//!   peer speaks HTTP/2 (its SETTINGS come before the PONG, so the stream
//!   limit read then is the peer's);
//! * while streams are open, one PING per keepalive interval; a PING
//!   unanswered for the keepalive timeout means the connection is dead;
//! * no PING on a connection without streams (a grpc-go server answers
//!   those with GOAWAY `too_many_pings`), and at most one PING in flight
//!   (HTTP/2 libraries allow one user PING at a time).
//!
//! The interval itself, and its back-off after a peer complained, are the
//! endpoint's: it passes them in.

use std::time::{Duration, Instant};

/// What the connection must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LivenessAction {
    /// Send a PING.
    Ping,
    /// A PING went unanswered for the timeout: the connection is dead.
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the handshake PING's answer.
    Handshaking,
    /// Ready for streams.
    Ready,
}

/// The PING state of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    phase: Phase,
    /// When the PING in flight was sent.
    ping_sent_at: Option<Instant>,
    /// When the next keepalive PING is due (only while streams are open).
    next_keepalive: Option<Instant>,
}

impl Liveness {
    /// A connection whose HTTP/2 handshake just finished: send the
    /// handshake PING.
    pub(crate) fn handshaking(now: Instant) -> (Liveness, LivenessAction) {
        let liveness = Liveness {
            phase: Phase::Handshaking,
            ping_sent_at: Some(now),
            next_keepalive: None,
        };
        (liveness, LivenessAction::Ping)
    }

    /// Whether the handshake PING was answered.
    pub(crate) fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The peer answered our PING. Returns true when this made the
    /// connection ready.
    pub(crate) fn ping_acked(&mut self, now: Instant, interval: Option<Duration>) -> bool {
        if self.ping_sent_at.take().is_none() {
            return false;
        }
        self.next_keepalive = interval.and_then(|i| now.checked_add(i));
        let became_ready = self.phase == Phase::Handshaking;
        self.phase = Phase::Ready;
        became_ready
    }

    /// A stream opened: after an idle spell, the keepalive clock starts
    /// again from now.
    pub(crate) fn stream_opened(&mut self, now: Instant, interval: Option<Duration>) {
        if self.next_keepalive.is_none() {
            self.next_keepalive = interval.and_then(|i| now.checked_add(i));
        }
    }

    /// The interval changed (the peer asked for fewer PINGs): the next
    /// keepalive PING is due one new interval from now.
    pub(crate) fn reschedule(&mut self, now: Instant, interval: Option<Duration>) {
        if self.next_keepalive.is_some() {
            self.next_keepalive = interval.and_then(|i| now.checked_add(i));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub(crate) fn poll_timeout(&self, busy: bool, timeout: Duration) -> Option<Instant> {
        match (self.phase, self.ping_sent_at) {
            // The connect deadline covers the handshake PING.
            (Phase::Handshaking, _) => None,
            (Phase::Ready, Some(sent)) => sent.checked_add(timeout),
            (Phase::Ready, None) if busy => self.next_keepalive,
            (Phase::Ready, None) => None,
        }
    }

    /// Time passed; `busy` says whether streams are open.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        busy: bool,
        interval: Option<Duration>,
        timeout: Duration,
    ) -> Option<LivenessAction> {
        if self.phase != Phase::Ready {
            return None;
        }
        if let Some(sent) = self.ping_sent_at {
            return (now >= sent + timeout).then_some(LivenessAction::Dead);
        }
        let due = self.next_keepalive?;
        if now < due {
            return None;
        }
        if !busy {
            // Idle: no PING, and no clock until a stream opens.
            self.next_keepalive = None;
            return None;
        }
        self.ping_sent_at = Some(now);
        self.next_keepalive = interval.and_then(|i| now.checked_add(i));
        Some(LivenessAction::Ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn ready_after_the_handshake_ping_then_pings_only_while_busy() {
        let t0 = Instant::now();
        let interval = Some(10 * SECOND);
        let (mut l, action) = Liveness::handshaking(t0);
        assert_eq!(action, LivenessAction::Ping);
        assert!(!l.is_ready());
        assert_eq!(l.poll_timeout(true, SECOND), None);
        assert!(l.ping_acked(t0 + SECOND, interval));
        assert!(l.is_ready());
        assert!(!l.ping_acked(t0 + SECOND, interval), "no PING in flight");
        let due = t0 + 11 * SECOND;
        assert_eq!(l.poll_timeout(true, SECOND), Some(due));
        assert_eq!(l.poll_timeout(false, SECOND), None);
        // Busy at the deadline: a PING; its answer is awaited.
        assert_eq!(
            l.handle_timeout(due, true, interval, SECOND),
            Some(LivenessAction::Ping)
        );
        assert_eq!(l.poll_timeout(true, SECOND), Some(due + SECOND));
        l.ping_acked(due + SECOND / 2, interval);
        // Idle at the next deadline: nothing, and no clock.
        let next = l.poll_timeout(true, SECOND).unwrap();
        assert_eq!(l.handle_timeout(next, false, interval, SECOND), None);
        assert_eq!(l.poll_timeout(true, SECOND), None);
        // A stream restarts the clock from now.
        l.stream_opened(next + 100 * SECOND, interval);
        assert_eq!(l.poll_timeout(true, SECOND), Some(next + 110 * SECOND));
    }

    #[test]
    fn an_unanswered_ping_kills_the_connection() {
        let t0 = Instant::now();
        let (mut l, _) = Liveness::handshaking(t0);
        l.ping_acked(t0, Some(SECOND));
        assert_eq!(
            l.handle_timeout(t0 + SECOND, true, Some(SECOND), 2 * SECOND),
            Some(LivenessAction::Ping)
        );
        assert_eq!(
            l.handle_timeout(t0 + 2 * SECOND, true, Some(SECOND), 2 * SECOND),
            None
        );
        assert_eq!(
            l.handle_timeout(t0 + 3 * SECOND, true, Some(SECOND), 2 * SECOND),
            Some(LivenessAction::Dead)
        );
    }

    #[test]
    fn no_keepalive_without_an_interval() {
        let t0 = Instant::now();
        let (mut l, _) = Liveness::handshaking(t0);
        l.ping_acked(t0, None);
        l.stream_opened(t0, None);
        assert_eq!(l.poll_timeout(true, SECOND), None);
        assert_eq!(
            l.handle_timeout(t0 + 1000 * SECOND, true, None, SECOND),
            None
        );
    }
}
