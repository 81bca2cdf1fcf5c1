//! The Raft messages, as hashicorp/raft defines them, in idiomatic Rust.
//!
//! This module owns the types a Raft implementation hands to the transport
//! and gets back from it ([`AppendEntriesRequest`], [`RequestVoteRequest`],
//! [`InstallSnapshotRequest`], …), their conversions to and from the
//! generated [`crate::wire`] types, and their protobuf encoding on the send
//! path. It does not own the gRPC framing around a message
//! ([`crate::framing`]) or anything about calls.
//!
//! Payloads are [`Bytes`]: decoding a received
//! [`MessageBody`](crate::framing::MessageBody) (or a `Bytes` buffer) slices
//! entry data and snapshot chunks out of the memory they arrived in without
//! copying, and encoding hands large payloads through as chunks of their own
//! (see [`crate::framing::MessageEncoder`]).
//!
//! An AppendEntriesPipeline stream carries the same fields, with the same
//! numbers, as AppendEntries, so [`AppendEntriesRequest`] and
//! [`AppendEntriesResponse`] serve both RPCs; the conversions from and to the
//! pipeline's wire types exist too.
//!
//! Every message encodes and decodes under either [`WireProfile`]: the
//! `*_with` methods of [`RaftMessage`] take one (the others use the
//! default, [`WireProfile::V0_2`]); only the four requests the Go library's
//! v0.1.0 numbers differently, and their log entries, encode differently.
//!
//! ```
//! use raft_grpc_transport::WireProfile;
//! use raft_grpc_transport::message::{RaftMessage, RequestVoteRequest};
//!
//! let vote = RequestVoteRequest { term: 7, last_log_index: 42, ..Default::default() };
//! let old = vote.encode_to_bytes_with(WireProfile::V0_1);
//! assert_eq!(RequestVoteRequest::decode_with(WireProfile::V0_1, old.clone()).unwrap(), vote);
//! // Read in the other numbering, the index lands in the wrong field.
//! assert_ne!(RequestVoteRequest::decode(old).unwrap(), vote);
//! ```
//!
//! ```
//! use bytes::Bytes;
//! use raft_grpc_transport::message::{AppendEntriesRequest, Log, RaftMessage, RpcHeader};
//!
//! let request = AppendEntriesRequest {
//!     header: RpcHeader::new(3, "node-1", "10.0.0.1:7000"),
//!     term: 7,
//!     prev_log_entry: 41,
//!     prev_log_term: 7,
//!     entries: vec![Log::command(42, 7, Bytes::from_static(b"set x=1"))],
//!     leader_commit_index: 40,
//!     ..Default::default()
//! };
//! let bytes = request.encode_to_bytes();
//! assert_eq!(AppendEntriesRequest::decode(bytes).unwrap(), request);
//! ```

mod writer;

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use prost::Message as _;

use crate::head::RpcMethod;
use crate::profile::WireProfile;
use crate::status::{Code, Status};
use crate::wire;
pub(crate) use writer::FieldWriter;
use writer::{
    bool_len, bytes_len, int64_len, message_len, optional_fixed32_len, optional_int64_len,
    uint32_len, uint64_len, zero_copy_len,
};

/// A message's protobuf bytes could not be turned into a Raft message.
///
/// Every variant is the peer's fault and maps to gRPC `INTERNAL`, as gRPC
/// does for a message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid protobuf encoding of the message.
    #[error("malformed {message} protobuf: {source}")]
    Protobuf {
        /// The protobuf message that was being decoded.
        message: &'static str,
        /// What prost found wrong.
        source: prost::DecodeError,
    },
    /// An InstallSnapshot request declared a negative snapshot size.
    #[error("InstallSnapshot request declares a negative size ({0} bytes)")]
    NegativeSnapshotSize(i64),
}

impl DecodeError {
    /// The gRPC status to answer or fail the call with: `INTERNAL` for
    /// bytes that are not the message (as grpc-go answers them),
    /// `INVALID_ARGUMENT` for a well-formed message with a value the
    /// protocol does not allow.
    pub fn status(&self) -> Status {
        let code = match self {
            DecodeError::NegativeSnapshotSize(_) => Code::InvalidArgument,
            _ => Code::Internal,
        };
        Status::new(code, self.to_string())
    }
}

pub(crate) mod sealed {
    /// Keeps [`super::RaftMessage`] implemented only here, and carries the
    /// send-path encoder, which is not part of the public API.
    pub trait Sealed {
        /// Writes the message's fields, numbered as `w.profile()` numbers
        /// them, in field-number order.
        fn encode_fields(&self, w: &mut super::FieldWriter);

        /// Total length of the `bytes` payloads the writer hands through
        /// instead of copying (those of at least `zero_copy_min` bytes)
        /// under `profile`, so that the encoder sizes its copy buffer once.
        /// The default, zero, suits messages whose payloads are small: it
        /// can only over-size the buffer, never under-size it.
        fn zero_copy_len(&self, zero_copy_min: usize, profile: super::WireProfile) -> usize {
            let _ = (zero_copy_min, profile);
            0
        }
    }
}

/// A Raft message that travels as one protobuf message.
///
/// Implemented by every request and response type of this module; use it
/// with [`crate::framing::MessageEncoder::encode`] to frame a message for
/// gRPC, or with [`RaftMessage::decode`] on the bytes of a received one.
pub trait RaftMessage: sealed::Sealed + Clone + PartialEq + Debug + Sized {
    /// The generated protobuf type this message travels as.
    type Wire: prost::Message + Default;

    /// The protobuf message's name, for error messages.
    const PROTO_NAME: &'static str;

    /// Converts from the wire type. Fails only for values the protocol does
    /// not allow (a negative snapshot size).
    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError>;

    /// Converts into the wire type. Payloads are shared, not copied.
    fn to_wire(&self) -> Self::Wire;

    /// Length in bytes of this message's protobuf encoding.
    fn encoded_len(&self) -> usize;

    /// Length in bytes of this message's protobuf encoding under `profile`.
    fn encoded_len_with(&self, profile: WireProfile) -> usize {
        let _ = profile;
        self.encoded_len()
    }

    /// Decodes a message from its protobuf bytes: a
    /// [`MessageBody`](crate::framing::MessageBody) from
    /// [`MessageDecoder`](crate::framing::MessageDecoder), a [`Bytes`], or
    /// any other [`Buf`].
    ///
    /// Each `bytes` payload in the result is what `buf`'s
    /// [`copy_to_bytes`](Buf::copy_to_bytes) returns: from a `Bytes`, a
    /// slice of it; from a `MessageBody`, a slice of the piece holding the
    /// payload, copied only when the payload is split across pieces. (A
    /// `&[u8]` copies every payload.)
    fn decode(buf: impl Buf) -> Result<Self, DecodeError> {
        let wire = Self::Wire::decode(buf).map_err(|source| DecodeError::Protobuf {
            message: Self::PROTO_NAME,
            source,
        })?;
        Self::from_wire(wire)
    }

    /// Decodes a message numbered as `profile` numbers it (as
    /// [`decode`](Self::decode) does for the default profile).
    fn decode_with(profile: WireProfile, buf: impl Buf) -> Result<Self, DecodeError> {
        let _ = profile;
        Self::decode(buf)
    }

    /// The protobuf encoding as one contiguous buffer (copies payloads; the
    /// send path uses [`crate::framing::MessageEncoder`] instead).
    fn encode_to_bytes(&self) -> Bytes {
        self.encode_to_bytes_with(WireProfile::V0_2)
    }

    /// The protobuf encoding under `profile`, as one contiguous buffer.
    fn encode_to_bytes_with(&self, profile: WireProfile) -> Bytes {
        let mut w = FieldWriter::new(self.encoded_len_with(profile), usize::MAX, profile);
        self.encode_fields(&mut w);
        let mut chunks = w.finish();
        match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.remove(0),
            _ => chunks.concat().into(),
        }
    }
}

/// Decodes `buf` as the generated type `W`, naming `message` in the error.
fn decode_wire<W: prost::Message + Default>(
    message: &'static str,
    buf: impl Buf,
) -> Result<W, DecodeError> {
    W::decode(buf).map_err(|source| DecodeError::Protobuf { message, source })
}

/// The header every request and response carries (hashicorp's `RPCHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RpcHeader {
    /// The sender's Raft protocol version.
    pub protocol_version: i64,
    /// The sender's server ID.
    pub id: Bytes,
    /// The sender's transport address.
    pub addr: Bytes,
}

impl RpcHeader {
    /// A header for a node with this protocol version, server ID and address.
    pub fn new(protocol_version: i64, id: impl Into<Bytes>, addr: impl Into<Bytes>) -> Self {
        RpcHeader {
            protocol_version,
            id: id.into(),
            addr: addr.into(),
        }
    }

    fn body_len(&self) -> usize {
        int64_len(1, self.protocol_version) + bytes_len(2, &self.id) + bytes_len(3, &self.addr)
    }

    /// Writes the header as field 1 of the enclosing message. It is always
    /// written, even when empty, as prost and hashicorp's senders do.
    fn encode_field(&self, w: &mut FieldWriter) {
        w.message_start(1, self.body_len());
        w.int64(1, self.protocol_version);
        w.bytes(2, &self.id);
        w.bytes(3, &self.addr);
    }

    fn field_len(&self) -> usize {
        message_len(1, self.body_len())
    }

    fn zero_copy_len(&self, zero_copy_min: usize) -> usize {
        zero_copy_len(&self.id, zero_copy_min) + zero_copy_len(&self.addr, zero_copy_min)
    }

    fn from_wire(wire: Option<wire::RpcHeader>) -> Self {
        let wire = wire.unwrap_or_default();
        RpcHeader {
            protocol_version: wire.protocol_version,
            id: wire.id,
            addr: wire.addr,
        }
    }

    fn to_wire(&self) -> Option<wire::RpcHeader> {
        Some(wire::RpcHeader {
            protocol_version: self.protocol_version,
            id: self.id.clone(),
            addr: self.addr.clone(),
        })
    }
}

/// The kind of a log entry (hashicorp's `LogType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LogType {
    /// An entry for the application's state machine.
    #[default]
    Command,
    /// A no-op appended by a new leader to commit entries of earlier terms.
    Noop,
    /// Deprecated membership change (Raft protocol version 0 and 1).
    AddPeerDeprecated,
    /// Deprecated membership change (Raft protocol version 0 and 1).
    RemovePeerDeprecated,
    /// A barrier: applied once everything before it is applied.
    Barrier,
    /// A cluster configuration change.
    Configuration,
    /// A type this library does not know, kept as its number so that it
    /// passes through unchanged. Never holds 0–5.
    Unknown(u32),
}

impl From<u32> for LogType {
    fn from(value: u32) -> Self {
        match value {
            0 => LogType::Command,
            1 => LogType::Noop,
            2 => LogType::AddPeerDeprecated,
            3 => LogType::RemovePeerDeprecated,
            4 => LogType::Barrier,
            5 => LogType::Configuration,
            other => LogType::Unknown(other),
        }
    }
}

impl From<LogType> for u32 {
    fn from(value: LogType) -> Self {
        match value {
            LogType::Command => 0,
            LogType::Noop => 1,
            LogType::AddPeerDeprecated => 2,
            LogType::RemovePeerDeprecated => 3,
            LogType::Barrier => 4,
            LogType::Configuration => 5,
            LogType::Unknown(other) => other,
        }
    }
}

/// One replicated log entry (hashicorp's `Log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Log {
    /// Index of the entry in the log.
    pub index: u64,
    /// Term in which the entry was created.
    pub term: u64,
    /// What the entry is.
    pub log_type: LogType,
    /// The entry's payload.
    pub data: Bytes,
    /// Opaque extension data, passed through untouched.
    pub extensions: Bytes,
    /// When the leader appended the entry to its log; `None` when not
    /// recorded (always so from a Go peer). Carried as nanoseconds since the
    /// Unix epoch: times outside 1677–2262 are clamped to that range.
    pub appended_at: Option<SystemTime>,
}

impl Log {
    /// A command entry carrying `data`.
    pub fn command(index: u64, term: u64, data: impl Into<Bytes>) -> Self {
        Log {
            index,
            term,
            data: data.into(),
            ..Default::default()
        }
    }

    /// `appended_at` as carried on the wire. Converting a `SystemTime`
    /// costs more than the rest of an entry's header, so encoding does it
    /// once per pass.
    fn appended_at_nanos(&self) -> Option<i64> {
        self.appended_at.map(system_time_to_unix_nanos)
    }

    /// `appended_at` as `profile` carries it: not at all under v0.1.
    fn appended_at_nanos_in(&self, profile: WireProfile) -> Option<i64> {
        match profile {
            WireProfile::V0_2 => self.appended_at_nanos(),
            WireProfile::V0_1 => None,
        }
    }

    fn body_len(&self, appended_at_nanos: Option<i64>) -> usize {
        uint64_len(1, self.index)
            + uint64_len(2, self.term)
            + uint32_len(3, self.log_type.into())
            + bytes_len(4, &self.data)
            + bytes_len(5, &self.extensions)
            + optional_int64_len(6, appended_at_nanos)
    }

    /// Writes the entry as an embedded message, field `tag`.
    fn encode_field(&self, tag: u32, w: &mut FieldWriter) {
        let appended_at_nanos = self.appended_at_nanos_in(w.profile());
        w.message_start(tag, self.body_len(appended_at_nanos));
        w.uint64(1, self.index);
        w.uint64(2, self.term);
        w.uint32(3, self.log_type.into());
        w.bytes(4, &self.data);
        w.bytes(5, &self.extensions);
        w.optional_int64(6, appended_at_nanos);
    }

    fn zero_copy_len(&self, zero_copy_min: usize) -> usize {
        zero_copy_len(&self.data, zero_copy_min) + zero_copy_len(&self.extensions, zero_copy_min)
    }
}

impl From<wire::Log> for Log {
    fn from(wire: wire::Log) -> Self {
        Log {
            index: wire.index,
            term: wire.term,
            log_type: wire.r#type.into(),
            data: wire.data,
            extensions: wire.extensions,
            appended_at: wire
                .appended_at_unix_nanos
                .and_then(unix_nanos_to_system_time),
        }
    }
}

impl From<&Log> for wire::Log {
    fn from(log: &Log) -> Self {
        wire::Log {
            index: log.index,
            term: log.term,
            r#type: log.log_type.into(),
            data: log.data.clone(),
            extensions: log.extensions.clone(),
            appended_at_unix_nanos: log.appended_at.map(system_time_to_unix_nanos),
        }
    }
}

/// Nanoseconds since the Unix epoch, clamped to the range of `i64`.
fn system_time_to_unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The time `nanos` nanoseconds after the Unix epoch, if the platform can
/// represent it.
fn unix_nanos_to_system_time(nanos: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// AppendEntries: the leader replicates entries, or sends a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AppendEntriesRequest {
    /// The sender's header.
    pub header: RpcHeader,
    /// The leader's current term.
    pub term: u64,
    /// Index of the entry just before `entries`.
    pub prev_log_entry: u64,
    /// Term of the entry just before `entries`.
    pub prev_log_term: u64,
    /// The entries to append, in log order.
    pub entries: Vec<Log>,
    /// The leader's commit index.
    pub leader_commit_index: u64,
    /// hashicorp's deprecated `Leader`: the leader's address, for peers older
    /// than Raft protocol version 3. Empty when not set (always so from a Go
    /// peer); receivers then use `header.addr`.
    pub leader: Bytes,
}

/// The field numbers of an AppendEntries (or AppendEntriesPipeline) request
/// after `header` (1) and `term` (2), which no profile moves.
struct AppendEntriesNumbers {
    prev_log_entry: u32,
    prev_log_term: u32,
    entries: u32,
    leader_commit_index: u32,
    /// `None`: the profile has no `leader` field.
    leader: Option<u32>,
}

impl AppendEntriesNumbers {
    fn of(profile: WireProfile) -> Self {
        match profile {
            WireProfile::V0_2 => AppendEntriesNumbers {
                prev_log_entry: 3,
                prev_log_term: 4,
                entries: 5,
                leader_commit_index: 6,
                leader: Some(7),
            },
            WireProfile::V0_1 => AppendEntriesNumbers {
                prev_log_entry: 4,
                prev_log_term: 5,
                entries: 6,
                leader_commit_index: 7,
                leader: None,
            },
        }
    }
}

impl sealed::Sealed for AppendEntriesRequest {
    fn encode_fields(&self, w: &mut FieldWriter) {
        let n = AppendEntriesNumbers::of(w.profile());
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.uint64(n.prev_log_entry, self.prev_log_entry);
        w.uint64(n.prev_log_term, self.prev_log_term);
        for entry in &self.entries {
            entry.encode_field(n.entries, w);
        }
        w.uint64(n.leader_commit_index, self.leader_commit_index);
        if let Some(tag) = n.leader {
            w.bytes(tag, &self.leader);
        }
    }

    fn zero_copy_len(&self, zero_copy_min: usize, profile: WireProfile) -> usize {
        let leader = match AppendEntriesNumbers::of(profile).leader {
            Some(_) => zero_copy_len(&self.leader, zero_copy_min),
            None => 0,
        };
        self.header.zero_copy_len(zero_copy_min)
            + self
                .entries
                .iter()
                .map(|entry| entry.zero_copy_len(zero_copy_min))
                .sum::<usize>()
            + leader
    }
}

impl RaftMessage for AppendEntriesRequest {
    type Wire = wire::AppendEntriesRequest;
    const PROTO_NAME: &'static str = "AppendEntriesRequest";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(AppendEntriesRequest {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            prev_log_entry: wire.prev_log_entry,
            prev_log_term: wire.prev_log_term,
            entries: wire.entries.into_iter().map(Log::from).collect(),
            leader_commit_index: wire.leader_commit_index,
            leader: wire.leader,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::AppendEntriesRequest {
            header: self.header.to_wire(),
            term: self.term,
            prev_log_entry: self.prev_log_entry,
            prev_log_term: self.prev_log_term,
            entries: self.entries.iter().map(wire::Log::from).collect(),
            leader_commit_index: self.leader_commit_index,
            leader: self.leader.clone(),
        }
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len_with(WireProfile::V0_2)
    }

    fn encoded_len_with(&self, profile: WireProfile) -> usize {
        let n = AppendEntriesNumbers::of(profile);
        self.header.field_len()
            + uint64_len(2, self.term)
            + uint64_len(n.prev_log_entry, self.prev_log_entry)
            + uint64_len(n.prev_log_term, self.prev_log_term)
            + self
                .entries
                .iter()
                .map(|entry| {
                    message_len(
                        n.entries,
                        entry.body_len(entry.appended_at_nanos_in(profile)),
                    )
                })
                .sum::<usize>()
            + uint64_len(n.leader_commit_index, self.leader_commit_index)
            + n.leader.map_or(0, |tag| bytes_len(tag, &self.leader))
    }

    fn decode_with(profile: WireProfile, buf: impl Buf) -> Result<Self, DecodeError> {
        match profile {
            WireProfile::V0_2 => Self::decode(buf),
            WireProfile::V0_1 => {
                let wire: wire::v0_1::AppendEntriesRequest = decode_wire(Self::PROTO_NAME, buf)?;
                // v0.1's Log has no field 6: an appended_at there is an
                // unknown field, ignored as protobuf ignores any.
                let entry = |wire: wire::Log| Log {
                    appended_at: None,
                    ..Log::from(wire)
                };
                Ok(AppendEntriesRequest {
                    header: RpcHeader::from_wire(wire.header),
                    term: wire.term,
                    prev_log_entry: wire.prev_log_entry,
                    prev_log_term: wire.prev_log_term,
                    entries: wire.entries.into_iter().map(entry).collect(),
                    leader_commit_index: wire.leader_commit_index,
                    leader: Bytes::new(),
                })
            }
        }
    }
}

impl From<wire::AppendEntriesPipelineRequest> for AppendEntriesRequest {
    fn from(wire: wire::AppendEntriesPipelineRequest) -> Self {
        AppendEntriesRequest {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            prev_log_entry: wire.prev_log_entry,
            prev_log_term: wire.prev_log_term,
            entries: wire.entries.into_iter().map(Log::from).collect(),
            leader_commit_index: wire.leader_commit_index,
            leader: wire.leader,
        }
    }
}

impl From<&AppendEntriesRequest> for wire::AppendEntriesPipelineRequest {
    fn from(request: &AppendEntriesRequest) -> Self {
        let wire = request.to_wire();
        wire::AppendEntriesPipelineRequest {
            header: wire.header,
            term: wire.term,
            prev_log_entry: wire.prev_log_entry,
            prev_log_term: wire.prev_log_term,
            entries: wire.entries,
            leader_commit_index: wire.leader_commit_index,
            leader: wire.leader,
        }
    }
}

/// Answer to [`AppendEntriesRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AppendEntriesResponse {
    /// The responder's header.
    pub header: RpcHeader,
    /// The responder's current term.
    pub term: u64,
    /// The responder's last log index.
    pub last_log: u64,
    /// Whether the entries were appended.
    pub success: bool,
    /// Set when the leader should not back off before retrying.
    pub no_retry_backoff: bool,
}

impl sealed::Sealed for AppendEntriesResponse {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.uint64(3, self.last_log);
        w.bool(4, self.success);
        w.bool(5, self.no_retry_backoff);
    }
}

impl RaftMessage for AppendEntriesResponse {
    type Wire = wire::AppendEntriesResponse;
    const PROTO_NAME: &'static str = "AppendEntriesResponse";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(AppendEntriesResponse {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            last_log: wire.last_log,
            success: wire.success,
            no_retry_backoff: wire.no_retry_backoff,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::AppendEntriesResponse {
            header: self.header.to_wire(),
            term: self.term,
            last_log: self.last_log,
            success: self.success,
            no_retry_backoff: self.no_retry_backoff,
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len()
            + uint64_len(2, self.term)
            + uint64_len(3, self.last_log)
            + bool_len(4, self.success)
            + bool_len(5, self.no_retry_backoff)
    }
}

impl From<wire::AppendEntriesPipelineResponse> for AppendEntriesResponse {
    fn from(wire: wire::AppendEntriesPipelineResponse) -> Self {
        AppendEntriesResponse {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            last_log: wire.last_log,
            success: wire.success,
            no_retry_backoff: wire.no_retry_backoff,
        }
    }
}

impl From<&AppendEntriesResponse> for wire::AppendEntriesPipelineResponse {
    fn from(response: &AppendEntriesResponse) -> Self {
        wire::AppendEntriesPipelineResponse {
            header: response.header.to_wire(),
            term: response.term,
            last_log: response.last_log,
            success: response.success,
            no_retry_backoff: response.no_retry_backoff,
        }
    }
}

/// RequestVote: a candidate asks for a vote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestVoteRequest {
    /// The sender's header.
    pub header: RpcHeader,
    /// The candidate's term.
    pub term: u64,
    /// Index of the candidate's last log entry.
    pub last_log_index: u64,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
    /// Set when the election was started by a leadership transfer.
    pub leadership_transfer: bool,
    /// hashicorp's deprecated `Candidate`: the candidate's address, for peers
    /// older than Raft protocol version 3. Empty when not set (always so from
    /// a Go peer); receivers then use `header.addr`.
    pub candidate: Bytes,
}

impl sealed::Sealed for RequestVoteRequest {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        match w.profile() {
            WireProfile::V0_2 => {
                w.uint64(3, self.last_log_index);
                w.uint64(4, self.last_log_term);
                w.bool(5, self.leadership_transfer);
                w.bytes(6, &self.candidate);
            }
            WireProfile::V0_1 => {
                w.bytes(3, &self.candidate);
                w.uint64(4, self.last_log_index);
                w.uint64(5, self.last_log_term);
                w.bool(6, self.leadership_transfer);
            }
        }
    }
}

impl RaftMessage for RequestVoteRequest {
    type Wire = wire::RequestVoteRequest;
    const PROTO_NAME: &'static str = "RequestVoteRequest";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(RequestVoteRequest {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            last_log_index: wire.last_log_index,
            last_log_term: wire.last_log_term,
            leadership_transfer: wire.leadership_transfer,
            candidate: wire.candidate,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::RequestVoteRequest {
            header: self.header.to_wire(),
            term: self.term,
            last_log_index: self.last_log_index,
            last_log_term: self.last_log_term,
            leadership_transfer: self.leadership_transfer,
            candidate: self.candidate.clone(),
        }
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len_with(WireProfile::V0_2)
    }

    fn encoded_len_with(&self, profile: WireProfile) -> usize {
        // The same fields under both profiles, at other numbers; every
        // number here is below 16, so each key is one byte either way.
        let (last_log_index, last_log_term, leadership_transfer, candidate) = match profile {
            WireProfile::V0_2 => (3, 4, 5, 6),
            WireProfile::V0_1 => (4, 5, 6, 3),
        };
        self.header.field_len()
            + uint64_len(2, self.term)
            + uint64_len(last_log_index, self.last_log_index)
            + uint64_len(last_log_term, self.last_log_term)
            + bool_len(leadership_transfer, self.leadership_transfer)
            + bytes_len(candidate, &self.candidate)
    }

    fn decode_with(profile: WireProfile, buf: impl Buf) -> Result<Self, DecodeError> {
        match profile {
            WireProfile::V0_2 => Self::decode(buf),
            WireProfile::V0_1 => {
                let wire: wire::v0_1::RequestVoteRequest = decode_wire(Self::PROTO_NAME, buf)?;
                Ok(RequestVoteRequest {
                    header: RpcHeader::from_wire(wire.header),
                    term: wire.term,
                    last_log_index: wire.last_log_index,
                    last_log_term: wire.last_log_term,
                    leadership_transfer: wire.leadership_transfer,
                    candidate: wire.candidate,
                })
            }
        }
    }
}

/// Answer to [`RequestVoteRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestVoteResponse {
    /// The responder's header.
    pub header: RpcHeader,
    /// The responder's current term.
    pub term: u64,
    /// Deprecated peer set, as hashicorp/raft carries it.
    pub peers: Bytes,
    /// Whether the vote was granted.
    pub granted: bool,
}

impl sealed::Sealed for RequestVoteResponse {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.bytes(3, &self.peers);
        w.bool(4, self.granted);
    }
}

impl RaftMessage for RequestVoteResponse {
    type Wire = wire::RequestVoteResponse;
    const PROTO_NAME: &'static str = "RequestVoteResponse";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(RequestVoteResponse {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            peers: wire.peers,
            granted: wire.granted,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::RequestVoteResponse {
            header: self.header.to_wire(),
            term: self.term,
            peers: self.peers.clone(),
            granted: self.granted,
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len()
            + uint64_len(2, self.term)
            + bytes_len(3, &self.peers)
            + bool_len(4, self.granted)
    }
}

/// RequestPreVote: would a vote be granted at this term? (No term change on
/// the receiver.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestPreVoteRequest {
    /// The sender's header.
    pub header: RpcHeader,
    /// The term the candidate would stand in.
    pub term: u64,
    /// Index of the candidate's last log entry.
    pub last_log_index: u64,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
}

impl sealed::Sealed for RequestPreVoteRequest {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.uint64(3, self.last_log_index);
        w.uint64(4, self.last_log_term);
    }
}

impl RaftMessage for RequestPreVoteRequest {
    type Wire = wire::RequestPreVoteRequest;
    const PROTO_NAME: &'static str = "RequestPreVoteRequest";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(RequestPreVoteRequest {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            last_log_index: wire.last_log_index,
            last_log_term: wire.last_log_term,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::RequestPreVoteRequest {
            header: self.header.to_wire(),
            term: self.term,
            last_log_index: self.last_log_index,
            last_log_term: self.last_log_term,
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len()
            + uint64_len(2, self.term)
            + uint64_len(3, self.last_log_index)
            + uint64_len(4, self.last_log_term)
    }
}

/// Answer to [`RequestPreVoteRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestPreVoteResponse {
    /// The responder's header.
    pub header: RpcHeader,
    /// The responder's current term.
    pub term: u64,
    /// Whether the pre-vote was granted.
    pub granted: bool,
}

impl sealed::Sealed for RequestPreVoteResponse {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.bool(3, self.granted);
    }
}

impl RaftMessage for RequestPreVoteResponse {
    type Wire = wire::RequestPreVoteResponse;
    const PROTO_NAME: &'static str = "RequestPreVoteResponse";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(RequestPreVoteResponse {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            granted: wire.granted,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::RequestPreVoteResponse {
            header: self.header.to_wire(),
            term: self.term,
            granted: self.granted,
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len() + uint64_len(2, self.term) + bool_len(3, self.granted)
    }
}

/// The metadata of an InstallSnapshot stream: what the first message of the
/// stream carries. The snapshot's bytes follow as [`SnapshotChunk`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InstallSnapshotRequest {
    /// The sender's header.
    pub header: RpcHeader,
    /// hashicorp's `SnapshotVersion`. 0 (the value when a Go peer sends)
    /// makes hashicorp/raft rebuild membership from the legacy `peers`
    /// field, losing non-voters and real server IDs; send 1 with
    /// `configuration` set.
    pub snapshot_version: i64,
    /// The leader's current term.
    pub term: u64,
    /// hashicorp's deprecated `Leader`: the leader's address, for peers older
    /// than Raft protocol version 3. Empty when not set.
    pub leader: Bytes,
    /// Last log index the snapshot covers.
    pub last_log_index: u64,
    /// Term of that entry.
    pub last_log_term: u64,
    /// Legacy peer set (snapshot version 0).
    pub peers: Bytes,
    /// Cluster configuration (snapshot version 1 and later).
    pub configuration: Bytes,
    /// Log index of that configuration.
    pub configuration_index: u64,
    /// Size of the snapshot data in bytes. Carried as an `int64`: sizes above
    /// `i64::MAX` are clamped, and a negative size from a peer is rejected.
    pub size: u64,
}

/// The field numbers of an InstallSnapshot request after `header` (1) and
/// `term` (2), which no profile moves: `last_log_index` is `first`, and
/// `last_log_term`, `peers`, `configuration`, `configuration_index` and
/// `size` follow it one by one; `data` comes after a gap of one number under
/// v0.2 (where 9 is data and 10–12 follow it), of none under v0.1.
struct InstallSnapshotNumbers {
    first: u32,
    data: u32,
    /// `snapshot_version`, `leader` and `data_crc32c`; `None`: the profile
    /// has none of them.
    version_leader_crc: Option<(u32, u32, u32)>,
}

impl InstallSnapshotNumbers {
    fn of(profile: WireProfile) -> Self {
        match profile {
            WireProfile::V0_2 => InstallSnapshotNumbers {
                first: 3,
                data: 9,
                version_leader_crc: Some((10, 11, 12)),
            },
            WireProfile::V0_1 => InstallSnapshotNumbers {
                first: 4,
                data: 10,
                version_leader_crc: None,
            },
        }
    }
}

impl sealed::Sealed for InstallSnapshotRequest {
    fn encode_fields(&self, w: &mut FieldWriter) {
        let n = InstallSnapshotNumbers::of(w.profile());
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.uint64(n.first, self.last_log_index);
        w.uint64(n.first + 1, self.last_log_term);
        w.bytes(n.first + 2, &self.peers);
        w.bytes(n.first + 3, &self.configuration);
        w.uint64(n.first + 4, self.configuration_index);
        w.int64(n.first + 5, self.wire_size());
        if let Some((version, leader, _)) = n.version_leader_crc {
            w.int64(version, self.snapshot_version);
            w.bytes(leader, &self.leader);
        }
    }

    fn zero_copy_len(&self, zero_copy_min: usize, profile: WireProfile) -> usize {
        let leader = match InstallSnapshotNumbers::of(profile).version_leader_crc {
            Some(_) => zero_copy_len(&self.leader, zero_copy_min),
            None => 0,
        };
        self.header.zero_copy_len(zero_copy_min)
            + zero_copy_len(&self.peers, zero_copy_min)
            + zero_copy_len(&self.configuration, zero_copy_min)
            + leader
    }
}

impl InstallSnapshotRequest {
    fn wire_size(&self) -> i64 {
        i64::try_from(self.size).unwrap_or(i64::MAX)
    }

    /// Splits the first message of a stream into its metadata and the data
    /// it may carry. Go peers never put data in the first message, but other
    /// senders do (Jille's Go transport), so a receiver keeps both.
    pub fn from_first_message(
        wire: wire::InstallSnapshotRequest,
    ) -> Result<(Self, SnapshotChunk), DecodeError> {
        let chunk = SnapshotChunk {
            data: wire.data.clone(),
            data_crc32c: wire.data_crc32c,
        };
        Ok((Self::from_wire(wire)?, chunk))
    }

    /// Decodes the first message of a stream numbered as `profile` numbers
    /// it, into its metadata and the data it may carry (see
    /// [`from_first_message`](Self::from_first_message)). Under v0.1 the
    /// metadata has `snapshot_version` 0 and no `leader`, and the data no
    /// checksum.
    pub fn decode_first_message(
        profile: WireProfile,
        buf: impl Buf,
    ) -> Result<(Self, SnapshotChunk), DecodeError> {
        match profile {
            WireProfile::V0_2 => Self::from_first_message(decode_wire(Self::PROTO_NAME, buf)?),
            WireProfile::V0_1 => {
                let wire: wire::v0_1::InstallSnapshotRequest = decode_wire(Self::PROTO_NAME, buf)?;
                let size = u64::try_from(wire.size)
                    .map_err(|_| DecodeError::NegativeSnapshotSize(wire.size))?;
                let meta = InstallSnapshotRequest {
                    header: RpcHeader::from_wire(wire.header),
                    snapshot_version: 0,
                    term: wire.term,
                    leader: Bytes::new(),
                    last_log_index: wire.last_log_index,
                    last_log_term: wire.last_log_term,
                    peers: wire.peers,
                    configuration: wire.configuration,
                    configuration_index: wire.configuration_index,
                    size,
                };
                let chunk = SnapshotChunk {
                    data: wire.data,
                    data_crc32c: None,
                };
                Ok((meta, chunk))
            }
        }
    }
}

impl RaftMessage for InstallSnapshotRequest {
    type Wire = wire::InstallSnapshotRequest;
    const PROTO_NAME: &'static str = "InstallSnapshotRequest";

    /// Reads the metadata fields; `data` and `data_crc32c` are ignored here
    /// (see [`InstallSnapshotRequest::from_first_message`] and
    /// [`SnapshotChunk`]).
    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        let size =
            u64::try_from(wire.size).map_err(|_| DecodeError::NegativeSnapshotSize(wire.size))?;
        Ok(InstallSnapshotRequest {
            header: RpcHeader::from_wire(wire.header),
            snapshot_version: wire.snapshot_version,
            term: wire.term,
            leader: wire.leader,
            last_log_index: wire.last_log_index,
            last_log_term: wire.last_log_term,
            peers: wire.peers,
            configuration: wire.configuration,
            configuration_index: wire.configuration_index,
            size,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::InstallSnapshotRequest {
            header: self.header.to_wire(),
            term: self.term,
            last_log_index: self.last_log_index,
            last_log_term: self.last_log_term,
            peers: self.peers.clone(),
            configuration: self.configuration.clone(),
            configuration_index: self.configuration_index,
            size: self.wire_size(),
            data: Bytes::new(),
            snapshot_version: self.snapshot_version,
            leader: self.leader.clone(),
            data_crc32c: None,
        }
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len_with(WireProfile::V0_2)
    }

    fn encoded_len_with(&self, profile: WireProfile) -> usize {
        let n = InstallSnapshotNumbers::of(profile);
        self.header.field_len()
            + uint64_len(2, self.term)
            + uint64_len(n.first, self.last_log_index)
            + uint64_len(n.first + 1, self.last_log_term)
            + bytes_len(n.first + 2, &self.peers)
            + bytes_len(n.first + 3, &self.configuration)
            + uint64_len(n.first + 4, self.configuration_index)
            + int64_len(n.first + 5, self.wire_size())
            + n.version_leader_crc.map_or(0, |(version, leader, _)| {
                int64_len(version, self.snapshot_version) + bytes_len(leader, &self.leader)
            })
    }

    /// Reads the metadata fields of a message numbered as `profile` numbers
    /// it; its data is ignored here (see
    /// [`InstallSnapshotRequest::decode_first_message`]).
    fn decode_with(profile: WireProfile, buf: impl Buf) -> Result<Self, DecodeError> {
        Self::decode_first_message(profile, buf).map(|(meta, _)| meta)
    }
}

/// A message of an InstallSnapshot stream after the first: a piece of the
/// snapshot's data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SnapshotChunk {
    /// The bytes. A sender never sends an empty chunk to a peer: a Go
    /// receiver reads one as the end of the snapshot.
    pub data: Bytes,
    /// CRC-32C of all snapshot bytes the stream carried so far, up to and
    /// including `data`; `None` when the sender does not checksum (always so
    /// for a Go peer).
    pub data_crc32c: Option<u32>,
}

impl sealed::Sealed for SnapshotChunk {
    fn encode_fields(&self, w: &mut FieldWriter) {
        let n = InstallSnapshotNumbers::of(w.profile());
        w.bytes(n.data, &self.data);
        if let Some((_, _, crc)) = n.version_leader_crc {
            w.optional_fixed32(crc, self.data_crc32c);
        }
    }

    fn zero_copy_len(&self, zero_copy_min: usize, _: WireProfile) -> usize {
        zero_copy_len(&self.data, zero_copy_min)
    }
}

impl RaftMessage for SnapshotChunk {
    type Wire = wire::InstallSnapshotRequest;
    const PROTO_NAME: &'static str = "InstallSnapshotRequest";

    /// Reads `data` and `data_crc32c`; metadata fields are ignored (a chunk
    /// after the first message carries none).
    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(SnapshotChunk {
            data: wire.data,
            data_crc32c: wire.data_crc32c,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::InstallSnapshotRequest {
            data: self.data.clone(),
            data_crc32c: self.data_crc32c,
            ..Default::default()
        }
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len_with(WireProfile::V0_2)
    }

    /// Under v0.1 the checksum is not carried.
    fn encoded_len_with(&self, profile: WireProfile) -> usize {
        let n = InstallSnapshotNumbers::of(profile);
        bytes_len(n.data, &self.data)
            + n.version_leader_crc
                .map_or(0, |(_, _, crc)| optional_fixed32_len(crc, self.data_crc32c))
    }

    /// Reads the data of a message numbered as `profile` numbers it (under
    /// v0.1, without a checksum).
    fn decode_with(profile: WireProfile, buf: impl Buf) -> Result<Self, DecodeError> {
        match profile {
            WireProfile::V0_2 => Self::decode(buf),
            WireProfile::V0_1 => {
                let wire: wire::v0_1::InstallSnapshotRequest = decode_wire(Self::PROTO_NAME, buf)?;
                Ok(SnapshotChunk {
                    data: wire.data,
                    data_crc32c: None,
                })
            }
        }
    }
}

/// Answer to an InstallSnapshot stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InstallSnapshotResponse {
    /// The responder's header.
    pub header: RpcHeader,
    /// The responder's current term.
    pub term: u64,
    /// Whether the snapshot was installed.
    pub success: bool,
}

impl sealed::Sealed for InstallSnapshotResponse {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
        w.uint64(2, self.term);
        w.bool(3, self.success);
    }
}

impl RaftMessage for InstallSnapshotResponse {
    type Wire = wire::InstallSnapshotResponse;
    const PROTO_NAME: &'static str = "InstallSnapshotResponse";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(InstallSnapshotResponse {
            header: RpcHeader::from_wire(wire.header),
            term: wire.term,
            success: wire.success,
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::InstallSnapshotResponse {
            header: self.header.to_wire(),
            term: self.term,
            success: self.success,
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len() + uint64_len(2, self.term) + bool_len(3, self.success)
    }
}

/// TimeoutNow: the leader asks a follower to start an election at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimeoutNowRequest {
    /// The sender's header.
    pub header: RpcHeader,
}

impl sealed::Sealed for TimeoutNowRequest {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
    }
}

impl RaftMessage for TimeoutNowRequest {
    type Wire = wire::TimeoutNowRequest;
    const PROTO_NAME: &'static str = "TimeoutNowRequest";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(TimeoutNowRequest {
            header: RpcHeader::from_wire(wire.header),
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::TimeoutNowRequest {
            header: self.header.to_wire(),
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len()
    }
}

/// Answer to [`TimeoutNowRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimeoutNowResponse {
    /// The responder's header.
    pub header: RpcHeader,
}

impl sealed::Sealed for TimeoutNowResponse {
    fn encode_fields(&self, w: &mut FieldWriter) {
        self.header.encode_field(w);
    }
}

impl RaftMessage for TimeoutNowResponse {
    type Wire = wire::TimeoutNowResponse;
    const PROTO_NAME: &'static str = "TimeoutNowResponse";

    fn from_wire(wire: Self::Wire) -> Result<Self, DecodeError> {
        Ok(TimeoutNowResponse {
            header: RpcHeader::from_wire(wire.header),
        })
    }

    fn to_wire(&self) -> Self::Wire {
        wire::TimeoutNowResponse {
            header: self.header.to_wire(),
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.field_len()
    }
}

/// A Raft request, as a server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftRequest {
    /// AppendEntries, from a unary call or one message of a pipeline.
    AppendEntries(AppendEntriesRequest),
    /// RequestVote.
    RequestVote(RequestVoteRequest),
    /// RequestPreVote.
    RequestPreVote(RequestPreVoteRequest),
    /// TimeoutNow.
    TimeoutNow(TimeoutNowRequest),
    /// InstallSnapshot's metadata (its data travels after it).
    InstallSnapshot(InstallSnapshotRequest),
}

/// A Raft response: what a server answers and a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftResponse {
    /// Answer to AppendEntries (unary or pipelined).
    AppendEntries(AppendEntriesResponse),
    /// Answer to RequestVote.
    RequestVote(RequestVoteResponse),
    /// Answer to RequestPreVote.
    RequestPreVote(RequestPreVoteResponse),
    /// Answer to TimeoutNow.
    TimeoutNow(TimeoutNowResponse),
    /// Answer to InstallSnapshot.
    InstallSnapshot(InstallSnapshotResponse),
}

impl RaftRequest {
    /// Length in bytes of the request's protobuf encoding (for
    /// InstallSnapshot, of its metadata alone).
    pub fn encoded_len(&self) -> usize {
        match self {
            RaftRequest::AppendEntries(r) => r.encoded_len(),
            RaftRequest::RequestVote(r) => r.encoded_len(),
            RaftRequest::RequestPreVote(r) => r.encoded_len(),
            RaftRequest::TimeoutNow(r) => r.encoded_len(),
            RaftRequest::InstallSnapshot(r) => r.encoded_len(),
        }
    }
}

impl RaftResponse {
    /// Whether this answers a call of `method`.
    pub fn answers(&self, method: RpcMethod) -> bool {
        matches!(
            (self, method),
            (
                RaftResponse::AppendEntries(_),
                RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline
            ) | (RaftResponse::RequestVote(_), RpcMethod::RequestVote)
                | (RaftResponse::RequestPreVote(_), RpcMethod::RequestPreVote)
                | (RaftResponse::TimeoutNow(_), RpcMethod::TimeoutNow)
                | (RaftResponse::InstallSnapshot(_), RpcMethod::InstallSnapshot)
        )
    }

    /// The protobuf message's name.
    pub fn proto_name(&self) -> &'static str {
        match self {
            RaftResponse::AppendEntries(_) => AppendEntriesResponse::PROTO_NAME,
            RaftResponse::RequestVote(_) => RequestVoteResponse::PROTO_NAME,
            RaftResponse::RequestPreVote(_) => RequestPreVoteResponse::PROTO_NAME,
            RaftResponse::TimeoutNow(_) => TimeoutNowResponse::PROTO_NAME,
            RaftResponse::InstallSnapshot(_) => InstallSnapshotResponse::PROTO_NAME,
        }
    }

    /// Frames the response for the wire.
    pub fn encode(
        &self,
        encoder: &crate::framing::MessageEncoder,
    ) -> Result<crate::framing::EncodedMessage, crate::framing::EncodeError> {
        match self {
            RaftResponse::AppendEntries(r) => encoder.encode(r),
            RaftResponse::RequestVote(r) => encoder.encode(r),
            RaftResponse::RequestPreVote(r) => encoder.encode(r),
            RaftResponse::TimeoutNow(r) => encoder.encode(r),
            RaftResponse::InstallSnapshot(r) => encoder.encode(r),
        }
    }

    /// Decodes the response of a call of `method` from its protobuf body
    /// (see [`RaftMessage::decode`]).
    pub fn decode(method: RpcMethod, body: impl Buf) -> Result<RaftResponse, DecodeError> {
        match method {
            RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline => {
                AppendEntriesResponse::decode(body).map(RaftResponse::AppendEntries)
            }
            RpcMethod::RequestVote => {
                RequestVoteResponse::decode(body).map(RaftResponse::RequestVote)
            }
            RpcMethod::RequestPreVote => {
                RequestPreVoteResponse::decode(body).map(RaftResponse::RequestPreVote)
            }
            RpcMethod::TimeoutNow => TimeoutNowResponse::decode(body).map(RaftResponse::TimeoutNow),
            RpcMethod::InstallSnapshot => {
                InstallSnapshotResponse::decode(body).map(RaftResponse::InstallSnapshot)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RpcHeader {
        RpcHeader::new(3, "node-1", "127.0.0.1:7000")
    }

    /// The hand-written encoder must produce exactly what prost produces for
    /// the same message.
    fn same_as_prost<M: RaftMessage>(message: &M) {
        let ours = message.encode_to_bytes();
        let prost = message.to_wire().encode_to_vec();
        assert_eq!(&ours[..], &prost[..], "{message:?}");
        assert_eq!(message.encoded_len(), prost.len());
        assert_eq!(&M::decode(ours).unwrap(), message);
    }

    #[test]
    fn every_message_encodes_as_prost_does() {
        let entry = Log {
            index: 9,
            term: 2,
            log_type: LogType::Configuration,
            data: Bytes::from_static(b"payload"),
            extensions: Bytes::from_static(b"ext"),
            appended_at: Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)),
        };
        same_as_prost(&AppendEntriesRequest {
            header: header(),
            term: 5,
            prev_log_entry: 8,
            prev_log_term: 2,
            entries: vec![entry.clone(), Log::default()],
            leader_commit_index: 7,
            leader: Bytes::from_static(b"leader"),
        });
        same_as_prost(&AppendEntriesResponse {
            header: header(),
            term: 5,
            last_log: 9,
            success: true,
            no_retry_backoff: true,
        });
        same_as_prost(&RequestVoteRequest {
            header: header(),
            term: 5,
            last_log_index: 9,
            last_log_term: 4,
            leadership_transfer: true,
            candidate: Bytes::from_static(b"c"),
        });
        same_as_prost(&RequestVoteResponse {
            header: header(),
            term: 5,
            peers: Bytes::from_static(b"p"),
            granted: true,
        });
        same_as_prost(&RequestPreVoteRequest {
            header: header(),
            term: 5,
            last_log_index: 9,
            last_log_term: 4,
        });
        same_as_prost(&RequestPreVoteResponse {
            header: header(),
            term: 5,
            granted: true,
        });
        same_as_prost(&InstallSnapshotRequest {
            header: header(),
            snapshot_version: 1,
            term: 5,
            leader: Bytes::from_static(b"l"),
            last_log_index: 100,
            last_log_term: 4,
            peers: Bytes::from_static(b"peers"),
            configuration: Bytes::from_static(b"conf"),
            configuration_index: 90,
            size: 1 << 40,
        });
        same_as_prost(&SnapshotChunk {
            data: Bytes::from_static(b"chunk"),
            data_crc32c: Some(0),
        });
        same_as_prost(&InstallSnapshotResponse {
            header: header(),
            term: 5,
            success: true,
        });
        same_as_prost(&TimeoutNowRequest { header: header() });
        same_as_prost(&TimeoutNowResponse::default());
    }

    #[test]
    fn log_type_numbers_follow_hashicorp() {
        for n in 0..=7u32 {
            assert_eq!(u32::from(LogType::from(n)), n);
        }
        assert_eq!(LogType::from(5), LogType::Configuration);
        assert_eq!(LogType::from(6), LogType::Unknown(6));
    }

    #[test]
    fn appended_at_survives_before_and_after_the_epoch() {
        for nanos in [
            0i64,
            1,
            -1,
            1_700_000_000_000_000_001,
            i64::MIN + 1,
            i64::MAX,
        ] {
            let time = unix_nanos_to_system_time(nanos).unwrap();
            assert_eq!(system_time_to_unix_nanos(time), nanos);
        }
    }

    #[test]
    fn negative_snapshot_size_is_rejected_as_invalid_argument() {
        let wire = wire::InstallSnapshotRequest {
            size: -1,
            ..Default::default()
        };
        let err = InstallSnapshotRequest::decode(Bytes::from(wire.encode_to_vec())).unwrap_err();
        assert_eq!(err, DecodeError::NegativeSnapshotSize(-1));
        assert_eq!(err.status().code(), Code::InvalidArgument);
    }

    #[test]
    fn malformed_protobuf_is_internal() {
        // Field 1 (header) says 10 bytes follow, but only 1 does.
        let err = AppendEntriesRequest::decode(Bytes::from_static(&[0x0a, 10, 0])).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Protobuf {
                message: "AppendEntriesRequest",
                ..
            }
        ));
        assert_eq!(err.status().code(), Code::Internal);
    }

    #[test]
    fn decoding_slices_payloads_out_of_the_input() {
        let request = AppendEntriesRequest {
            header: header(),
            entries: vec![Log::command(1, 1, vec![7u8; 4096])],
            ..Default::default()
        };
        let buf = request.encode_to_bytes();
        let range = buf.as_ptr_range();
        let decoded = AppendEntriesRequest::decode(buf.clone()).unwrap();
        let data = &decoded.entries[0].data;
        assert!(range.contains(&data.as_ptr()), "entry data was copied");
        assert_eq!(data.len(), 4096);

        let chunk = SnapshotChunk {
            data: vec![3u8; 10_000].into(),
            data_crc32c: Some(1),
        }
        .encode_to_bytes();
        let range = chunk.as_ptr_range();
        let decoded = SnapshotChunk::decode(chunk.clone()).unwrap();
        assert!(
            range.contains(&decoded.data.as_ptr()),
            "snapshot chunk was copied"
        );
    }

    #[test]
    fn first_snapshot_message_keeps_its_data() {
        let wire = wire::InstallSnapshotRequest {
            term: 3,
            size: 5,
            data: Bytes::from_static(b"hello"),
            ..Default::default()
        };
        let (meta, chunk) = InstallSnapshotRequest::from_first_message(wire).unwrap();
        assert_eq!(meta.size, 5);
        assert_eq!(&chunk.data[..], b"hello");
    }

    #[test]
    fn pipeline_wire_types_convert_both_ways() {
        let request = AppendEntriesRequest {
            header: header(),
            term: 2,
            entries: vec![Log::command(1, 2, Bytes::from_static(b"x"))],
            ..Default::default()
        };
        let pipeline = wire::AppendEntriesPipelineRequest::from(&request);
        assert_eq!(pipeline.encode_to_vec(), request.encode_to_bytes().to_vec());
        assert_eq!(AppendEntriesRequest::from(pipeline), request);

        let response = AppendEntriesResponse {
            header: header(),
            term: 2,
            last_log: 1,
            success: true,
            no_retry_backoff: false,
        };
        let pipeline = wire::AppendEntriesPipelineResponse::from(&response);
        assert_eq!(
            pipeline.encode_to_vec(),
            response.encode_to_bytes().to_vec()
        );
        assert_eq!(AppendEntriesResponse::from(pipeline), response);
    }
}
