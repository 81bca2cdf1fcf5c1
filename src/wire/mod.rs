//! The protobuf wire types of `proto/raft/v1/raft.proto`, exactly as the
//! protobuf compiler sees them.
//!
//! This module owns nothing but generated code: the message structs that
//! prost derives from the `.proto` file, with every `bytes` field as
//! [`bytes::Bytes`] so that decoding from a `Bytes` buffer slices payloads
//! instead of copying them. The idiomatic Raft types live in
//! [`crate::message`], which converts to and from these.
//!
//! The generated file is checked in (`src/wire/proto.raft.v1.rs`) so that
//! building this crate needs neither `protoc` nor protox; the test
//! `tests/generated_code.rs` regenerates it with protox and prost-build and
//! fails when the two differ.

include!("proto.raft.v1.rs");

/// The fully qualified name of the gRPC service, as it appears in `:path`.
pub const SERVICE_NAME: &str = "proto.raft.v1.RaftTransportService";
