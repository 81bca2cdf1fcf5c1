//! The sans-IO core of a gRPC transport for Raft.
//!
//! Raft nodes send each other AppendEntries (single and pipelined), votes,
//! pre-votes, TimeoutNow and streamed snapshots. This crate carries them
//! over gRPC — HTTP/2 and protobuf — wire-compatible with the Go library
//! [`raft-grpc-transport`](https://github.com/dhiaayachi/raft-grpc-transport)
//! for hashicorp/raft, so Go and Rust nodes can talk to each other.
//!
//! This crate is the whole protocol, as synchronous state machines and pure
//! functions. It does no I/O: it opens no sockets, spawns no threads, reads
//! no clock (time is an argument), depends on no runtime and contains no
//! async code. A driver moves its bytes through an HTTP/2 library (the
//! adapters under `adapters/` do, with h2, on smol, tokio or plain
//! threads); you can also drive it from your own event loop, fuzz it, or
//! simulate it on virtual time.
//!
//! ```text
//!          application                                   application
//!   calls │          ▲ outcomes                  requests │          ▲ answers
//!         ▼          │ (ClientEvent)         (poll_rpc,   ▼          │ (respond)
//!   ┌──────────────────────┐                  events)  ┌──────────────────────┐
//!   │    ClientEndpoint    │                           │    ServerEndpoint    │
//!   │ pool · lanes · PINGs │                           │ routing · queues ·   │
//!   │ pipelines · snapshots│                           │ answer order · close │
//!   │  ClientCall per call │                           │ ServerCall per stream│
//!   └──────────────────────┘                           └──────────────────────┘
//!  outputs │          ▲ handle_*                  outputs │          ▲ handle_*
//!          ▼          │                                   ▼          │
//!     driver: connect, PING, open, transmit ⇄ HTTP/2 ⇄ accept, transmit, release
//! ```
//!
//! Modules:
//! * [`client`]: every outgoing call of a node, one machine
//!   ([`client::ClientEndpoint`]); [`server`]: every incoming stream of a
//!   node, one machine ([`server::ServerEndpoint`]);
//! * [`call`]: one call on one HTTP/2 stream, client ([`call::ClientCall`])
//!   and server ([`call::ServerCall`]);
//! * [`pool`], [`pipeline`], [`snapshot`], [`heartbeat`]: per-peer
//!   connection slots, lanes and backoff; the pipeline window; snapshot
//!   stream progress, size-scaled deadlines and stall detection; which
//!   AppendEntries are heartbeats;
//! * [`message`], [`wire`], [`framing`], [`profile`]: the Raft messages, the
//!   generated protobuf types of `proto/raft/v1/raft.proto`, the gRPC
//!   length-prefixed encoder (zero-copy for large payloads) and incremental
//!   decoder, and the two field numberings ([`WireProfile`]: the Go
//!   library's v0.2.0 and later, the default, and its v0.1.0);
//! * [`status`], [`head`], [`timeout`], [`metadata`], [`http2`]: gRPC
//!   statuses and trailers, request and response heads and method routing,
//!   `grpc-timeout`, binary metadata, HTTP/2 error codes and settings;
//! * [`flow`]: receive windows sized from a bandwidth-delay estimate;
//! * [`record`]: what an endpoint counts of its calls for RPC metrics;
//! * [`config`]: every knob, and the one place its default is written;
//!   [`error`]: [`TransportError`], the typed outcome of a failed call;
//!   [`mod@reference`]: the reference answers `node serve` gives.
//!
//! Every error that bad input can cause is a typed error with a
//! `status()` giving the gRPC status to answer or fail the call with.
//!
//! # What can grow without a breaking change
//!
//! * Configurations ([`config::Config`], the endpoints' `ClientConfig`,
//!   `ServerConfig` and their parts, [`http2::Http2Settings`]) are
//!   `#[non_exhaustive]` with public fields: start from `Default` and use
//!   the chainable `with_*` setters or assign fields.
//! * Error enums ([`TransportError`], [`framing::FrameError`],
//!   [`snapshot::SnapshotError`], …) are `#[non_exhaustive]`: match the
//!   variants you act on and keep a `_` arm.
//! * What the endpoints report of a request ([`server::IncomingRpc`],
//!   [`head::AcceptedRequest`], [`head::RequestHead`],
//!   [`snapshot::SnapshotProgress`]) is `#[non_exhaustive]`: read its
//!   fields, and build a `RequestHead` with [`head::RequestHead::new`].
//! * The endpoints' outputs and events (`ClientOutput`, `ClientEvent`,
//!   `ServerOutput`, `ServerEvent`, the calls' transmits) and the Raft
//!   messages ([`message::RaftRequest`], [`message::RaftResponse`]) are
//!   exhaustive on purpose: a driver or a Raft loop must handle every one,
//!   so a new one is a breaking change that the compiler points out. The
//!   protobuf messages have public fields (they are the wire format): build
//!   them with `..Default::default()`, as fields may be added with the
//!   proto.
//!
//! # Driving the endpoints: one rule
//!
//! Inputs are `handle_*` methods (what the driver saw: a connection, a
//! head, data, a reset, a PING's answer, time) and application commands
//! named as verbs (`start_rpc`, `append`, `respond`, `close`, …); each
//! takes `now`. **After every one of them, drain `poll_output` (instructions
//! for the driver) and `poll_event` (news for the application) until both
//! are empty, then arm a timer at `poll_timeout`.** When an output says a
//! stream has something to send, or HTTP/2 grants it capacity, pull
//! `poll_transmit(stream, capacity)` until it returns `None`. Receive
//! capacity is released exactly as the `ReleaseCapacity` outputs say.
//! Spurious timeouts are harmless. A driver may batch — feed all the
//! inputs of one pass over its sockets, then drain once: the endpoints
//! ignore inputs about connections, calls or streams they have already
//! forgotten, so no order of batched inputs loses an outcome.
//!
//! A complete run loop: a client endpoint calls a server endpoint over a
//! toy link that delivers every frame at once, the way a driver would over
//! HTTP/2.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Instant;
//! use raft_grpc_transport::call::{ClientTransmit, ServerTransmit};
//! use raft_grpc_transport::client::{ClientConfig, ClientEndpoint, ClientEvent, ClientOutput, OutgoingRpc};
//! use raft_grpc_transport::message::*;
//! use raft_grpc_transport::server::{ServerConfig, ServerEndpoint, ServerOutput};
//!
//! let now = Instant::now();
//! let mut client = ClientEndpoint::new(ClientConfig::default());
//! let mut server = ServerEndpoint::new(ServerConfig::default());
//! let (mut conns, mut streams, mut calls) = (HashMap::new(), HashMap::new(), HashMap::new());
//! let mut answer = None;
//!
//! let vote = RequestVoteRequest { term: 7, last_log_index: 42, ..Default::default() };
//! let call = client.start_rpc("10.0.0.2:7000", OutgoingRpc::RequestVote(vote), now);
//! loop {
//!     let mut busy = false;
//!     // The client's instructions: the toy link carries them out at once.
//!     while let Some(output) = client.poll_output() {
//!         busy = true;
//!         match output {
//!             ClientOutput::Connect { conn, .. } => {
//!                 let accepted = server.handle_connection(now);
//!                 server.handle_handshake_done(accepted, now);
//!                 conns.insert(conn, accepted);
//!                 client.handle_connected(conn, now); // it PINGs next
//!             }
//!             ClientOutput::Ping { conn } => client.handle_ping_ack(conn, now),
//!             ClientOutput::OpenStream { conn, call, request, .. } => {
//!                 let stream = server.handle_request_head(conns[&conn], &request.into_parts().0, now);
//!                 streams.insert(call, stream);
//!                 calls.insert(stream, call);
//!             }
//!             ClientOutput::Transmit { .. } | ClientOutput::ReleaseCapacity { .. } | ClientOutput::Close { .. } => {}
//!         }
//!     }
//!     for (&call, &stream) in &streams {
//!         while let Some(ClientTransmit::Data { data, end_of_stream }) = client.poll_transmit(call, 65_535, now) {
//!             busy = true;
//!             server.handle_data(stream, data, now);
//!             if end_of_stream {
//!                 server.handle_end_of_stream(stream, now);
//!             }
//!         }
//!     }
//!     // The server's instructions.
//!     while let Some(output) = server.poll_output() {
//!         busy = true;
//!         if let ServerOutput::Transmit { stream, .. } = output {
//!             let call = calls[&stream];
//!             while let Some(transmit) = server.poll_transmit(stream, 65_535, now) {
//!                 match transmit {
//!                     ServerTransmit::Head { head, end_of_stream } => {
//!                         client.handle_response_head(call, &head.into_parts().0, end_of_stream, now)
//!                     }
//!                     ServerTransmit::Data(data) => client.handle_response_data(call, data, now),
//!                     ServerTransmit::Trailers(trailers) => client.handle_response_trailers(call, &trailers, now),
//!                 }
//!             }
//!         }
//!     }
//!     while server.poll_event().is_some() {}
//!     // The server's application: a consumer that grants every vote.
//!     while let Some(rpc) = server.poll_rpc(now) {
//!         busy = true;
//!         let RaftRequest::RequestVote(r) = &rpc.request else { unreachable!() };
//!         let granted = RequestVoteResponse { term: r.term, granted: true, ..Default::default() };
//!         server.respond(rpc.id, Ok(RaftResponse::RequestVote(granted)), now).unwrap();
//!     }
//!     // The client's application: the outcome, exactly once.
//!     while let Some(event) = client.poll_event() {
//!         busy = true;
//!         if let ClientEvent::Completed { call: done, result } = event {
//!             assert_eq!(done, call);
//!             answer = Some(result);
//!         }
//!     }
//!     if !busy {
//!         break;
//!     }
//! }
//! let Some(Ok(RaftResponse::RequestVote(vote))) = answer else { panic!("{answer:?}") };
//! assert!(vote.granted && vote.term == 7);
//! ```
//!
//! The per-call machines can be driven the same way on their own:
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
//! let head = RequestHead::new(
//!     RpcMethod::RequestVote,
//!     Authority::from_static("10.0.0.2:7000"),
//!     Some(Duration::from_secs(10)),
//! );
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

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod client;
pub mod config;
pub mod error;
pub mod flow;
pub mod framing;
pub mod head;
pub mod heartbeat;
pub mod http2;
pub mod message;
pub mod metadata;
pub mod pipeline;
pub mod pool;
pub mod profile;
pub mod record;
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
pub use profile::WireProfile;
pub use status::{Code, Status};
