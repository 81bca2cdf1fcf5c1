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
//!   and never panics. Bodies are never copied: each is a [`MessageBody`],
//!   the pieces of the pushed data it arrived in, read as one [`Buf`];
//! * [`MessageBody`]: decoding one ([`RaftMessage::decode`]) slices every
//!   `bytes` field (an entry's data, a snapshot chunk) out of the piece
//!   holding it, and copies only a field split across pieces. A 1 MiB
//!   snapshot chunk sent as three pieces, or a message arriving in 16 KiB
//!   DATA frames, thus costs no copy of its large payloads.
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
//! assert_eq!(body.pieces().count(), 2);
//! let decoded = AppendEntriesRequest::decode(body).unwrap();
//! assert_eq!(decoded, request);
//! // The entry's data is the chunk the encoder handed through: not copied.
//! assert_eq!(decoded.entries[0].data.as_ptr(), request.entries[0].data.as_ptr());
//! decoder.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{FieldWriter, RaftMessage};
use crate::profile::WireProfile;
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
    profile: WireProfile,
}

impl Default for MessageEncoder {
    /// A 4 MiB send limit (what a grpc-go or tonic peer accepts by default)
    /// and payloads of 16 KiB or more sent without copying.
    fn default() -> Self {
        MessageEncoder {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            zero_copy_min: DEFAULT_ZERO_COPY_MIN,
            profile: WireProfile::V0_2,
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
            profile: WireProfile::V0_2,
        }
    }

    /// The same encoder, numbering fields as `profile` does (default
    /// [`WireProfile::V0_2`]).
    #[must_use]
    pub fn with_profile(mut self, profile: WireProfile) -> Self {
        self.profile = profile;
        self
    }

    /// The field numbering messages are encoded in.
    pub fn profile(&self) -> WireProfile {
        self.profile
    }

    /// The send limit.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Frames `message`. The limit is checked before anything is written.
    pub fn encode<M: RaftMessage>(&self, message: &M) -> Result<EncodedMessage, EncodeError> {
        let body_len = message.encoded_len_with(self.profile);
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
        let copied = PREFIX_LEN
            + body_len.saturating_sub(message.zero_copy_len(self.zero_copy_min, self.profile));
        let mut w = FieldWriter::new(copied, self.zero_copy_min, self.profile);
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

/// One message's protobuf bytes, as the pieces of received data they
/// arrived in: what [`MessageDecoder::next_message`] returns.
///
/// It is a [`Buf`] over those pieces, so it decodes directly, with
/// [`RaftMessage::decode`] or `prost::Message::decode`, however the body
/// was split. Its [`Buf::copy_to_bytes`], which prost calls for every
/// `bytes` field, returns a slice of the current piece when the field lies
/// within it and copies only a field split across pieces; the payloads of
/// the decoded message therefore share the received memory (and, like any
/// slice of a `Bytes`, keep the piece they were sliced from alive).
///
/// Equality compares the bytes, not how they are split.
#[derive(Clone, Default)]
pub struct MessageBody {
    /// The piece being read. Empty only when the whole body is, so that
    /// [`Buf::chunk`] is never empty while bytes remain (prost reads a
    /// varint from an empty chunk as invalid).
    front: Bytes,
    /// The pieces after `front` are `rest[next..]`, none empty; those
    /// before `next` were moved out into `front`. Stays unallocated for a
    /// body in one piece.
    rest: Vec<Bytes>,
    next: usize,
    /// Bytes in `rest[next..]`. Reading within `front` touches nothing
    /// else, and neither does reading to its end when it is the last piece.
    rest_len: usize,
}

impl MessageBody {
    /// Bytes remaining in the body.
    #[inline]
    pub fn len(&self) -> usize {
        self.front.len() + self.rest_len
    }

    /// Whether no bytes remain.
    pub fn is_empty(&self) -> bool {
        self.front.is_empty()
    }

    /// The pieces remaining, in order; none is empty.
    pub fn pieces(&self) -> impl Iterator<Item = &Bytes> + '_ {
        std::iter::once(&self.front)
            .filter(|front| !front.is_empty())
            .chain(&self.rest[self.next..])
    }

    /// The remaining bytes as one contiguous buffer: the piece itself when
    /// there is one, a copy when there are several.
    pub fn into_bytes(mut self) -> Bytes {
        if self.rest_len == 0 {
            return self.front;
        }
        let len = self.len();
        self.copy_to_bytes(len)
    }

    /// Appends a piece.
    fn push(&mut self, piece: Bytes) {
        if self.front.is_empty() {
            // An empty piece leaves the body empty.
            self.front = piece;
        } else if !piece.is_empty() {
            self.rest_len += piece.len();
            self.rest.push(piece);
        }
    }

    /// Drops the exhausted front piece and moves on to the next one.
    fn next_piece(&mut self) {
        self.front = match self.rest.get_mut(self.next) {
            Some(piece) => {
                self.next += 1;
                std::mem::take(piece)
            }
            None => Bytes::new(),
        };
        self.rest_len -= self.front.len();
    }

    /// [`Buf::advance`] to the end of the front piece or past it, pieces
    /// following.
    #[inline(never)]
    fn advance_pieces(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.len(),
            "cannot advance {cnt} bytes: {} remain in the message body",
            self.len()
        );
        while cnt >= self.front.len() && !self.front.is_empty() {
            cnt -= self.front.len();
            self.next_piece();
        }
        self.front.advance(cnt);
    }

    /// [`Buf::copy_to_bytes`] of the whole front piece or more, pieces
    /// following: the piece itself, or a copy of the pieces spanned.
    #[inline(never)]
    fn take_pieces(&mut self, len: usize) -> Bytes {
        if len <= self.front.len() {
            // All of it (`len` is not less): no slicing needed.
            let out = std::mem::take(&mut self.front);
            self.next_piece();
            return out;
        }
        assert!(
            len <= self.len(),
            "cannot take {len} bytes: {} remain in the message body",
            self.len()
        );
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let n = self.front.len().min(len - out.len());
            out.extend_from_slice(&self.front[..n]);
            self.advance(n);
        }
        out.freeze()
    }
}

impl From<Bytes> for MessageBody {
    /// A body in one piece.
    fn from(bytes: Bytes) -> Self {
        MessageBody {
            front: bytes,
            ..MessageBody::default()
        }
    }
}

impl From<MessageBody> for Bytes {
    /// See [`MessageBody::into_bytes`].
    fn from(body: MessageBody) -> Self {
        body.into_bytes()
    }
}

impl Buf for MessageBody {
    #[inline]
    fn remaining(&self) -> usize {
        self.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        &self.front
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, piece) in dst.iter_mut().zip(self.pieces()) {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        filled
    }

    /// # Panics
    ///
    /// When `cnt` is more than what remains, as every `Buf` does.
    #[inline]
    fn advance(&mut self, cnt: usize) {
        // Kept small: prost advances after every varint it reads.
        if cnt < self.front.len() {
            self.front.advance(cnt);
        } else if self.rest_len == 0 {
            // To the end of the last piece (past it, `Bytes` panics).
            self.front.advance(cnt);
        } else {
            self.advance_pieces(cnt);
        }
    }

    /// A slice of the current piece when the `len` bytes lie within it, a
    /// copy when they span pieces.
    ///
    /// # Panics
    ///
    /// When `len` is more than what remains, as every `Buf` does.
    #[inline]
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        if len < self.front.len() {
            self.front.split_to(len)
        } else if self.rest_len == 0 {
            // To the end of the last piece (past it, `Bytes` panics).
            self.front.split_to(len)
        } else {
            self.take_pieces(len)
        }
    }
}

impl PartialEq for MessageBody {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let (mut ours, mut theirs) = (self.pieces(), other.pieces());
        let (mut a, mut b): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if a.is_empty() {
                match ours.next() {
                    Some(piece) => a = piece,
                    // Same length: both are exhausted.
                    None => return true,
                }
            }
            if b.is_empty() {
                match theirs.next() {
                    Some(piece) => b = piece,
                    None => return true,
                }
            }
            let n = a.len().min(b.len());
            if a[..n] != b[..n] {
                return false;
            }
            a = &a[n..];
            b = &b[n..];
        }
    }
}

impl Eq for MessageBody {}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MessageBody")
            .field(&DebugPieces(self))
            .finish()
    }
}

/// The pieces of a body, as a list.
struct DebugPieces<'a>(&'a MessageBody);

impl fmt::Debug for DebugPieces<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.pieces()).finish()
    }
}

/// Turns the DATA of one stream back into message bodies.
///
/// Feed it with [`push`](Self::push) as data arrives, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`; at the
/// end of the stream, [`finish`](Self::finish) says whether the stream
/// stopped between messages. Memory held is what was pushed and not yet
/// returned; a body is buffered only after its length passed the limit.
/// Nothing pushed is copied but the 5-byte prefixes: a body is handed out
/// as the pieces it arrived in.
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
    ///
    /// The body is the pushed data it arrived in, sliced, not copied:
    /// decode it with [`RaftMessage::decode`] (or `prost::Message::decode`)
    /// and its `bytes` fields share that memory (see [`MessageBody`]).
    pub fn next_message(&mut self) -> Result<Option<MessageBody>, FrameError> {
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

    /// Takes the next `len` buffered bytes as a body: whole chunks are
    /// moved into it, the last one split if it runs past the body. The
    /// caller checked that enough are buffered.
    fn take_body(&mut self, len: usize) -> MessageBody {
        let mut body = MessageBody::default();
        while body.len() < len {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let needed = len - body.len();
            if front.len() <= needed {
                if let Some(chunk) = self.chunks.pop_front() {
                    body.push(chunk);
                }
            } else {
                body.push(front.split_to(needed));
            }
        }
        self.buffered -= body.len();
        body
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
                bodies.push(body.into_bytes());
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
        assert_eq!(body.pieces().count(), 1);
        assert!(range.contains(&body.chunk().as_ptr()));
        assert!(range.contains(&body.into_bytes().as_ptr()));
    }

    /// Three pieces of 3, 4 and 5 bytes: 0..=11.
    fn three_pieces() -> MessageBody {
        let mut body = MessageBody::default();
        for piece in [&[0u8, 1, 2][..], &[3, 4, 5, 6], &[7, 8, 9, 10, 11]] {
            body.push(Bytes::copy_from_slice(piece));
        }
        body
    }

    #[test]
    fn body_reads_across_pieces() {
        let mut body = three_pieces();
        let pieces: Vec<Bytes> = body.pieces().cloned().collect();
        assert_eq!((body.len(), pieces.len()), (12, 3));
        assert_eq!(body.chunk(), &[0, 1, 2]);

        // Within a piece: a slice of it.
        let first = body.copy_to_bytes(2);
        assert_eq!(&first[..], &[0, 1]);
        assert_eq!(first.as_ptr(), pieces[0].as_ptr());
        // Spanning pieces: a copy.
        let spanning = body.copy_to_bytes(3);
        assert_eq!(&spanning[..], &[2, 3, 4]);
        assert!(!pieces[0].as_ptr_range().contains(&spanning.as_ptr()));
        assert!(!pieces[1].as_ptr_range().contains(&spanning.as_ptr()));
        // The rest of a piece exactly: that piece, and the chunk moves on.
        let rest = body.copy_to_bytes(2);
        assert_eq!(rest.as_ptr_range(), pieces[1][2..].as_ptr_range());
        assert_eq!(body.chunk(), &[7, 8, 9, 10, 11]);

        let mut body = three_pieces();
        body.advance(3);
        assert_eq!(body.chunk(), &[3, 4, 5, 6], "never an empty chunk");
        body.advance(5);
        assert_eq!((body.len(), body.chunk()), (4, &[8, 9, 10, 11][..]));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(body.chunks_vectored(&mut slices), 1);
        body.advance(4);
        assert!(body.is_empty() && body.chunk().is_empty());
        assert_eq!(body.pieces().count(), 0);
        assert_eq!(body.copy_to_bytes(0), Bytes::new());

        let mut slices = [IoSlice::new(&[]); 2];
        let body = three_pieces();
        assert_eq!(body.chunks_vectored(&mut slices), 2);
        assert_eq!(&*slices[1], &[3, 4, 5, 6]);
    }

    #[test]
    fn body_equality_ignores_the_split() {
        let whole = MessageBody::from(Bytes::from((0u8..12).collect::<Vec<_>>()));
        assert_eq!(three_pieces(), whole);
        assert_eq!(three_pieces().into_bytes(), whole.clone().into_bytes());
        let mut other = three_pieces();
        other.advance(1);
        assert_ne!(other, whole);
        let mut changed = MessageBody::from(Bytes::from_static(&[0, 1, 2, 3, 4, 5]));
        changed.push(Bytes::from_static(&[6, 7, 8, 9, 10, 99]));
        assert_ne!(changed, whole);
        assert_eq!(MessageBody::default(), MessageBody::from(Bytes::new()));
        assert_eq!(
            format!("{:?}", MessageBody::from(Bytes::from_static(b"ab"))),
            r#"MessageBody([b"ab"])"#
        );
    }

    #[test]
    #[should_panic(expected = "cannot take 13 bytes")]
    fn body_refuses_to_read_past_its_end() {
        three_pieces().copy_to_bytes(13);
    }

    #[test]
    #[should_panic(expected = "cannot advance 13 bytes")]
    fn body_refuses_to_advance_past_its_end() {
        three_pieces().advance(13);
    }

    #[test]
    fn body_in_one_piece_refuses_to_read_past_its_end() {
        let one = || MessageBody::from(Bytes::from_static(b"abc"));
        let past = [
            std::panic::catch_unwind(|| one().advance(4)),
            std::panic::catch_unwind(|| drop(one().copy_to_bytes(4))),
        ];
        assert!(past.iter().all(Result::is_err));
        let mut body = one();
        assert_eq!(&body.copy_to_bytes(3)[..], b"abc");
        assert!(body.is_empty());
    }

    /// A 1 MiB snapshot chunk arrives as our encoder sends it: three pieces
    /// (prefix and key | the data | the CRC field), each in memory of its
    /// own as received. The decoded data is the data piece, not a copy.
    #[test]
    fn snapshot_chunk_as_sent_decodes_without_copying() {
        let chunk = SnapshotChunk {
            data: Bytes::from(vec![0xa5u8; 1 << 20]),
            data_crc32c: Some(0x1234_5678),
        };
        let encoded = MessageEncoder::default().encode(&chunk).unwrap();
        assert_eq!(encoded.chunks().len(), 3);
        assert_eq!(encoded.chunks()[1], chunk.data);
        let received: Vec<Bytes> = encoded
            .chunks()
            .iter()
            .map(|c| Bytes::copy_from_slice(c))
            .collect();

        let mut decoder = MessageDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
        for piece in &received {
            decoder.push(piece.clone());
        }
        let body = decoder.next_message().unwrap().unwrap();
        assert_eq!(body.pieces().count(), 3);
        let decoded = SnapshotChunk::decode(body).unwrap();
        assert_eq!(decoded, chunk);
        assert_eq!(decoded.data.as_ptr_range(), received[1].as_ptr_range());
        decoder.finish().unwrap();
    }

    /// A message split into pieces anywhere: the message, with each
    /// payload that lies within one piece pointing into that piece.
    mod split {
        use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

        use super::*;
        use crate::message::{DecodeError, RaftMessage, RpcHeader};

        fn payload(g: &mut Gen) -> Bytes {
            let len = match u8::arbitrary(g) % 4 {
                0 => 0,
                1 => usize::arbitrary(g) % 64,
                _ => usize::arbitrary(g) % 40_000,
            };
            let seed = u8::arbitrary(g);
            (0..len)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>()
                .into()
        }

        #[derive(Clone, Debug)]
        struct Request(AppendEntriesRequest);

        impl Arbitrary for Request {
            fn arbitrary(g: &mut Gen) -> Self {
                let entries = (0..usize::arbitrary(g) % 6)
                    .map(|i| Log {
                        extensions: payload(g),
                        ..Log::command(i as u64 + 1, u64::arbitrary(g), payload(g))
                    })
                    .collect();
                Request(AppendEntriesRequest {
                    header: RpcHeader::new(3, payload(g), payload(g)),
                    term: u64::arbitrary(g),
                    prev_log_entry: u64::arbitrary(g),
                    entries,
                    leader: payload(g),
                    ..Default::default()
                })
            }
        }

        fn payloads(request: &AppendEntriesRequest) -> Vec<&Bytes> {
            let mut all = vec![&request.header.id, &request.header.addr, &request.leader];
            for entry in &request.entries {
                all.extend([&entry.data, &entry.extensions]);
            }
            all
        }

        /// The framed message cut at `cuts` (and, when `as_sent`, where the
        /// encoder's chunks end), each piece copied to memory of its own as
        /// if received. Returns the pieces and where each starts.
        fn received<M: RaftMessage>(
            message: &M,
            cuts: &[usize],
            as_sent: bool,
        ) -> (Bytes, Vec<(usize, Bytes)>) {
            let encoded = MessageEncoder::new(usize::MAX, 1024)
                .encode(message)
                .unwrap();
            let stream = encoded.to_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            points.extend([0, stream.len()]);
            if as_sent {
                points.extend(encoded.chunks().iter().scan(0, |end, c| {
                    *end += c.len();
                    Some(*end)
                }));
            }
            points.sort_unstable();
            points.dedup();
            let pieces = points
                .windows(2)
                .map(|w| (w[0], Bytes::copy_from_slice(&stream[w[0]..w[1]])))
                .collect();
            (stream, pieces)
        }

        fn decode_pieces<M: RaftMessage>(pieces: &[(usize, Bytes)]) -> M {
            let mut decoder = MessageDecoder::new(usize::MAX);
            for (_, piece) in pieces {
                decoder.push(piece.clone());
            }
            let body = decoder.next_message().unwrap().unwrap();
            decoder.finish().unwrap();
            M::decode(body).unwrap()
        }

        /// Every payload of `decoded` that lies within one piece is a slice
        /// of that piece's memory. Where each payload lies in the stream is
        /// known from `reference`, decoded from the contiguous `stream`
        /// (a `Bytes`, which slices every payload).
        fn zero_copy(
            stream: &Bytes,
            pieces: &[(usize, Bytes)],
            reference: &[&Bytes],
            decoded: &[&Bytes],
        ) -> bool {
            reference.iter().zip(decoded).all(|(r, d)| {
                if r.is_empty() {
                    return d.is_empty();
                }
                let offset = r.as_ptr() as usize - stream.as_ptr() as usize;
                let holder = pieces.iter().find(|(start, piece)| {
                    *start <= offset && offset + r.len() <= start + piece.len()
                });
                match holder {
                    Some((start, piece)) => {
                        let range = piece.as_ptr_range();
                        let at = piece.as_ptr() as usize + (offset - start);
                        d.as_ptr() as usize == at
                            && range.contains(&d.as_ptr())
                            && d.len() <= range.end as usize - at
                    }
                    // Split across pieces: copied, which equality checked.
                    None => true,
                }
            })
        }

        #[test]
        fn append_entries_payloads_point_into_their_piece() {
            fn prop(Request(request): Request, cuts: Vec<usize>, as_sent: bool) -> TestResult {
                let (stream, pieces) = received(&request, &cuts, as_sent);
                let reference = AppendEntriesRequest::decode(stream.slice(PREFIX_LEN..)).unwrap();
                let decoded: AppendEntriesRequest = decode_pieces(&pieces);
                if decoded != request {
                    return TestResult::error(format!(
                        "decoded differently from {} pieces",
                        pieces.len()
                    ));
                }
                TestResult::from_bool(zero_copy(
                    &stream,
                    &pieces,
                    &payloads(&reference),
                    &payloads(&decoded),
                ))
            }
            QuickCheck::new()
                .tests(300)
                .quickcheck(prop as fn(Request, Vec<usize>, bool) -> TestResult);
        }

        #[test]
        fn snapshot_chunk_data_points_into_its_piece() {
            fn prop(len: u32, crc: Option<u32>, cuts: Vec<usize>, as_sent: bool) -> TestResult {
                let chunk = SnapshotChunk {
                    data: vec![7u8; len as usize % 200_000].into(),
                    data_crc32c: crc,
                };
                let (stream, pieces) = received(&chunk, &cuts, as_sent);
                let reference = SnapshotChunk::decode(stream.slice(PREFIX_LEN..)).unwrap();
                let decoded: SnapshotChunk = decode_pieces(&pieces);
                if decoded != chunk {
                    return TestResult::failed();
                }
                TestResult::from_bool(zero_copy(
                    &stream,
                    &pieces,
                    &[&reference.data],
                    &[&decoded.data],
                ))
            }
            QuickCheck::new()
                .tests(200)
                .quickcheck(prop as fn(u32, Option<u32>, Vec<usize>, bool) -> TestResult);
        }

        /// Arbitrary bytes, valid protobuf or not, decode from pieces
        /// exactly as from one buffer: the same message or the same error.
        #[test]
        fn any_bytes_decode_the_same_in_pieces() {
            fn prop(body: Vec<u8>, cuts: Vec<usize>) -> bool {
                let whole = Bytes::from(body);
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (whole.len() + 1)).collect();
                points.extend([0, whole.len()]);
                points.sort_unstable();
                let mut split = MessageBody::default();
                for w in points.windows(2) {
                    split.push(Bytes::copy_from_slice(&whole[w[0]..w[1]]));
                }
                let expected: Result<AppendEntriesRequest, DecodeError> =
                    AppendEntriesRequest::decode(whole.clone());
                let expected_chunk = SnapshotChunk::decode(whole);
                expected == AppendEntriesRequest::decode(split.clone())
                    && expected_chunk == SnapshotChunk::decode(split)
            }
            QuickCheck::new()
                .tests(1000)
                .quickcheck(prop as fn(Vec<u8>, Vec<usize>) -> bool);
        }
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
