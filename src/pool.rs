//! Per-peer connection pool: slots, lanes, and reconnect backoff.
//!
//! This module owns which HTTP/2 connection a call uses. Each peer has N
//! slots (default 3), each holding at most one connection, opened lazily
//! on first use. Calls are sorted into [`Lane`]s so that heartbeats, votes
//! and TimeoutNow never share a connection with a snapshot or a replication
//! batch (with N ≥ 2; with one slot everything shares it):
//!
//! | slots | control lane | replication lane | snapshot lane |
//! | --- | --- | --- | --- |
//! | 1 | 0 | 0 | 0 |
//! | 2 | 0 | 1 | 1 |
//! | N ≥ 3 | 0 | 1 … N−2, round-robin | N−1 |
//!
//! Replication calls take the lane's slots in turn; a slot connects on its
//! first turn. A slot is idle, connecting, ready (honouring the peer's
//! SETTINGS_MAX_CONCURRENT_STREAMS), or failed and waiting out an
//! exponential backoff with jitter drawn from a seeded generator. A
//! connection that receives GOAWAY drains: it takes no new stream, its
//! slot is free for a new connection at once, and the pool asks for it to
//! be closed when its last stream ends. A failed connect means the peer is
//! unreachable, so every idle slot of the peer waits out the same backoff;
//! meanwhile a call that has no ready connection fails fast with
//! `UNAVAILABLE` instead of hanging.
//!
//! The pool owns no sockets: [`PeerPool::pick`] says which connection to
//! use or to open, and the caller reports what happened to it.
//!
//! ```
//! use std::time::Instant;
//! use raft_grpc_transport::pool::{Lane, PeerPool, Pick, PoolConfig};
//!
//! let now = Instant::now();
//! let mut pool = PeerPool::new(PoolConfig::default());
//! let Ok(Pick::Connect(conn)) = pool.pick("10.0.0.2:7000", Lane::Control, now) else { panic!() };
//! pool.connected(conn, Some(100), now);
//! assert_eq!(pool.pick("10.0.0.2:7000", Lane::Control, now), Ok(Pick::Ready(conn)));
//! // A snapshot never rides on the control connection.
//! assert!(matches!(pool.pick("10.0.0.2:7000", Lane::Snapshot, now), Ok(Pick::Connect(c)) if c != conn));
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::status::{Code, Status};

/// Which traffic a call carries, deciding which slots it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Heartbeats, RequestVote, RequestPreVote, TimeoutNow: small and
    /// latency-critical.
    Control,
    /// AppendEntries with entries, and pipelines.
    Replication,
    /// InstallSnapshot streams.
    Snapshot,
}

/// Reconnect backoff: the n-th consecutive failure waits
/// `min(max, initial × multiplier^(n−1))`, scaled by a random factor in
/// `[1 − jitter, 1 + jitter]`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Wait after the first failure (default 100 ms).
    pub initial: Duration,
    /// Growth per further failure (default 2).
    pub multiplier: f64,
    /// Longest wait (default 5 s: Raft retries on its own schedule too).
    pub max: Duration,
    /// Relative jitter, from 0 to 1 (default 0.2).
    pub jitter: f64,
}

crate::config::setters!(Backoff {
    with_initial => initial: Duration,
    with_multiplier => multiplier: f64,
    with_max => max: Duration,
    with_jitter => jitter: f64,
});

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// No wait at all: every failure may be retried at once (what an
    /// in-memory network wants, where a connect costs nothing).
    pub fn none() -> Backoff {
        Backoff::default()
            .with_initial(Duration::ZERO)
            .with_max(Duration::ZERO)
    }

    /// The wait before retrying after `failures` consecutive failures
    /// (at least 1), before jitter.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(1000) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(secs.min(self.max.as_secs_f64())).unwrap_or(self.max)
    }

    /// The wait with jitter; `unit` is a random number in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        self.base_delay(failures).mul_f64(factor)
    }
}

/// Configuration of a [`PeerPool`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections per peer (default 3; at least 1).
    pub slots_per_peer: usize,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// A connect attempt not finished after this long fails (default 5 s).
    pub connect_timeout: Duration,
    /// Seed of the jitter generator: the same seed gives the same schedule.
    pub seed: u64,
}

crate::config::setters!(PoolConfig {
    with_slots_per_peer => slots_per_peer: usize,
    with_backoff => backoff: Backoff,
    with_connect_timeout => connect_timeout: Duration,
    with_seed => seed: u64,
});

impl Default for PoolConfig {
    fn default() -> Self {
        crate::config::Config::default().client().pool
    }
}

/// Identifies one connection (one connect attempt) of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Which connection a call should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Open the call's stream on this ready connection now, and report it
    /// with [`PeerPool::stream_opened`].
    Ready(ConnId),
    /// Open this new connection (then report [`PeerPool::connected`] or
    /// [`PeerPool::connect_failed`]); the call waits for it.
    Connect(ConnId),
    /// The connection is being opened, or is at its stream limit: wait for
    /// it to become ready or for a stream to close, then pick again.
    Wait(ConnId),
}

/// What the pool asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEvent {
    /// Close this connection: it drained after GOAWAY, or its peer was
    /// removed.
    Close(ConnId),
    /// Abandon this connect attempt: it took longer than the connect
    /// timeout (already counted as a failure).
    AbandonConnect(ConnId),
}

/// The state of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No connection; one is opened on first use.
    Idle,
    /// A connection is being opened.
    Connecting {
        /// The attempt.
        conn: ConnId,
        /// When it started.
        since: Instant,
    },
    /// A connection is open.
    Ready {
        /// The connection.
        conn: ConnId,
        /// Streams open on it.
        streams: usize,
        /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS.
        max_streams: usize,
    },
    /// Connecting failed; no new attempt before `retry_at`.
    Failed {
        /// When the slot may connect again.
        retry_at: Instant,
    },
}

/// The connections the pool holds for one peer (see
/// [`PeerPool::peer_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConnections {
    /// Its slots, in lane order (control first, snapshot last); empty for a
    /// peer the pool does not know.
    pub slots: Vec<SlotState>,
    /// Its connections that take no new stream and close once their
    /// streams are done (after a GOAWAY, or a retired peer's).
    pub draining: usize,
    /// Consecutive failed connects (0 once one succeeds).
    pub failures: u32,
    /// Why the last connect failed, while failures last.
    pub last_error: Option<Status>,
}

#[derive(Debug)]
struct Peer {
    slots: Vec<SlotState>,
    /// Consecutive failed connects.
    failures: u32,
    last_error: Option<Status>,
    next_replication: usize,
}

#[derive(Debug, Clone, Copy)]
struct ConnInfo {
    slot: usize,
    /// Streams of a draining connection (after GOAWAY).
    draining_streams: Option<usize>,
}

/// The connection pool of every peer.
#[derive(Debug)]
pub struct PeerPool {
    config: PoolConfig,
    peers: HashMap<String, Peer>,
    conns: BTreeMap<ConnId, (String, ConnInfo)>,
    next_conn: u64,
    rng: u64,
    events: VecDeque<PoolEvent>,
}

impl PeerPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        PeerPool {
            config: PoolConfig {
                slots_per_peer: config.slots_per_peer.max(1),
                ..config
            },
            peers: HashMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            rng: config.seed,
            events: VecDeque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The slots of `lane`, in the order they are tried.
    fn lane_slots(&self, lane: Lane) -> std::ops::Range<usize> {
        let n = self.config.slots_per_peer;
        match (n, lane) {
            (1, _) => 0..1,
            (_, Lane::Control) => 0..1,
            (2, _) => 1..2,
            (_, Lane::Replication) => 1..n - 1,
            (_, Lane::Snapshot) => n - 1..n,
        }
    }

    /// The lanes slot `slot` of a peer carries, as a metrics label:
    /// `"control"`, `"replication"`, `"snapshot"`, or the lanes it shares
    /// joined by `+` (`"replication+snapshot"` with two slots per peer,
    /// `"control+replication+snapshot"` with one).
    ///
    /// ```
    /// use raft_grpc_transport::pool::{PeerPool, PoolConfig};
    ///
    /// let pool = PeerPool::new(PoolConfig::default().with_slots_per_peer(3));
    /// assert_eq!(pool.slot_lanes(0), "control");
    /// assert_eq!(pool.slot_lanes(2), "snapshot");
    /// let pool = PeerPool::new(PoolConfig::default().with_slots_per_peer(2));
    /// assert_eq!(pool.slot_lanes(1), "replication+snapshot");
    /// ```
    pub fn slot_lanes(&self, slot: usize) -> &'static str {
        let carries = |lane| self.lane_slots(lane).contains(&slot);
        match (
            carries(Lane::Control),
            carries(Lane::Replication),
            carries(Lane::Snapshot),
        ) {
            (true, true, true) => "control+replication+snapshot",
            (true, true, false) => "control+replication",
            (true, false, true) => "control+snapshot",
            (true, false, false) => "control",
            (false, true, true) => "replication+snapshot",
            (false, true, false) => "replication",
            (false, false, true) => "snapshot",
            (false, false, false) => "none",
        }
    }

    /// Chooses the connection for a call to `peer` on `lane`.
    ///
    /// Fails fast with `UNAVAILABLE` when none of the lane's slots is ready
    /// and they are all waiting out a reconnect backoff.
    pub fn pick(&mut self, peer: &str, lane: Lane, now: Instant) -> Result<Pick, Status> {
        self.expire_backoffs(now);
        let range = self.lane_slots(lane);
        let n = self.config.slots_per_peer;
        let peer_state = self.peers.entry(peer.to_owned()).or_insert_with(|| Peer {
            slots: vec![SlotState::Idle; n],
            failures: 0,
            last_error: None,
            next_replication: 0,
        });
        // Try the lane's slots starting at the round-robin position.
        let len = range.len();
        let start = if lane == Lane::Replication {
            let s = peer_state.next_replication % len;
            peer_state.next_replication = peer_state.next_replication.wrapping_add(1);
            s
        } else {
            0
        };
        let order: Vec<usize> = (0..len).map(|i| range.start + (start + i) % len).collect();

        // 1. In round-robin order, the first slot that is ready with room,
        // or idle (it connects on its first turn).
        let usable = order.iter().copied().find(|&i| match peer_state.slots[i] {
            SlotState::Ready {
                streams,
                max_streams,
                ..
            } => streams < max_streams,
            SlotState::Idle => true,
            _ => false,
        });
        if let Some(i) = usable {
            if let SlotState::Ready { conn, .. } = peer_state.slots[i] {
                return Ok(Pick::Ready(conn));
            }
            let conn = ConnId(self.next_conn);
            self.next_conn += 1;
            peer_state.slots[i] = SlotState::Connecting { conn, since: now };
            self.conns.insert(
                conn,
                (
                    peer.to_owned(),
                    ConnInfo {
                        slot: i,
                        draining_streams: None,
                    },
                ),
            );
            return Ok(Pick::Connect(conn));
        }
        // 3. A connection being opened, or the least loaded full one.
        let waiting = order
            .iter()
            .filter_map(|&i| match peer_state.slots[i] {
                SlotState::Connecting { conn, .. } => Some((0, conn)),
                SlotState::Ready { conn, streams, .. } => Some((streams + 1, conn)),
                _ => None,
            })
            .min();
        if let Some((_, conn)) = waiting {
            return Ok(Pick::Wait(conn));
        }
        // 4. Every slot of the lane is failing.
        let reason = peer_state
            .last_error
            .as_ref()
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        Err(Status::new(
            Code::Unavailable,
            format!("peer {peer} is unreachable, retrying later: {reason}"),
        ))
    }

    /// The state of one slot of a peer, if the peer is known.
    pub fn slot_state(&self, peer: &str, slot: usize) -> Option<SlotState> {
        self.peers.get(peer)?.slots.get(slot).copied()
    }

    /// The peer and slot a connection belongs to.
    pub fn slot_of(&self, conn: ConnId) -> Option<(&str, usize)> {
        self.conns
            .get(&conn)
            .map(|(peer, info)| (peer.as_str(), info.slot))
    }

    /// A connection opened; `max_streams` is the peer's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (`None`: unlimited).
    pub fn connected(&mut self, conn: ConnId, max_streams: Option<u32>, now: Instant) {
        let _ = now;
        let Some((peer, info)) = self.conns.get(&conn) else {
            return;
        };
        let Some(peer_state) = self.peers.get_mut(peer.as_str()) else {
            return;
        };
        if matches!(peer_state.slots[info.slot], SlotState::Connecting { conn: c, .. } if c == conn)
        {
            peer_state.slots[info.slot] = SlotState::Ready {
                conn,
                streams: 0,
                max_streams: max_streams.map_or(usize::MAX, |m| m as usize),
            };
            peer_state.failures = 0;
            peer_state.last_error = None;
        }
    }

    /// The peer changed its SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn set_max_streams(&mut self, conn: ConnId, max_streams: Option<u32>) {
        if let Some(SlotState::Ready { max_streams: m, .. }) = self.slot_mut(conn) {
            *m = max_streams.map_or(usize::MAX, |m| m as usize);
        }
    }

    /// A connect attempt failed: the peer's idle slots wait out the next
    /// backoff.
    pub fn connect_failed(&mut self, conn: ConnId, error: Status, now: Instant) {
        let Some((peer, info)) = self.conns.remove(&conn) else {
            return;
        };
        let Some(peer_state) = self.peers.get_mut(peer.as_str()) else {
            return;
        };
        if !matches!(peer_state.slots[info.slot], SlotState::Connecting { conn: c, .. } if c == conn)
        {
            return;
        }
        peer_state.failures = peer_state.failures.saturating_add(1);
        peer_state.last_error = Some(error);
        self.rng = splitmix64(self.rng);
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let retry_at = now + self.config.backoff.delay(peer_state.failures, unit);
        peer_state.slots[info.slot] = SlotState::Failed { retry_at };
        for slot in &mut peer_state.slots {
            if *slot == SlotState::Idle {
                *slot = SlotState::Failed { retry_at };
            }
        }
    }

    /// An open connection closed or broke. Its slot reconnects on next
    /// use, without backoff: a failed reconnect starts one.
    pub fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        let _ = now;
        let Some((peer, info)) = self.conns.remove(&conn) else {
            return;
        };
        if info.draining_streams.is_some() {
            return;
        }
        if let Some(peer_state) = self.peers.get_mut(peer.as_str()) {
            let slot = &mut peer_state.slots[info.slot];
            if matches!(*slot, SlotState::Ready { conn: c, .. } | SlotState::Connecting { conn: c, .. } if c == conn)
            {
                *slot = SlotState::Idle;
            }
        }
    }

    /// The peer sent GOAWAY on this connection: it takes no new stream and
    /// its slot is free for a new connection.
    pub fn goaway(&mut self, conn: ConnId) {
        let Some((peer, info)) = self.conns.get_mut(&conn) else {
            return;
        };
        if info.draining_streams.is_some() {
            return;
        }
        let Some(peer_state) = self.peers.get_mut(peer.as_str()) else {
            return;
        };
        let streams = match peer_state.slots[info.slot] {
            SlotState::Ready {
                conn: c, streams, ..
            } if c == conn => streams,
            _ => 0,
        };
        peer_state.slots[info.slot] = SlotState::Idle;
        info.draining_streams = Some(streams);
        if streams == 0 {
            self.conns.remove(&conn);
            self.events.push_back(PoolEvent::Close(conn));
        }
    }

    /// Streams open on this connection (0 for one unknown or closed).
    pub fn open_streams(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            Some((
                _,
                ConnInfo {
                    draining_streams: Some(n),
                    ..
                },
            )) => *n,
            _ => match self
                .slot_of(conn)
                .and_then(|(peer, slot)| self.slot_state(peer, slot))
            {
                Some(SlotState::Ready { streams, .. }) => streams,
                _ => 0,
            },
        }
    }

    /// A stream was opened on this connection.
    pub fn stream_opened(&mut self, conn: ConnId) {
        if let Some(SlotState::Ready { streams, .. }) = self.slot_mut(conn) {
            *streams += 1;
        }
    }

    /// A stream on this connection ended.
    pub fn stream_closed(&mut self, conn: ConnId) {
        let draining = match self.conns.get_mut(&conn) {
            Some((
                _,
                ConnInfo {
                    draining_streams: Some(n),
                    ..
                },
            )) => {
                *n = n.saturating_sub(1);
                Some(*n)
            }
            _ => None,
        };
        match draining {
            Some(0) => {
                self.conns.remove(&conn);
                self.events.push_back(PoolEvent::Close(conn));
            }
            Some(_) => {}
            None => {
                if let Some(SlotState::Ready { streams, .. }) = self.slot_mut(conn) {
                    *streams = streams.saturating_sub(1);
                }
            }
        }
    }

    /// Forgets a peer; each of its connections, open or still being
    /// opened, is reported as [`PoolEvent::Close`].
    pub fn remove_peer(&mut self, peer: &str) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        let gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, (p, _))| p == peer)
            .map(|(c, _)| *c)
            .collect();
        for conn in gone {
            self.conns.remove(&conn);
            self.events.push_back(PoolEvent::Close(conn));
        }
    }

    /// Retires a peer gracefully: each of its open connections takes no new
    /// stream and is reported as [`PoolEvent::Close`] once its open streams
    /// are done (at once when it has none), as after a GOAWAY; connections
    /// still being opened are closed at once. Its backoff is forgotten: a
    /// later [`pick`](Self::pick) for it connects afresh.
    pub fn retire_peer(&mut self, peer: &str) {
        let Some(peer_state) = self.peers.get(peer) else {
            return;
        };
        let slots = peer_state.slots.clone();
        for slot in slots {
            match slot {
                SlotState::Ready { conn, .. } => self.goaway(conn),
                SlotState::Connecting { conn, .. } => {
                    self.conns.remove(&conn);
                    self.events.push_back(PoolEvent::Close(conn));
                }
                SlotState::Idle | SlotState::Failed { .. } => {}
            }
        }
        self.peers.remove(peer);
    }

    /// What the pool holds for `peer`: its slots, its connections draining
    /// after a GOAWAY or a retirement, and its connect failures.
    pub fn peer_connections(&self, peer: &str) -> PeerConnections {
        let draining = self
            .conns
            .values()
            .filter(|(p, info)| p == peer && info.draining_streams.is_some())
            .count();
        match self.peers.get(peer) {
            Some(state) => PeerConnections {
                slots: state.slots.clone(),
                draining,
                failures: state.failures,
                last_error: state.last_error.clone(),
            },
            None => PeerConnections {
                slots: Vec::new(),
                draining,
                failures: 0,
                last_error: None,
            },
        }
    }

    /// The peers the pool knows.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Time passed: backoffs end, slow connects are abandoned. Spurious
    /// calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_backoffs(now);
        let timeout = self.config.connect_timeout;
        let slow: Vec<ConnId> = self
            .peers
            .values()
            .flat_map(|p| p.slots.iter())
            .filter_map(|s| match *s {
                SlotState::Connecting { conn, since } if now >= since + timeout => Some(conn),
                _ => None,
            })
            .collect();
        for conn in slow {
            self.events.push_back(PoolEvent::AbandonConnect(conn));
            self.connect_failed(
                conn,
                Status::new(
                    Code::Unavailable,
                    format!("connect timed out after {timeout:?}"),
                ),
                now,
            );
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| p.slots.iter())
            .filter_map(|s| match *s {
                SlotState::Failed { retry_at } => Some(retry_at),
                SlotState::Connecting { since, .. } => Some(since + self.config.connect_timeout),
                _ => None,
            })
            .min()
    }

    /// The next thing the pool asks of its caller.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    fn expire_backoffs(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            for slot in &mut peer.slots {
                if matches!(*slot, SlotState::Failed { retry_at } if now >= retry_at) {
                    *slot = SlotState::Idle;
                }
            }
        }
    }

    fn slot_mut(&mut self, conn: ConnId) -> Option<&mut SlotState> {
        let (peer, info) = self.conns.get(&conn)?;
        if info.draining_streams.is_some() {
            return None;
        }
        let slot = self
            .peers
            .get_mut(peer.as_str())?
            .slots
            .get_mut(info.slot)?;
        match slot {
            SlotState::Ready { conn: c, .. } if *c == conn => Some(slot),
            _ => None,
        }
    }
}

/// One step of the SplitMix64 generator.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "10.0.0.2:7000";

    fn pool(slots: usize) -> PeerPool {
        PeerPool::new(PoolConfig {
            slots_per_peer: slots,
            ..PoolConfig::default()
        })
    }

    fn connect(pool: &mut PeerPool, lane: Lane, now: Instant) -> ConnId {
        match pool.pick(PEER, lane, now) {
            Ok(Pick::Connect(conn)) => {
                pool.connected(conn, None, now);
                conn
            }
            other => panic!("expected a connect, got {other:?}"),
        }
    }

    #[test]
    fn lanes_never_share_the_control_slot() {
        let now = Instant::now();
        for n in 2..=6 {
            let mut p = pool(n);
            let control = connect(&mut p, Lane::Control, now);
            let mut others = Vec::new();
            for _ in 0..2 * n {
                for lane in [Lane::Replication, Lane::Snapshot] {
                    match p.pick(PEER, lane, now).unwrap() {
                        Pick::Connect(c) => {
                            p.connected(c, None, now);
                            others.push(c);
                        }
                        Pick::Ready(c) | Pick::Wait(c) => others.push(c),
                    }
                }
            }
            assert!(!others.contains(&control), "{n} slots");
            assert_eq!(p.pick(PEER, Lane::Control, now), Ok(Pick::Ready(control)));
        }
    }

    #[test]
    fn one_slot_is_shared_by_every_lane() {
        let now = Instant::now();
        let mut p = pool(1);
        let conn = connect(&mut p, Lane::Snapshot, now);
        assert_eq!(p.pick(PEER, Lane::Control, now), Ok(Pick::Ready(conn)));
        assert_eq!(p.pick(PEER, Lane::Replication, now), Ok(Pick::Ready(conn)));
    }

    #[test]
    fn replication_round_robins() {
        let now = Instant::now();
        let mut p = pool(5);
        let mut seen = Vec::new();
        for _ in 0..6 {
            let conn = match p.pick(PEER, Lane::Replication, now).unwrap() {
                Pick::Connect(c) => {
                    p.connected(c, None, now);
                    c
                }
                Pick::Ready(c) => c,
                Pick::Wait(c) => panic!("wait on {c:?}"),
            };
            seen.push(p.slot_of(conn).unwrap().1);
        }
        assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn stream_limit_makes_calls_wait() {
        let now = Instant::now();
        let mut p = pool(3);
        let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Snapshot, now) else {
            panic!()
        };
        assert_eq!(
            p.pick(PEER, Lane::Snapshot, now),
            Ok(Pick::Wait(conn)),
            "still connecting"
        );
        p.connected(conn, Some(1), now);
        assert_eq!(p.pick(PEER, Lane::Snapshot, now), Ok(Pick::Ready(conn)));
        p.stream_opened(conn);
        assert_eq!(p.pick(PEER, Lane::Snapshot, now), Ok(Pick::Wait(conn)));
        p.stream_closed(conn);
        assert_eq!(p.pick(PEER, Lane::Snapshot, now), Ok(Pick::Ready(conn)));
    }

    #[test]
    fn failed_connect_backs_off_and_fails_fast() {
        let now = Instant::now();
        let mut p = pool(3);
        let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        p.connect_failed(
            conn,
            Status::new(Code::Unavailable, "connection refused"),
            now,
        );
        for lane in [Lane::Control, Lane::Replication, Lane::Snapshot] {
            let err = p.pick(PEER, lane, now).unwrap_err();
            assert_eq!(err.code(), Code::Unavailable);
            assert!(err.message().contains("connection refused"), "{err}");
        }
        let retry_at = p.poll_timeout().unwrap();
        let delay = retry_at - now;
        assert!(
            delay >= Duration::from_millis(80) && delay <= Duration::from_millis(120),
            "{delay:?}"
        );
        p.handle_timeout(retry_at);
        assert!(matches!(
            p.pick(PEER, Lane::Control, retry_at),
            Ok(Pick::Connect(_))
        ));
    }

    #[test]
    fn backoff_grows_and_resets_on_success() {
        let backoff = Backoff::default();
        assert_eq!(backoff.base_delay(1), Duration::from_millis(100));
        assert_eq!(backoff.base_delay(2), Duration::from_millis(200));
        assert_eq!(backoff.base_delay(4), Duration::from_millis(800));
        assert_eq!(backoff.base_delay(30), Duration::from_secs(5));
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(80));
        assert_eq!(backoff.delay(1, 1.0), Duration::from_millis(120));

        let mut now = Instant::now();
        let mut p = pool(1);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
                panic!()
            };
            p.connect_failed(conn, Status::new(Code::Unavailable, "refused"), now);
            let retry_at = p.poll_timeout().unwrap();
            delays.push(retry_at - now);
            now = retry_at;
        }
        for (i, d) in delays.iter().enumerate() {
            let base = backoff.base_delay(i as u32 + 1);
            assert!(
                *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
                "{i}: {d:?}"
            );
        }
        let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        p.connected(conn, None, now);
        p.connection_lost(conn, now);
        let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        p.connect_failed(conn, Status::new(Code::Unavailable, "refused"), now);
        let d = p.poll_timeout().unwrap() - now;
        assert!(
            d <= Duration::from_millis(120),
            "failures reset after a success: {d:?}"
        );
    }

    #[test]
    fn same_seed_same_schedule() {
        let schedule = |seed| {
            let mut p = PeerPool::new(PoolConfig {
                seed,
                slots_per_peer: 1,
                ..PoolConfig::default()
            });
            let now = Instant::now();
            let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
                panic!()
            };
            p.connect_failed(conn, Status::new(Code::Unavailable, "x"), now);
            p.poll_timeout().unwrap() - now
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn goaway_drains_then_closes() {
        let now = Instant::now();
        let mut p = pool(3);
        let conn = connect(&mut p, Lane::Control, now);
        p.stream_opened(conn);
        p.goaway(conn);
        assert_eq!(p.poll_event(), None, "a stream is still open");
        // The slot is free for a new connection right away.
        let Ok(Pick::Connect(fresh)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        assert_ne!(fresh, conn);
        p.stream_closed(conn);
        assert_eq!(p.poll_event(), Some(PoolEvent::Close(conn)));
    }

    #[test]
    fn lost_connection_reconnects_without_backoff() {
        let now = Instant::now();
        let mut p = pool(3);
        let conn = connect(&mut p, Lane::Control, now);
        p.connection_lost(conn, now);
        assert!(matches!(p.pick(PEER, Lane::Control, now), Ok(Pick::Connect(c)) if c != conn));
    }

    #[test]
    fn slow_connect_is_abandoned() {
        let now = Instant::now();
        let mut p = pool(3);
        let Ok(Pick::Connect(conn)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(5)));
        p.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(p.poll_event(), Some(PoolEvent::AbandonConnect(conn)));
        assert!(
            p.pick(PEER, Lane::Control, now + Duration::from_secs(5))
                .is_err()
        );
        // A late success for the abandoned attempt is ignored.
        p.connected(conn, None, now + Duration::from_secs(5));
        assert!(matches!(
            p.slot_state(PEER, 0),
            Some(SlotState::Failed { .. })
        ));
    }

    #[test]
    fn retiring_a_peer_drains_its_connections_and_forgets_its_backoff() {
        let now = Instant::now();
        let mut p = pool(3);
        let busy = connect(&mut p, Lane::Control, now);
        p.stream_opened(busy);
        let idle = connect(&mut p, Lane::Snapshot, now);
        let Ok(Pick::Connect(opening)) = p.pick(PEER, Lane::Replication, now) else {
            panic!()
        };
        p.retire_peer(PEER);
        let mut closed = vec![p.poll_event(), p.poll_event()];
        closed.sort_by_key(|e| format!("{e:?}"));
        let mut expected = vec![
            Some(PoolEvent::Close(idle)),
            Some(PoolEvent::Close(opening)),
        ];
        expected.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(closed, expected);
        assert_eq!(
            p.poll_event(),
            None,
            "the busy connection stays while its stream runs"
        );
        assert_eq!(p.open_streams(busy), 1);
        assert_eq!(p.peers().count(), 0);
        // A later call connects afresh, beside the draining connection.
        let Ok(Pick::Connect(fresh)) = p.pick(PEER, Lane::Control, now) else {
            panic!()
        };
        assert_ne!(fresh, busy);
        p.stream_closed(busy);
        assert_eq!(p.poll_event(), Some(PoolEvent::Close(busy)));
    }

    #[test]
    fn removing_a_peer_closes_its_connections() {
        let now = Instant::now();
        let mut p = pool(3);
        let a = connect(&mut p, Lane::Control, now);
        let b = connect(&mut p, Lane::Snapshot, now);
        p.remove_peer(PEER);
        let mut closed = vec![p.poll_event(), p.poll_event()];
        closed.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            closed,
            vec![Some(PoolEvent::Close(a)), Some(PoolEvent::Close(b))]
        );
        assert_eq!(p.peers().count(), 0);
    }
}
