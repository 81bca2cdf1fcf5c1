//! The protobuf wire types of `proto/raft/v1/raft.proto` (and, in
//! [`v0_1`], of the requests `proto/raft/v0_1/raft.proto` renumbers), exactly
//! as the protobuf compiler sees them.
//!
//! This module owns nothing but generated code: the message structs that
//! prost derives from the `.proto` file, with every `bytes` field as
//! [`bytes::Bytes`] so that decoding from a `Bytes` buffer slices payloads
//! instead of copying them. The idiomatic Raft types live in
//! [`crate::message`], which converts to and from these.
//!
//! The generated files are checked in (`src/wire/proto.raft.v1.rs`,
//! `src/wire/raft.v0_1.rs`) so that building this crate needs neither
//! `protoc` nor protox; the test `tests/generated_code.rs` regenerates them
//! with protox and prost-build and fails when they differ.

include!("proto.raft.v1.rs");

/// The requests whose fields the Go library's v0.1.0 numbers differently
/// (see [`crate::profile`]); their header and log entries are this module's
/// [`RpcHeader`] and [`Log`].
pub mod v0_1 {
    include!("raft.v0_1.rs");
}

/// The fully qualified name of the gRPC service, as it appears in `:path`.
pub const SERVICE_NAME: &str = "proto.raft.v1.RaftTransportService";
