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
pub use server::{RespondError, ServerCall, ServerConfig, ServerEvent, ServerTransmit};

use std::collections::VecDeque;

use bytes::Bytes;

use crate::framing::EncodedMessage;

/// HTTP/2 error code NO_ERROR, for RST_STREAM.
pub const NO_ERROR: u32 = 0x0;
/// HTTP/2 error code INTERNAL_ERROR, for RST_STREAM.
pub const INTERNAL_ERROR: u32 = 0x2;
/// HTTP/2 error code CANCEL, for RST_STREAM.
pub const CANCEL: u32 = 0x8;

/// Encoded message chunks waiting for HTTP/2 send capacity.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
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

    /// Up to `max` bytes from the front, as a slice of a queued chunk (no
    /// copy). `None` when empty or `max` is 0.
    pub(crate) fn pop(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
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
}
