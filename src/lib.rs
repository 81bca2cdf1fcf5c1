//! The sans-IO core of a gRPC transport for Raft.
//!
//! Raft nodes send each other AppendEntries (single and pipelined), votes,
//! pre-votes, TimeoutNow and streamed snapshots. This crate carries them
//! over gRPC — HTTP/2 and protobuf — wire-compatible with the Go library
//! [`raft-grpc-transport`](https://github.com/dhiaayachi/raft-grpc-transport)
//! for hashicorp/raft, so Go and Rust nodes can talk to each other.
//!
//! This crate is the core: pure functions and state machines that turn Raft
//! messages into the bytes and headers of gRPC calls and back. It does no
//! I/O: it opens no sockets, spawns no threads, reads no clock and depends on
//! no runtime. The adapters (async over smol, blocking over std threads)
//! move its bytes through HTTP/2; you can also drive it from your own event
//! loop, fuzz it, or simulate it on virtual time.
//!
//! ```text
//!  Raft types ──encode──▶ EncodedMessage chunks ──▶ HTTP/2 DATA (adapter)
//!  (message)              (framing)
//!  Raft types ◀─decode─── message bodies ◀──────── HTTP/2 DATA, any split
//!
//!  RequestHead ──▶ http::Request      http::Request ──validate──▶ RpcMethod
//!  http::Response ──classify──▶ Status / messages    Status ──▶ trailers
//!  (head, status, timeout, metadata)
//! ```
//!
//! Modules:
//! * [`message`]: the Raft messages in idiomatic Rust, their protobuf
//!   encoding, and conversions to and from [`wire`], the generated protobuf
//!   types of `proto/raft/v1/raft.proto`;
//! * [`framing`]: the gRPC length-prefixed message encoder (zero-copy for
//!   large payloads) and incremental decoder;
//! * [`status`]: gRPC status codes, [`status::Status`], trailers;
//! * [`head`]: request and response heads, method routing;
//! * [`timeout`]: the `grpc-timeout` header;
//! * [`metadata`]: binary (`-bin`) metadata values.
//!
//! Every error that bad input can cause is a typed error with a
//! `status()` giving the gRPC status to answer or fail the call with.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod client;
pub mod framing;
pub mod head;
pub mod heartbeat;
pub mod message;
pub mod metadata;
pub mod pipeline;
pub mod pool;
pub mod snapshot;
pub mod status;
pub mod timeout;
pub mod wire;

pub use framing::{EncodedMessage, MessageDecoder, MessageEncoder};
pub use head::RpcMethod;
pub use message::RaftMessage;
pub use status::{Code, Status};
