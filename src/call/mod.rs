//! Per-call state machines: one gRPC call on one HTTP/2 stream.
//!
//! This module owns what a single call does, on either side, whatever its
//! shape (unary, client streaming, bidirectional):
//! * [`ClientCall`]: the request head, the request messages under HTTP/2
//!   flow control, the response head, messages and trailers, resets, a lost
//!   connection and the deadline, ending in exactly one
//!   [`ClientEvent::Finished`];
//! * [`ServerCall`]: validation of the request head, requests decoded as
//!   data arrives (an InstallSnapshot stream through
//!   [`crate::snapshot::SnapshotReceiver`]), the application's responses,
//!   and the response head, messages and trailers (or a Trailers-Only
//!   answer), under the deadline of `grpc-timeout`.
//!
//! It does not own connections, pool slots or which stream a call uses
//! (that is [`crate::pool`]), nor the order of pipelined responses
//! ([`crate::pipeline`]).
//!
//! # Driving a call
//!
//! A call never does I/O. Its inputs are `handle_*` methods, each taking
//! `now`; its outputs are pulled:
//! * `poll_transmit(capacity)` after every input and whenever HTTP/2 grants
//!   send capacity: what to put on the stream (data, trailers, a reset).
//!   Data is never larger than `capacity`; `send_wanted()` says how much to
//!   reserve.
//! * `poll_event()` after every input: what happened (a message arrived, the
//!   call finished).
//! * `poll_timeout()` after every input: when to call `handle_timeout`.
//!
//! Receive flow control: release a DATA chunk's capacity when you pass it
//! to `handle_data`, and pass data only while `wants_data()` is true, so
//! that what a call buffers stays bounded by one message plus the HTTP/2
//! window.

mod client;
mod server;

pub use client::{ClientCall, ClientEvent, ClientTransmit};
pub use server::{RespondError, ServerCall, ServerCallConfig, ServerEvent, ServerTransmit};

use std::collections::VecDeque;

use bytes::Bytes;

use crate::framing::EncodedMessage;

/// Pieces at most this long are joined with their neighbours (see
/// [`ClientCall::join_small_pieces`]).
pub const JOIN_PIECE_MAX: usize = 16 * 1024;
/// The most bytes one joined piece carries.
pub const JOIN_MAX: usize = 64 * 1024;

/// Encoded message chunks waiting for HTTP/2 send capacity.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
    join_small: bool,
}

impl SendQueue {
    pub(crate) fn push(&mut self, message: EncodedMessage) {
        for chunk in message.into_chunks() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// From now on, runs of small pieces (at most [`JOIN_PIECE_MAX`] each)
    /// come out copied together, up to [`JOIN_MAX`] bytes: an HTTP/2
    /// library writes each DATA frame with a system call of its own, so 64
    /// pipelined 1 KiB appends would otherwise cost 64 writes and wake the
    /// peer as often. Large pieces (zero-copy payloads) still come out as
    /// they are.
    pub(crate) fn join_small_pieces(&mut self) {
        self.join_small = true;
    }

    /// Up to `max` bytes from the front, as a slice of a queued chunk (no
    /// copy), or small pieces joined (see
    /// [`join_small_pieces`](Self::join_small_pieces)). `None` when empty
    /// or `max` is 0.
    pub(crate) fn pop(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        if let Some(joined) = self.pop_joined(max) {
            return Some(joined);
        }
        let front = self.chunks.front_mut()?;
        let out = if front.len() <= max {
            self.chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= out.len();
        Some(out)
    }

    /// A run of at least two small pieces at the front, copied together.
    fn pop_joined(&mut self, max: usize) -> Option<Bytes> {
        let small = |c: &Bytes| c.len() <= JOIN_PIECE_MAX;
        let limit = max.min(JOIN_MAX);
        let joinable = self.join_small
            && self.chunks.len() >= 2
            && small(&self.chunks[0])
            && small(&self.chunks[1])
            && self.chunks[0].len() + self.chunks[1].len() <= limit;
        if !joinable {
            return None;
        }
        let mut joined = bytes::BytesMut::new();
        while let Some(front) = self.chunks.front() {
            if !small(front) || joined.len() + front.len() > limit {
                break;
            }
            joined.extend_from_slice(front);
            self.chunks.pop_front();
        }
        self.len -= joined.len();
        Some(joined.freeze())
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::MessageEncoder;
    use crate::message::SnapshotChunk;

    #[test]
    fn send_queue_respects_capacity_without_copying() {
        let payload = Bytes::from(vec![1u8; 100_000]);
        let encoded = MessageEncoder::new(usize::MAX, 1024)
            .encode(&SnapshotChunk {
                data: payload.clone(),
                data_crc32c: None,
            })
            .unwrap();
        let total = encoded.len();
        let mut queue = SendQueue::default();
        queue.push(encoded);
        assert_eq!(queue.len(), total);
        let mut sent = 0;
        let mut shared = 0;
        while let Some(chunk) = queue.pop(65_535) {
            assert!(chunk.len() <= 65_535);
            if payload.as_ptr_range().contains(&chunk.as_ptr()) {
                shared += chunk.len();
            }
            sent += chunk.len();
        }
        assert_eq!(sent, total);
        assert_eq!(shared, 100_000);
        assert!(queue.is_empty());
        assert_eq!(queue.pop(10), None);
    }

    fn push(queue: &mut SendQueue, piece: Bytes) {
        queue.len += piece.len();
        queue.chunks.push_back(piece);
    }

    fn piece(len: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    #[test]
    fn small_pieces_are_joined_large_ones_pass_through_in_order() {
        let big = Bytes::from(vec![9u8; JOIN_PIECE_MAX + 1]);
        let mut queue = SendQueue::default();
        queue.join_small_pieces();
        push(&mut queue, piece(1000, 1));
        push(&mut queue, piece(1000, 2));
        push(&mut queue, big.clone());
        push(&mut queue, piece(10, 3));
        push(&mut queue, piece(10, 4));
        let total = queue.len();
        let out: Vec<Bytes> = std::iter::from_fn(|| queue.pop(usize::MAX)).collect();
        assert_eq!(out.len(), 3, "two runs joined around the large piece");
        assert_eq!(out[0].len(), 2000);
        assert_eq!(
            out[1].as_ptr(),
            big.as_ptr(),
            "the large piece is not copied"
        );
        assert_eq!(
            out[2][..],
            [3u8; 10]
                .iter()
                .chain(&[4u8; 10])
                .copied()
                .collect::<Vec<u8>>()[..]
        );
        assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), total);
    }

    #[test]
    fn a_joined_piece_stays_within_the_bound_and_the_capacity() {
        let mut queue = SendQueue::default();
        queue.join_small_pieces();
        for i in 0..200 {
            push(&mut queue, piece(1000, i as u8));
        }
        let mut all = Vec::new();
        while let Some(out) = queue.pop(10_000) {
            assert!(out.len() <= 10_000);
            all.extend_from_slice(&out);
        }
        assert_eq!(all.len(), 200_000);
        assert!(
            all.chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|b| *b == i as u8))
        );
        // Without joining, pieces come out one by one.
        let mut plain = SendQueue::default();
        push(&mut plain, piece(1000, 1));
        push(&mut plain, piece(1000, 2));
        assert_eq!(plain.pop(usize::MAX).unwrap().len(), 1000);
    }
}
