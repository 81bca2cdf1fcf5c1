//! What an endpoint counts of its calls for RPC metrics: [`RpcRecord`].
//!
//! An endpoint asked for records ([`ServerEndpoint::set_rpc_records`])
//! queues one when a call starts, when messages go in or out, and when the
//! call's status is decided, with the method and the code: what the
//! grpc-ecosystem Prometheus metrics count (`grpc_server_started_total`,
//! `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`). A driver
//! drains them with [`ServerEndpoint::poll_rpc_record`] and hands them to
//! its metrics library; the core itself keeps no counter.
//!
//! Only calls to one of the service's six methods are recorded: a stream
//! whose `:path` names no method of the service (which a peer chooses
//! freely) makes no record, so what a peer can make a metrics backend hold
//! is bounded.
//!
//! [`ServerEndpoint::set_rpc_records`]: crate::server::ServerEndpoint::set_rpc_records
//! [`ServerEndpoint::poll_rpc_record`]: crate::server::ServerEndpoint::poll_rpc_record
//!
//! ```
//! use std::time::Instant;
//! use raft_grpc_transport::head::{RequestHead, RpcMethod};
//! use raft_grpc_transport::record::RpcRecord;
//! use raft_grpc_transport::server::{ServerConfig, ServerEndpoint};
//! use raft_grpc_transport::Code;
//!
//! let now = Instant::now();
//! let mut server = ServerEndpoint::new(ServerConfig::default());
//! server.set_rpc_records(true);
//! let conn = server.handle_connection(now);
//! server.handle_handshake_done(conn, now);
//! // A RequestVote whose client sends no request message: INTERNAL.
//! let head = RequestHead::new(RpcMethod::RequestVote, "me".parse().unwrap(), None);
//! let stream = server.handle_request_head(conn, &head.to_request().into_parts().0, now);
//! server.handle_end_of_stream(stream, now);
//! assert_eq!(server.poll_rpc_record(), Some(RpcRecord::Started { method: RpcMethod::RequestVote }));
//! let Some(RpcRecord::Handled { method, code, .. }) = server.poll_rpc_record() else { panic!() };
//! assert_eq!((method, code), (RpcMethod::RequestVote, Code::Internal));
//! assert_eq!(server.poll_rpc_record(), None);
//! ```

use std::time::Duration;

use crate::head::RpcMethod;
use crate::status::Code;

/// One thing an endpoint counts of a call (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcRecord {
    /// A call of `method` started: its request head arrived (a call
    /// refused at its head, by the authorizer say, starts and is handled
    /// at once).
    Started {
        /// The method called.
        method: RpcMethod,
    },
    /// Messages of a call of `method` went in or out since its last
    /// record: `received` request messages decoded (for InstallSnapshot,
    /// the metadata message and every chunk), `sent` response messages
    /// queued.
    Messages {
        /// The method called.
        method: RpcMethod,
        /// Request messages received.
        received: u64,
        /// Response messages sent.
        sent: u64,
    },
    /// A call's status was decided: it ended with `code`, `duration` after
    /// its head arrived. Every started call is handled exactly once.
    Handled {
        /// The method called.
        method: RpcMethod,
        /// Its gRPC status code.
        code: Code,
        /// From its head to its status.
        duration: Duration,
    },
}

impl RpcRecord {
    /// The method of the call the record is about.
    pub fn method(&self) -> RpcMethod {
        match *self {
            RpcRecord::Started { method }
            | RpcRecord::Messages { method, .. }
            | RpcRecord::Handled { method, .. } => method,
        }
    }
}

/// The gRPC call type of `method` as the grpc-ecosystem metrics name it in
/// their `grpc_type` label: `"unary"`, `"client_stream"` (InstallSnapshot)
/// or `"bidi_stream"` (AppendEntriesPipeline).
pub fn grpc_type(method: RpcMethod) -> &'static str {
    match method.shape() {
        crate::head::CallShape::Unary => "unary",
        crate::head::CallShape::ClientStreaming => "client_stream",
        crate::head::CallShape::BidiStreaming => "bidi_stream",
    }
}
