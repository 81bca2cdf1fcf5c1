//! Progress of an InstallSnapshot stream, on both sides.
//!
//! This module owns:
//! * [`SnapshotSender`]: cuts the snapshot's bytes, however the source
//!   delivers them, into [`SnapshotChunk`] messages that fit under the
//!   peer's receive limit, never empty, each carrying the running CRC-32C;
//!   counts what was sent, and refuses a source that runs past the declared
//!   size or ends before it;
//! * [`SnapshotReceiver`]: counts the bytes that arrive (data in the first
//!   message and empty chunks accepted, as other senders do both), verifies
//!   the running CRC-32C whenever a chunk carries one, and fails a stream
//!   that runs long or ends short;
//! * the deadline of an install ([`snapshot_timeout`]: hashicorp's timeout
//!   scaled by size) and a stall detector ([`StallDetector`]: no progress
//!   for a while fails the install even before the deadline);
//! * [`SnapshotProgress`]: bytes, total and rate, for a caller to show.
//!
//! It owns no stream: the call machines carry the messages.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::{InstallSnapshotRequest, SnapshotChunk};
use crate::status::{Code, Status};

/// hashicorp/raft's `TimeoutScale`: the install timeout grows by one
/// `timeout` per 256 KiB of snapshot.
pub const DEFAULT_TIMEOUT_SCALE: u64 = 256 * 1024;

/// Default size of the data in one snapshot message: 1 MiB, a quarter of
/// the 4 MiB a grpc-go peer accepts by default.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;

/// Room for the protobuf keys, lengths and checksum around a chunk's data.
const CHUNK_OVERHEAD: usize = 16;

/// The timeout of an install of `size` bytes: `max(timeout, timeout × ⌊size
/// / scale⌋)`, as hashicorp/raft computes it.
///
/// ```
/// use std::time::Duration;
/// use raft_grpc_transport::snapshot::{snapshot_timeout, DEFAULT_TIMEOUT_SCALE};
///
/// let ten = Duration::from_secs(10);
/// assert_eq!(snapshot_timeout(ten, 1000, DEFAULT_TIMEOUT_SCALE), ten);
/// assert_eq!(snapshot_timeout(ten, 1 << 30, DEFAULT_TIMEOUT_SCALE), ten * 4096);
/// ```
pub fn snapshot_timeout(timeout: Duration, size: u64, scale: u64) -> Duration {
    let nanos = timeout
        .as_nanos()
        .saturating_mul(u128::from(size / scale.max(1)));
    let scaled = u64::try_from(nanos / 1_000_000_000).map_or(Duration::MAX, |secs| {
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    });
    scaled.max(timeout)
}

/// What went wrong with a snapshot's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// More bytes than the declared size.
    #[error("snapshot runs past its declared size of {size} bytes")]
    TooLong {
        /// The declared size.
        size: u64,
    },
    /// The stream or the source ended before the declared size.
    #[error("snapshot ended after {received} of {size} bytes")]
    Short {
        /// Bytes that arrived.
        received: u64,
        /// The declared size.
        size: u64,
    },
    /// A chunk's running checksum does not match the bytes received.
    #[error(
        "snapshot checksum mismatch after {offset} bytes: sender has {expected:#010x}, received bytes give {actual:#010x}"
    )]
    ChecksumMismatch {
        /// Bytes received up to and including the bad chunk.
        offset: u64,
        /// The checksum the chunk carried.
        expected: u32,
        /// The checksum of what arrived.
        actual: u32,
    },
    /// No progress for too long.
    #[error("snapshot transfer stalled: no progress for {0:?}")]
    Stalled(Duration),
}

impl SnapshotError {
    /// The status to end the install with: `DATA_LOSS` for bytes that do
    /// not add up, `DEADLINE_EXCEEDED` for a stall.
    pub fn status(&self) -> Status {
        let code = match self {
            SnapshotError::Stalled(_) => Code::DeadlineExceeded,
            _ => Code::DataLoss,
        };
        Status::new(code, self.to_string())
    }
}

/// How far a snapshot transfer got.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SnapshotProgress {
    /// Bytes transferred so far.
    pub bytes: u64,
    /// The snapshot's declared size.
    pub total: u64,
    /// Time since the transfer started.
    pub elapsed: Duration,
}

impl SnapshotProgress {
    /// Mean rate since the start, in bytes per second (0 before any time
    /// has passed).
    pub fn bytes_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }

    /// Fraction done, from 0 to 1 (1 for an empty snapshot).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.bytes as f64 / self.total as f64
        }
    }
}

/// Fails a transfer that makes no progress for `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallDetector {
    timeout: Duration,
    last_progress: Instant,
}

impl StallDetector {
    /// A detector started at `now`.
    pub fn new(timeout: Duration, now: Instant) -> Self {
        StallDetector {
            timeout,
            last_progress: now,
        }
    }

    /// Progress was made at `now`.
    pub fn progress(&mut self, now: Instant) {
        self.last_progress = self.last_progress.max(now);
    }

    /// When the transfer counts as stalled if nothing happens before.
    pub fn deadline(&self) -> Instant {
        self.last_progress + self.timeout
    }

    /// An error if there was no progress for the whole timeout.
    pub fn check(&self, now: Instant) -> Result<(), SnapshotError> {
        if now >= self.deadline() {
            Err(SnapshotError::Stalled(self.timeout))
        } else {
            Ok(())
        }
    }
}

/// The sending side of an InstallSnapshot stream.
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use raft_grpc_transport::message::InstallSnapshotRequest;
/// use raft_grpc_transport::snapshot::SnapshotSender;
///
/// let now = Instant::now();
/// let meta = InstallSnapshotRequest { size: 5, ..Default::default() };
/// let mut sender = SnapshotSender::new(meta, 3, now);
/// let chunks = sender.push(Bytes::from_static(b"hello"), now)?;
/// assert_eq!(chunks.len(), 2); // "hel", "lo"
/// sender.finish()?;
/// # Ok::<(), raft_grpc_transport::snapshot::SnapshotError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SnapshotSender {
    meta: InstallSnapshotRequest,
    chunk_size: usize,
    sent: u64,
    crc: u32,
    started: Instant,
}

impl SnapshotSender {
    /// A sender for the snapshot described by `meta`, putting at most
    /// `max_chunk` bytes of data in one message.
    pub fn new(meta: InstallSnapshotRequest, max_chunk: usize, now: Instant) -> Self {
        SnapshotSender {
            meta,
            chunk_size: max_chunk.max(1),
            sent: 0,
            crc: 0,
            started: now,
        }
    }

    /// The largest chunk that fits, with its envelope, in a message of
    /// `max_message_len` bytes.
    pub fn chunk_size_for(max_message_len: usize, wanted: usize) -> usize {
        wanted
            .min(max_message_len.saturating_sub(CHUNK_OVERHEAD))
            .max(1)
    }

    /// The first message of the stream: metadata only, no data.
    pub fn metadata(&self) -> &InstallSnapshotRequest {
        &self.meta
    }

    /// Bytes the source still owes.
    pub fn remaining(&self) -> u64 {
        self.meta.size - self.sent
    }

    /// Cuts bytes read from the source into chunk messages (none empty;
    /// slices of `data`, not copies). Fails if the source runs past the
    /// declared size.
    pub fn push(&mut self, data: Bytes, now: Instant) -> Result<Vec<SnapshotChunk>, SnapshotError> {
        let _ = now;
        if data.len() as u64 > self.remaining() {
            return Err(SnapshotError::TooLong {
                size: self.meta.size,
            });
        }
        let mut chunks = Vec::with_capacity(data.len().div_ceil(self.chunk_size));
        let mut rest = data;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(self.chunk_size));
            self.crc = crc32c::crc32c_append(self.crc, &piece);
            self.sent += piece.len() as u64;
            chunks.push(SnapshotChunk {
                data: piece,
                data_crc32c: Some(self.crc),
            });
        }
        Ok(chunks)
    }

    /// The source ended: an error unless exactly the declared size was
    /// read.
    pub fn finish(&self) -> Result<(), SnapshotError> {
        if self.sent == self.meta.size {
            Ok(())
        } else {
            Err(SnapshotError::Short {
                received: self.sent,
                size: self.meta.size,
            })
        }
    }

    /// Bytes handed out so far.
    pub fn progress(&self, now: Instant) -> SnapshotProgress {
        SnapshotProgress {
            bytes: self.sent,
            total: self.meta.size,
            elapsed: now.saturating_duration_since(self.started),
        }
    }
}

/// The receiving side of an InstallSnapshot stream.
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use raft_grpc_transport::message::{InstallSnapshotRequest, SnapshotChunk};
/// use raft_grpc_transport::snapshot::{SnapshotReceiver, SnapshotError};
///
/// let now = Instant::now();
/// let mut receiver = SnapshotReceiver::new(4, now);
/// receiver.receive(SnapshotChunk { data: Bytes::from_static(b"ab"), data_crc32c: None }, now)?;
/// assert_eq!(receiver.finish(), Err(SnapshotError::Short { received: 2, size: 4 }));
/// # Ok::<(), SnapshotError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SnapshotReceiver {
    size: u64,
    received: u64,
    crc: u32,
    started: Instant,
}

impl SnapshotReceiver {
    /// A receiver expecting `size` bytes.
    pub fn new(size: u64, now: Instant) -> Self {
        SnapshotReceiver {
            size,
            received: 0,
            crc: 0,
            started: now,
        }
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.size - self.received
    }

    /// Whether every declared byte arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.size
    }

    /// Takes one chunk (possibly empty); returns its data once counted and,
    /// when it carries a checksum, verified.
    pub fn receive(&mut self, chunk: SnapshotChunk, now: Instant) -> Result<Bytes, SnapshotError> {
        let _ = now;
        if chunk.data.len() as u64 > self.remaining() {
            return Err(SnapshotError::TooLong { size: self.size });
        }
        self.crc = crc32c::crc32c_append(self.crc, &chunk.data);
        self.received += chunk.data.len() as u64;
        match chunk.data_crc32c {
            Some(expected) if expected != self.crc => Err(SnapshotError::ChecksumMismatch {
                offset: self.received,
                expected,
                actual: self.crc,
            }),
            _ => Ok(chunk.data),
        }
    }

    /// The stream ended: an error unless every declared byte arrived.
    pub fn finish(&self) -> Result<(), SnapshotError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(SnapshotError::Short {
                received: self.received,
                size: self.size,
            })
        }
    }

    /// Bytes received so far.
    pub fn progress(&self, now: Instant) -> SnapshotProgress {
        SnapshotProgress {
            bytes: self.received,
            total: self.size,
            elapsed: now.saturating_duration_since(self.started),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn meta(size: u64) -> InstallSnapshotRequest {
        InstallSnapshotRequest {
            size,
            ..Default::default()
        }
    }

    #[test]
    fn timeout_scales_with_size_like_hashicorp() {
        let t = Duration::from_secs(10);
        assert_eq!(snapshot_timeout(t, 0, DEFAULT_TIMEOUT_SCALE), t);
        assert_eq!(
            snapshot_timeout(t, 3 * DEFAULT_TIMEOUT_SCALE - 1, DEFAULT_TIMEOUT_SCALE),
            2 * t
        );
        assert_eq!(snapshot_timeout(t, u64::MAX, 1), Duration::MAX);
        assert_eq!(snapshot_timeout(t, 100, 0), 100 * t);
    }

    #[test]
    fn sender_refuses_long_and_short_sources() {
        let now = Instant::now();
        let mut sender = SnapshotSender::new(meta(4), 10, now);
        assert_eq!(
            sender.push(Bytes::from_static(b"hello"), now),
            Err(SnapshotError::TooLong { size: 4 })
        );
        sender.push(Bytes::from_static(b"hel"), now).unwrap();
        assert_eq!(
            sender.finish(),
            Err(SnapshotError::Short {
                received: 3,
                size: 4
            })
        );
        assert!(
            sender.push(Bytes::new(), now).unwrap().is_empty(),
            "never an empty chunk"
        );
    }

    #[test]
    fn receiver_detects_corruption_and_length() {
        let now = Instant::now();
        let mut sender = SnapshotSender::new(meta(6), 2, now);
        let chunks = sender.push(Bytes::from_static(b"abcdef"), now).unwrap();

        // Reordered chunks fail at the first one out of place.
        let mut receiver = SnapshotReceiver::new(6, now);
        receiver.receive(chunks[0].clone(), now).unwrap();
        let err = receiver.receive(chunks[2].clone(), now).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::ChecksumMismatch { offset: 4, .. }
        ));
        assert_eq!(err.status().code(), Code::DataLoss);

        // A flipped bit too.
        let mut receiver = SnapshotReceiver::new(6, now);
        let mut bad = chunks[0].clone();
        bad.data = Bytes::from_static(b"aB");
        assert!(receiver.receive(bad, now).is_err());

        // Too long.
        let mut receiver = SnapshotReceiver::new(1, now);
        assert_eq!(
            receiver.receive(chunks[0].clone(), now),
            Err(SnapshotError::TooLong { size: 1 })
        );
    }

    #[test]
    fn receiver_accepts_empty_chunks_and_no_checksums() {
        let now = Instant::now();
        let mut receiver = SnapshotReceiver::new(3, now);
        for data in [&b""[..], b"ab", b"", b"c"] {
            receiver
                .receive(
                    SnapshotChunk {
                        data: Bytes::copy_from_slice(data),
                        data_crc32c: None,
                    },
                    now,
                )
                .unwrap();
        }
        receiver.finish().unwrap();
        let progress = receiver.progress(now + Duration::from_secs(2));
        assert_eq!(progress.bytes, 3);
        assert_eq!(progress.bytes_per_second(), 1.5);
        assert_eq!(progress.fraction(), 1.0);
    }

    #[test]
    fn stall_detector() {
        let now = Instant::now();
        let mut stall = StallDetector::new(Duration::from_secs(5), now);
        assert!(stall.check(now + Duration::from_secs(4)).is_ok());
        stall.progress(now + Duration::from_secs(4));
        assert_eq!(stall.deadline(), now + Duration::from_secs(9));
        assert!(stall.check(now + Duration::from_secs(8)).is_ok());
        let err = stall.check(now + Duration::from_secs(9)).unwrap_err();
        assert_eq!(err.status().code(), Code::DeadlineExceeded);
    }

    #[test]
    fn chunk_size_fits_the_message_limit() {
        assert_eq!(SnapshotSender::chunk_size_for(4 << 20, 1 << 20), 1 << 20);
        assert_eq!(SnapshotSender::chunk_size_for(1000, 1 << 20), 984);
        assert_eq!(SnapshotSender::chunk_size_for(0, 10), 1);
    }

    quickcheck! {
        /// Whatever the source's read sizes and the chunk size, the chunks
        /// are non-empty, within the chunk size, and the receiver gets the
        /// same bytes with every checksum verified.
        fn sender_and_receiver_agree(data: Vec<u8>, reads: Vec<u8>, chunk: u8) -> bool {
            let now = Instant::now();
            let data = Bytes::from(data);
            let chunk = usize::from(chunk).max(1);
            let mut sender = SnapshotSender::new(meta(data.len() as u64), chunk, now);
            let mut receiver = SnapshotReceiver::new(data.len() as u64, now);
            let mut rest = data.clone();
            let mut out = Vec::new();
            let mut reads = reads.into_iter().cycle();
            while !rest.is_empty() {
                let n = usize::from(reads.next().unwrap_or(7)).max(1).min(rest.len());
                for c in sender.push(rest.split_to(n), now).unwrap() {
                    if c.data.is_empty() || c.data.len() > chunk {
                        return false;
                    }
                    out.extend_from_slice(&receiver.receive(c, now).unwrap());
                }
            }
            sender.finish().is_ok() && receiver.finish().is_ok() && out == data
        }
    }
}
