//! A protobuf field writer that produces a list of [`Bytes`] chunks.
//!
//! This module owns the low-level protobuf encoding used on the send path:
//! keys, varints, fixed-width and length-delimited fields, written in
//! field-number order so the output is byte-for-byte what prost and the
//! reference protobuf runtimes produce. Small fields are copied into a
//! growing buffer; a `bytes` field at least `zero_copy_min` long is not
//! copied: the buffer is cut there and the payload's own [`Bytes`] handle
//! becomes a chunk of its own. Which fields a message has, and their order,
//! is the business of each message's `encode_fields` in [`super`].

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::profile::WireProfile;

/// Writes protobuf fields into a chunk list.
#[derive(Debug)]
pub struct FieldWriter {
    buf: BytesMut,
    chunks: Vec<Bytes>,
    zero_copy_min: usize,
    profile: WireProfile,
}

impl FieldWriter {
    /// A writer whose first chunk has room for `capacity` copied bytes, and
    /// which hands `bytes` fields of at least `zero_copy_min` bytes through
    /// as chunks of their own, numbering fields as `profile` does.
    pub(crate) fn new(capacity: usize, zero_copy_min: usize, profile: WireProfile) -> Self {
        FieldWriter {
            buf: BytesMut::with_capacity(capacity),
            chunks: Vec::new(),
            zero_copy_min: zero_copy_min.max(1),
            profile,
        }
    }

    /// The field numbering the message's `encode_fields` must follow.
    pub(crate) fn profile(&self) -> WireProfile {
        self.profile
    }

    /// Appends raw bytes (used for the gRPC message prefix).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// A `uint64` field; zero is the default and is not written.
    pub(crate) fn uint64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            encode_key(tag, WireType::Varint, &mut self.buf);
            encode_varint(value, &mut self.buf);
        }
    }

    /// An `int64` field; zero is the default and is not written.
    pub(crate) fn int64(&mut self, tag: u32, value: i64) {
        self.uint64(tag, value as u64);
    }

    /// An `optional int64` field: written whenever present, zero included.
    pub(crate) fn optional_int64(&mut self, tag: u32, value: Option<i64>) {
        if let Some(value) = value {
            encode_key(tag, WireType::Varint, &mut self.buf);
            encode_varint(value as u64, &mut self.buf);
        }
    }

    /// A `uint32` field; zero is the default and is not written.
    pub(crate) fn uint32(&mut self, tag: u32, value: u32) {
        self.uint64(tag, u64::from(value));
    }

    /// A `bool` field; false is the default and is not written.
    pub(crate) fn bool(&mut self, tag: u32, value: bool) {
        self.uint64(tag, u64::from(value));
    }

    /// An `optional fixed32` field: written whenever present, zero included.
    pub(crate) fn optional_fixed32(&mut self, tag: u32, value: Option<u32>) {
        if let Some(value) = value {
            encode_key(tag, WireType::ThirtyTwoBit, &mut self.buf);
            self.buf.put_u32_le(value);
        }
    }

    /// A `bytes` field; empty is the default and is not written. Payloads of
    /// at least `zero_copy_min` bytes become a chunk of their own, sharing
    /// the caller's memory.
    pub(crate) fn bytes(&mut self, tag: u32, value: &Bytes) {
        if value.is_empty() {
            return;
        }
        encode_key(tag, WireType::LengthDelimited, &mut self.buf);
        encode_varint(value.len() as u64, &mut self.buf);
        if value.len() >= self.zero_copy_min {
            if !self.buf.is_empty() {
                self.chunks.push(self.buf.split().freeze());
            }
            self.chunks.push(value.clone());
        } else {
            self.buf.put_slice(value);
        }
    }

    /// The key and length of an embedded message whose fields the caller
    /// writes next; `len` must be the body's encoded length.
    pub(crate) fn message_start(&mut self, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, &mut self.buf);
        encode_varint(len as u64, &mut self.buf);
    }

    /// The chunks written, in order, none of them empty.
    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.freeze());
        }
        self.chunks
    }
}

/// Encoded length of a `uint64` field (zero when the value is the default).
pub(crate) fn uint64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// Encoded length of an `int64` field.
pub(crate) fn int64_len(tag: u32, value: i64) -> usize {
    uint64_len(tag, value as u64)
}

/// Encoded length of an `optional int64` field.
pub(crate) fn optional_int64_len(tag: u32, value: Option<i64>) -> usize {
    value.map_or(0, |v| key_len(tag) + encoded_len_varint(v as u64))
}

/// Encoded length of a `uint32` field.
pub(crate) fn uint32_len(tag: u32, value: u32) -> usize {
    uint64_len(tag, u64::from(value))
}

/// Encoded length of a `bool` field.
pub(crate) fn bool_len(tag: u32, value: bool) -> usize {
    uint64_len(tag, u64::from(value))
}

/// Encoded length of an `optional fixed32` field.
pub(crate) fn optional_fixed32_len(tag: u32, value: Option<u32>) -> usize {
    value.map_or(0, |_| key_len(tag) + 4)
}

/// Encoded length of a `bytes` field.
pub(crate) fn bytes_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
    }
}

/// How much of a `bytes` payload the writer hands through instead of copying:
/// all of it when it has at least `zero_copy_min` bytes (as
/// [`FieldWriter::bytes`] decides), else nothing.
pub(crate) fn zero_copy_len(value: &[u8], zero_copy_min: usize) -> usize {
    if value.len() >= zero_copy_min.max(1) {
        value.len()
    } else {
        0
    }
}

/// Encoded length of an embedded message field whose body is `len` bytes.
pub(crate) fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}
