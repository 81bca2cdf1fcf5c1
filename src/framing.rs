//! gRPC message framing: the 5-byte prefix (compressed flag, u32 big-endian
//! length) in front of every protobuf message on an HTTP/2 stream.
//!
//! This module owns:
//! * [`MessageEncoder`]: frames a [`RaftMessage`] into an
//!   [`EncodedMessage`], a list of [`Bytes`] chunks in which every large
//!   `bytes` payload (an entry's data, a snapshot chunk) is its own chunk,
//!   sharing the caller's memory instead of being copied; it refuses a
//!   message over the send limit with `RESOURCE_EXHAUSTED`;
//! * [`MessageDecoder`]: turns the DATA of a stream, split anywhere, back
//!   into message bodies. It checks each length against the receive limit
//!   before buffering the body (`RESOURCE_EXHAUSTED`), rejects a compressed
//!   or unknown flag (`INTERNAL`: this library never negotiates
//!   compression), reports a stream that ends inside a message (`INTERNAL`)
//!   and never panics. A body that arrived in one chunk is returned as a
//!   slice of it, without copying.
//!
//! It does not decode protobuf (see [`RaftMessage::decode`]) and knows
//! nothing of HTTP/2 frames: DATA frame boundaries are unrelated to message
//! boundaries, which is why the decoder accepts any split.
//!
//! ```
//! use bytes::Bytes;
//! use raft_grpc_transport::framing::{MessageDecoder, MessageEncoder};
//! use raft_grpc_transport::message::{Log, AppendEntriesRequest, RaftMessage};
//!
//! let request = AppendEntriesRequest {
//!     term: 2,
//!     entries: vec![Log::command(1, 2, vec![0u8; 64 * 1024])],
//!     ..Default::default()
//! };
//! let encoded = MessageEncoder::default().encode(&request)?;
//! // The 64 KiB entry is handed through as a chunk of its own.
//! assert_eq!(encoded.chunks().len(), 2);
//!
//! let mut decoder = MessageDecoder::new(4 * 1024 * 1024);
//! for chunk in encoded.into_chunks() {
//!     decoder.push(chunk);
//! }
//! let body = decoder.next_message()?.expect("one whole message");
//! assert_eq!(AppendEntriesRequest::decode(body).unwrap(), request);
//! decoder.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{FieldWriter, RaftMessage};
use crate::status::{Code, Status};

/// Length of the prefix in front of every message.
pub const PREFIX_LEN: usize = 5;

/// The receive limit grpc-go and tonic apply by default: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

/// Payloads at least this long are sent as chunks of their own by default.
pub const DEFAULT_ZERO_COPY_MIN: usize = 16 * 1024;

/// A message could not be framed for sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message is longer than the send limit.
    #[error("message of {len} bytes exceeds the send limit of {limit} bytes")]
    TooLarge {
        /// Encoded length of the message.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
}

impl EncodeError {
    /// The status to fail the call with: `RESOURCE_EXHAUSTED`.
    pub fn status(&self) -> Status {
        Status::new(Code::ResourceExhausted, self.to_string())
    }
}

/// The DATA of a stream does not frame valid messages. Every error is
/// sticky: the decoder keeps returning it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message's length is over the receive limit.
    #[error("message of {len} bytes exceeds the receive limit of {limit} bytes")]
    TooLarge {
        /// Length the prefix declared.
        len: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The compressed flag is set, but no compression was negotiated (this
    /// library never negotiates any).
    #[error("compressed message received, but no grpc-encoding was negotiated")]
    Compressed,
    /// The flag byte is neither 0 nor 1.
    #[error("invalid compressed flag {0:#04x} in message prefix")]
    InvalidFlag(u8),
    /// The stream ended inside a message.
    #[error("stream ended inside a message: {received} of {expected} bytes received")]
    Truncated {
        /// Bytes of the message (prefix included) that arrived.
        received: usize,
        /// Bytes the message needed (prefix included; 5 while the prefix
        /// itself is incomplete).
        expected: u64,
    },
}

impl FrameError {
    /// The gRPC code for this error: `RESOURCE_EXHAUSTED` for a message over
    /// the limit, `INTERNAL` for everything else.
    pub fn code(&self) -> Code {
        match self {
            FrameError::TooLarge { .. } => Code::ResourceExhausted,
            _ => Code::Internal,
        }
    }

    /// The status to answer or fail the call with.
    pub fn status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

/// A framed message ready for the wire: the prefix and the protobuf bytes,
/// as a list of chunks to send in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedMessage {
    chunks: Vec<Bytes>,
    len: usize,
}

impl EncodedMessage {
    /// The chunks, in order; none is empty, and the first starts with the
    /// 5-byte prefix.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Takes the chunks.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// Total length in bytes, prefix included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a framed message has at least its prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole message in one buffer (copies when there is more than one
    /// chunk; meant for tests and small messages).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [only] => only.clone(),
            chunks => chunks.concat().into(),
        }
    }
}

/// Frames messages for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageEncoder {
    max_message_len: usize,
    zero_copy_min: usize,
}

impl Default for MessageEncoder {
    /// A 4 MiB send limit (what a grpc-go or tonic peer accepts by default)
    /// and payloads of 16 KiB or more sent without copying.
    fn default() -> Self {
        MessageEncoder {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            zero_copy_min: DEFAULT_ZERO_COPY_MIN,
        }
    }
}

impl MessageEncoder {
    /// An encoder refusing messages longer than `max_message_len` bytes (not
    /// counting the prefix), and handing `bytes` payloads of at least
    /// `zero_copy_min` bytes through as chunks of their own.
    pub fn new(max_message_len: usize, zero_copy_min: usize) -> Self {
        MessageEncoder {
            max_message_len,
            zero_copy_min,
        }
    }

    /// The send limit.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Frames `message`. The limit is checked before anything is written.
    pub fn encode<M: RaftMessage>(&self, message: &M) -> Result<EncodedMessage, EncodeError> {
        let body_len = message.encoded_len();
        let limit = self.max_message_len.min(u32::MAX as usize);
        if body_len > limit {
            return Err(EncodeError::TooLarge {
                len: body_len,
                limit,
            });
        }
        // Exactly what is copied, so the buffer is allocated once and never
        // grows (from the old guess, 32 KiB, a 66 KiB AppendEntries grew
        // through 3 reallocations: 229 KiB allocated for 66 KiB written).
        let copied =
            PREFIX_LEN + body_len.saturating_sub(message.zero_copy_len(self.zero_copy_min));
        let mut w = FieldWriter::new(copied, self.zero_copy_min);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[1..].copy_from_slice(&(body_len as u32).to_be_bytes());
        w.raw(&prefix);
        message.encode_fields(&mut w);
        let chunks = w.finish();
        let len = chunks.iter().map(Bytes::len).sum();
        debug_assert_eq!(len, PREFIX_LEN + body_len);
        Ok(EncodedMessage { chunks, len })
    }
}

/// Turns the DATA of one stream back into message bodies.
///
/// Feed it with [`push`](Self::push) as data arrives, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`; at the
/// end of the stream, [`finish`](Self::finish) says whether the stream
/// stopped between messages. Memory held is what was pushed and not yet
/// returned; a body is buffered only after its length passed the limit.
#[derive(Debug, Clone)]
pub struct MessageDecoder {
    max_message_len: usize,
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// Body length of the message whose prefix was read, if any.
    body_len: Option<usize>,
    error: Option<FrameError>,
}

impl MessageDecoder {
    /// A decoder refusing messages longer than `max_message_len` bytes (not
    /// counting the prefix).
    pub fn new(max_message_len: usize) -> Self {
        MessageDecoder {
            max_message_len,
            chunks: VecDeque::new(),
            buffered: 0,
            body_len: None,
            error: None,
        }
    }

    /// The receive limit.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Bytes received and not yet returned as a message.
    pub fn buffered_len(&self) -> usize {
        self.buffered
            + if self.body_len.is_some() {
                PREFIX_LEN
            } else {
                0
            }
    }

    /// Adds data received on the stream. Empty chunks are ignored.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() && self.error.is_none() {
            self.buffered += data.len();
            self.chunks.push_back(data);
        }
    }

    /// The next whole message body, `Ok(None)` when more data is needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let body_len = match self.body_len {
            Some(len) => len,
            None => {
                if self.buffered < PREFIX_LEN {
                    return Ok(None);
                }
                let mut prefix = [0u8; PREFIX_LEN];
                self.take_into(&mut prefix);
                let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
                let checked = match prefix[0] {
                    0 if len as usize <= self.max_message_len => Ok(len as usize),
                    0 => Err(FrameError::TooLarge {
                        len: u64::from(len),
                        limit: self.max_message_len,
                    }),
                    1 => Err(FrameError::Compressed),
                    flag => Err(FrameError::InvalidFlag(flag)),
                };
                match checked {
                    Ok(len) => {
                        self.body_len = Some(len);
                        len
                    }
                    Err(error) => return Err(self.fail(error)),
                }
            }
        };
        if self.buffered < body_len {
            return Ok(None);
        }
        self.body_len = None;
        Ok(Some(self.take_body(body_len)))
    }

    /// Call at the end of the stream: an error if it ended inside a message
    /// (or any earlier error).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.body_len {
            Some(len) => Err(FrameError::Truncated {
                received: PREFIX_LEN + self.buffered,
                expected: (PREFIX_LEN + len) as u64,
            }),
            None if self.buffered > 0 => Err(FrameError::Truncated {
                received: self.buffered,
                expected: PREFIX_LEN as u64,
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.chunks.clear();
        self.buffered = 0;
        self.error = Some(error.clone());
        error
    }

    /// Copies the next `out.len()` buffered bytes into `out` and consumes
    /// them. The caller checked that enough are buffered.
    fn take_into(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&front[..n]);
            front.advance(n);
            filled += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.buffered -= filled;
    }

    /// Takes the next `len` buffered bytes, slicing when they lie in one
    /// chunk and copying only when they span several. The caller checked
    /// that enough are buffered.
    fn take_body(&mut self, len: usize) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        if let Some(front) = self.chunks.front_mut() {
            if front.len() >= len {
                let body = front.split_to(len);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.buffered -= len;
                return body;
            }
        }
        // Not `BytesMut::zeroed` + `take_into`: zeroing the body only to
        // overwrite it doubles the cost of the copy.
        let mut body = BytesMut::with_capacity(len);
        while body.len() < len {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(len - body.len());
            body.extend_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.buffered -= body.len();
        body.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AppendEntriesRequest, Log, SnapshotChunk, TimeoutNowRequest};

    fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn prefix_is_flag_and_big_endian_length() {
        let encoded = MessageEncoder::default()
            .encode(&TimeoutNowRequest::default())
            .unwrap();
        // An empty header is still written: field 1, length 0.
        assert_eq!(&encoded.to_bytes()[..], &[0, 0, 0, 0, 2, 0x0a, 0x00]);
        assert_eq!(encoded.len(), 7);
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let payload = Bytes::from(vec![9u8; 100_000]);
        let request = AppendEntriesRequest {
            term: 1,
            entries: vec![
                Log::command(1, 1, payload.clone()),
                Log::command(2, 1, Bytes::from_static(b"small")),
                Log::command(3, 1, payload.clone()),
            ],
            leader_commit_index: 1,
            ..Default::default()
        };
        let encoded = MessageEncoder::default().encode(&request).unwrap();
        let shared: Vec<_> = encoded
            .chunks()
            .iter()
            .filter(|c| c.as_ptr() == payload.as_ptr())
            .collect();
        assert_eq!(
            shared.len(),
            2,
            "both large entries are the caller's memory"
        );
        assert_eq!(encoded.chunks().len(), 5);
        assert!(encoded.chunks().iter().all(|c| !c.is_empty()));
        let bytes = encoded.to_bytes();
        assert_eq!(&bytes[PREFIX_LEN..], &request.encode_to_bytes()[..]);
    }

    #[test]
    fn send_limit_is_checked_before_encoding() {
        let chunk = SnapshotChunk {
            data: Bytes::from(vec![0u8; 1000]),
            data_crc32c: None,
        };
        let err = MessageEncoder::new(999, 16).encode(&chunk).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::TooLarge {
                len: 1003,
                limit: 999
            }
        ));
        assert_eq!(err.status().code(), Code::ResourceExhausted);
        assert!(MessageEncoder::new(1003, 16).encode(&chunk).is_ok());
    }

    #[test]
    fn decodes_messages_split_at_every_byte() {
        let mut stream = frame(0, b"first");
        stream.extend(frame(0, b""));
        stream.extend(frame(0, &[7u8; 300]));
        let mut decoder = MessageDecoder::new(1024);
        let mut bodies = Vec::new();
        for byte in stream {
            decoder.push(Bytes::from(vec![byte]));
            while let Some(body) = decoder.next_message().unwrap() {
                bodies.push(body);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(bodies.len(), 3);
        assert_eq!(&bodies[0][..], b"first");
        assert!(bodies[1].is_empty());
        assert_eq!(&bodies[2][..], &[7u8; 300][..]);
    }

    #[test]
    fn body_in_one_chunk_is_a_slice_of_it() {
        let data = Bytes::from(frame(0, &[1u8; 5000]));
        let range = data.as_ptr_range();
        let mut decoder = MessageDecoder::new(10_000);
        decoder.push(data.clone());
        let body = decoder.next_message().unwrap().unwrap();
        assert!(range.contains(&body.as_ptr()));
    }

    #[test]
    fn oversized_message_is_refused_from_its_prefix() {
        let mut decoder = MessageDecoder::new(100);
        // Only the prefix: the limit is checked before any body arrives.
        decoder.push(Bytes::from(vec![0, 0, 0, 0, 101]));
        let err = decoder.next_message().unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 101,
                limit: 100
            }
        );
        assert_eq!(err.code(), Code::ResourceExhausted);
        // Sticky, and nothing more is buffered.
        decoder.push(Bytes::from(vec![0u8; 1000]));
        assert_eq!(decoder.buffered_len(), 0);
        assert_eq!(decoder.next_message().unwrap_err(), err);
        assert_eq!(decoder.finish().unwrap_err(), err);
    }

    #[test]
    fn four_gib_length_is_refused_without_allocating() {
        let mut decoder = MessageDecoder::new(usize::MAX);
        decoder.push(Bytes::from(vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.buffered_len(), 8);
        assert!(decoder.finish().is_err());
    }

    #[test]
    fn compressed_and_unknown_flags_are_internal() {
        let mut decoder = MessageDecoder::new(100);
        decoder.push(Bytes::from(frame(1, b"x")));
        assert_eq!(decoder.next_message().unwrap_err(), FrameError::Compressed);
        let mut decoder = MessageDecoder::new(100);
        decoder.push(Bytes::from(frame(2, b"x")));
        let err = decoder.next_message().unwrap_err();
        assert_eq!(err, FrameError::InvalidFlag(2));
        assert_eq!(err.code(), Code::Internal);
    }

    #[test]
    fn truncated_stream_is_internal() {
        let mut decoder = MessageDecoder::new(100);
        decoder.push(Bytes::from_static(&[0, 0, 0]));
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(
            decoder.finish().unwrap_err(),
            FrameError::Truncated {
                received: 3,
                expected: 5
            }
        );

        let mut decoder = MessageDecoder::new(100);
        decoder.push(Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]));
        assert_eq!(decoder.next_message().unwrap(), None);
        let err = decoder.finish().unwrap_err();
        assert_eq!(
            err,
            FrameError::Truncated {
                received: 7,
                expected: 15
            }
        );
        assert_eq!(err.code(), Code::Internal);
    }
}
