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
//! * [`status`], [`head`], [`timeout`], [`metadata`]: gRPC statuses and
//!   trailers, request and response heads and method routing,
//!   `grpc-timeout`, binary metadata;
//! * [`call`]: one call on one HTTP/2 stream, client ([`call::ClientCall`])
//!   and server ([`call::ServerCall`]);
//! * [`client`]: every outgoing call of a node as one machine
//!   ([`client::ClientEndpoint`]): pool, lanes, pipelines, snapshots;
//! * [`pool`], [`pipeline`], [`snapshot`], [`heartbeat`]: per-peer
//!   connection slots and backoff, the pipeline window, snapshot stream
//!   progress, heartbeat classification.
//!
//! Every error that bad input can cause is a typed error with a
//! `status()` giving the gRPC status to answer or fail the call with.
//!
//! # Driving the machines
//!
//! Nothing here does I/O or reads a clock: inputs are `handle_*` calls
//! taking `now`, outputs are pulled. After every input, pull until empty:
//! `poll_transmit` (what to write on a stream, within the send capacity
//! you pass), `poll_event` (what happened), then `poll_timeout` (when to
//! call `handle_timeout`). Spurious timeouts are harmless.
//!
//! One unary call, driven by hand through a client and a server machine:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use http::uri::Authority;
//! use raft_grpc_transport::call::*;
//! use raft_grpc_transport::framing::MessageEncoder;
//! use raft_grpc_transport::head::{RequestHead, RpcMethod};
//! use raft_grpc_transport::message::*;
//! use raft_grpc_transport::Status;
//!
//! let now = Instant::now();
//! let request = RequestVoteRequest { term: 7, last_log_index: 42, ..Default::default() };
//!
//! // Client: a call with a head, one message, then half-close.
//! let head = RequestHead {
//!     method: RpcMethod::RequestVote,
//!     authority: Authority::from_static("10.0.0.2:7000"),
//!     timeout: Some(Duration::from_secs(10)),
//! };
//! let mut client = ClientCall::new(head, 4 << 20, now);
//! client.send(MessageEncoder::default().encode(&request).unwrap());
//! client.finish_sending();
//!
//! // The request head crosses the network; the server accepts it.
//! let (parts, ()) = client.request(now).into_parts();
//! let mut server = ServerCall::new(&parts, ServerCallConfig::default(), now).unwrap();
//!
//! // Request data crosses, within a 65,535-byte window.
//! while let Some(ClientTransmit::Data { data, end_of_stream }) = client.poll_transmit(65_535) {
//!     server.handle_data(data, now);
//!     if end_of_stream {
//!         server.handle_end_of_stream(now);
//!     }
//! }
//! let Some(ServerEvent::Request(RaftRequest::RequestVote(received))) = server.poll_event() else {
//!     panic!("the server sees the request");
//! };
//! assert_eq!(received, request);
//!
//! // The application answers; the response crosses back.
//! let answer = RequestVoteResponse { term: 7, granted: true, ..Default::default() };
//! server.respond(RaftResponse::RequestVote(answer.clone())).unwrap();
//! while let Some(transmit) = server.poll_transmit(65_535) {
//!     match transmit {
//!         ServerTransmit::Head { head, end_of_stream } => {
//!             client.handle_response_head(&head.into_parts().0, end_of_stream, now)
//!         }
//!         ServerTransmit::Data(data) => client.handle_data(data, now),
//!         ServerTransmit::Trailers(trailers) => client.handle_trailers(&trailers, now),
//!     }
//! }
//! assert!(server.is_finished());
//!
//! // The client reports the response, then the status: exactly once.
//! let Some(ClientEvent::Message(body)) = client.poll_event() else { panic!() };
//! assert_eq!(RequestVoteResponse::decode(body).unwrap(), answer);
//! assert_eq!(client.poll_event(), Some(ClientEvent::Finished(Status::ok())));
//! assert_eq!(client.poll_event(), None);
//! assert_eq!(client.poll_timeout(), None);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod client;
pub mod config;
pub mod error;
pub mod framing;
pub mod head;
pub mod heartbeat;
pub mod http2;
pub mod message;
pub mod metadata;
pub mod pipeline;
pub mod pool;
pub mod reference;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod timeout;
pub mod wire;

pub use error::TransportError;
pub use framing::{EncodedMessage, MessageDecoder, MessageEncoder};
pub use head::RpcMethod;
pub use message::RaftMessage;
pub use status::{Code, Status};
