//! The metrics the transport records through the `metrics` facade, with
//! the cargo feature `metrics` (off by default): their names, labels and
//! meaning, and the handles the driver records through.
//!
//! Install a recorder (an exporter such as `metrics-exporter-prometheus`)
//! **before building the transport**: a transport registers the handles of
//! its hot paths when it is built, and handles registered before any
//! recorder is installed record nothing.
//!
//! # The gRPC families
//!
//! The names and labels of the grpc-ecosystem Prometheus metrics, so that
//! dashboards written for Go gRPC services work unchanged. Labels:
//! `grpc_type` (`unary`, `client_stream` for InstallSnapshot, `bidi_stream`
//! for AppendEntriesPipeline), `grpc_service`
//! (`proto.raft.v1.RaftTransportService`), `grpc_method` (`AppendEntries`,
//! …) and, on `*_handled_total`, `grpc_code` (`OK`, `UNAVAILABLE`, …).
//!
//! | name | kind | what it counts |
//! | --- | --- | --- |
//! | `grpc_server_started_total` | counter | calls whose head arrived (one refused by the authorizer too) |
//! | `grpc_server_handled_total` | counter | calls ended, by `grpc_code` |
//! | `grpc_server_msg_received_total` | counter | request messages (a snapshot's metadata and each chunk) |
//! | `grpc_server_msg_sent_total` | counter | response messages |
//! | `grpc_server_handling_seconds` | histogram | from a call's head to its status |
//! | `grpc_client_started_total` | counter | calls and pipelines started |
//! | `grpc_client_handled_total` | counter | calls and pipelines ended, by `grpc_code` |
//! | `grpc_client_msg_received_total` | counter | responses received (one per successful unary call, one per acknowledged append) |
//! | `grpc_client_msg_sent_total` | counter | requests sent (one per unary call, as grpc-go counts it; a snapshot's metadata and each chunk; each append) |
//! | `grpc_client_handling_seconds` | histogram | from a call's start to its outcome |
//!
//! Only the service's six methods appear: a stream whose `:path` names no
//! method of the service is not counted (a peer cannot grow the label set).
//!
//! # The transport's own
//!
//! | name | kind | labels | what it measures |
//! | --- | --- | --- | --- |
//! | `raft_grpc_snapshot_sent_bytes_total` | counter | `peer` | snapshot data handed to outgoing snapshot streams |
//! | `raft_grpc_snapshot_received_bytes_total` | counter | — | snapshot data read by the application from incoming streams |
//! | `raft_grpc_pipeline_appends_in_flight` | gauge | `peer` | appends sent on pipelines whose completion the caller has not taken yet |
//! | `raft_grpc_client_connections` | gauge | `peer`, `lanes` | outgoing connections up, per peer and slot lanes ([`PeerPool::slot_lanes`]) |
//! | `raft_grpc_client_connect_failures_total` | counter | `peer`, `lanes` | connection attempts that failed (the slot then backs off) |
//! | `raft_grpc_client_reconnects_total` | counter | `peer`, `lanes` | connections opened on a slot that was connected before |
//! | `raft_grpc_server_connections` | gauge | — | incoming connections this transport's listeners accepted and still serve |
//! | `raft_grpc_heartbeat_seconds` | histogram | `peer` | round trip of successful heartbeats (AppendEntries without entries, on the control lane) |
//!
//! `peer` is the address calls name (`10.0.0.2:7000`); the server side
//! has no `peer` label, since a client's port changes with each
//! connection.
//!
//! [`PeerPool::slot_lanes`]: raft_grpc_transport::pool::PeerPool::slot_lanes

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::record::grpc_type;
use raft_grpc_transport::status::Code;
use raft_grpc_transport::wire::SERVICE_NAME;

/// Calls whose head arrived at the server.
pub const GRPC_SERVER_STARTED_TOTAL: &str = "grpc_server_started_total";
/// Calls the server ended, by `grpc_code`.
pub const GRPC_SERVER_HANDLED_TOTAL: &str = "grpc_server_handled_total";
/// Request messages the server received.
pub const GRPC_SERVER_MSG_RECEIVED_TOTAL: &str = "grpc_server_msg_received_total";
/// Response messages the server sent.
pub const GRPC_SERVER_MSG_SENT_TOTAL: &str = "grpc_server_msg_sent_total";
/// Seconds from a call's head to its status, at the server.
pub const GRPC_SERVER_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// Calls and pipelines the client started.
pub const GRPC_CLIENT_STARTED_TOTAL: &str = "grpc_client_started_total";
/// Calls and pipelines the client saw end, by `grpc_code`.
pub const GRPC_CLIENT_HANDLED_TOTAL: &str = "grpc_client_handled_total";
/// Response messages the client received.
pub const GRPC_CLIENT_MSG_RECEIVED_TOTAL: &str = "grpc_client_msg_received_total";
/// Request messages the client sent.
pub const GRPC_CLIENT_MSG_SENT_TOTAL: &str = "grpc_client_msg_sent_total";
/// Seconds from a call's start to its outcome, at the client.
pub const GRPC_CLIENT_HANDLING_SECONDS: &str = "grpc_client_handling_seconds";
/// Snapshot bytes handed to outgoing snapshot streams, per `peer`.
pub const SNAPSHOT_SENT_BYTES_TOTAL: &str = "raft_grpc_snapshot_sent_bytes_total";
/// Snapshot bytes the application read from incoming streams.
pub const SNAPSHOT_RECEIVED_BYTES_TOTAL: &str = "raft_grpc_snapshot_received_bytes_total";
/// Appends sent on pipelines and not yet completed, per `peer`.
pub const PIPELINE_APPENDS_IN_FLIGHT: &str = "raft_grpc_pipeline_appends_in_flight";
/// Outgoing connections up, per `peer` and `lanes`.
pub const CLIENT_CONNECTIONS: &str = "raft_grpc_client_connections";
/// Failed connection attempts, per `peer` and `lanes`.
pub const CLIENT_CONNECT_FAILURES_TOTAL: &str = "raft_grpc_client_connect_failures_total";
/// Connections opened on a slot that was connected before, per `peer`
/// and `lanes`.
pub const CLIENT_RECONNECTS_TOTAL: &str = "raft_grpc_client_reconnects_total";
/// Incoming connections served.
pub const SERVER_CONNECTIONS: &str = "raft_grpc_server_connections";
/// Round trip of successful heartbeats, per `peer`.
pub const HEARTBEAT_SECONDS: &str = "raft_grpc_heartbeat_seconds";

/// The position of `method` in [`RpcMethod::ALL`].
fn index(method: RpcMethod) -> usize {
    match method {
        RpcMethod::AppendEntriesPipeline => 0,
        RpcMethod::AppendEntries => 1,
        RpcMethod::RequestVote => 2,
        RpcMethod::InstallSnapshot => 3,
        RpcMethod::TimeoutNow => 4,
        RpcMethod::RequestPreVote => 5,
    }
}

/// The handles of one side's gRPC family for one method (all but
/// `*_handled_total`, whose `grpc_code` label is looked up when a call
/// ends).
#[derive(Clone)]
pub(crate) struct MethodHandles {
    pub(crate) started: Counter,
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
    pub(crate) handling: Histogram,
    handled_name: &'static str,
    method: RpcMethod,
}

impl MethodHandles {
    /// A call ended with `code` after `seconds`.
    pub(crate) fn handled(&self, code: Code, seconds: f64) {
        counter!(
            self.handled_name,
            "grpc_type" => grpc_type(self.method),
            "grpc_service" => SERVICE_NAME,
            "grpc_method" => self.method.name(),
            "grpc_code" => code.as_str()
        )
        .increment(1);
        self.handling.record(seconds);
    }
}

/// One side's gRPC family, registered for every method.
pub(crate) struct GrpcHandles {
    methods: [MethodHandles; 6],
}

impl GrpcHandles {
    fn register(names: [&'static str; 5]) -> GrpcHandles {
        let [started, handled, received, sent, handling] = names;
        let methods = RpcMethod::ALL.map(|method| {
            let labels = [
                ("grpc_type", grpc_type(method)),
                ("grpc_service", SERVICE_NAME),
                ("grpc_method", method.name()),
            ];
            MethodHandles {
                started: counter!(started, &labels),
                received: counter!(received, &labels),
                sent: counter!(sent, &labels),
                handling: histogram!(handling, &labels),
                handled_name: handled,
                method,
            }
        });
        GrpcHandles { methods }
    }

    /// The server's family.
    pub(crate) fn server() -> GrpcHandles {
        GrpcHandles::register([
            GRPC_SERVER_STARTED_TOTAL,
            GRPC_SERVER_HANDLED_TOTAL,
            GRPC_SERVER_MSG_RECEIVED_TOTAL,
            GRPC_SERVER_MSG_SENT_TOTAL,
            GRPC_SERVER_HANDLING_SECONDS,
        ])
    }

    /// The client's family.
    pub(crate) fn client() -> GrpcHandles {
        GrpcHandles::register([
            GRPC_CLIENT_STARTED_TOTAL,
            GRPC_CLIENT_HANDLED_TOTAL,
            GRPC_CLIENT_MSG_RECEIVED_TOTAL,
            GRPC_CLIENT_MSG_SENT_TOTAL,
            GRPC_CLIENT_HANDLING_SECONDS,
        ])
    }

    /// The handles of `method`.
    pub(crate) fn method(&self, method: RpcMethod) -> &MethodHandles {
        &self.methods[index(method)]
    }
}

/// Snapshot bytes sent to `peer`.
pub(crate) fn snapshot_sent(peer: &str) -> Counter {
    counter!(SNAPSHOT_SENT_BYTES_TOTAL, "peer" => peer.to_owned())
}

/// Snapshot bytes received.
pub(crate) fn snapshot_received() -> Counter {
    counter!(SNAPSHOT_RECEIVED_BYTES_TOTAL)
}

/// Appends in flight to `peer`.
pub(crate) fn pipeline_in_flight(peer: &str) -> Gauge {
    gauge!(PIPELINE_APPENDS_IN_FLIGHT, "peer" => peer.to_owned())
}

/// The connection metrics of one slot of `peer`.
pub(crate) fn client_connections(peer: &str, lanes: &'static str) -> Gauge {
    gauge!(CLIENT_CONNECTIONS, "peer" => peer.to_owned(), "lanes" => lanes)
}

/// A connection attempt to `peer` on a slot carrying `lanes` failed.
pub(crate) fn connect_failed(peer: &str, lanes: &'static str) {
    counter!(CLIENT_CONNECT_FAILURES_TOTAL, "peer" => peer.to_owned(), "lanes" => lanes)
        .increment(1);
}

/// A slot of `peer` carrying `lanes` connected again.
pub(crate) fn reconnected(peer: &str, lanes: &'static str) {
    counter!(CLIENT_RECONNECTS_TOTAL, "peer" => peer.to_owned(), "lanes" => lanes).increment(1);
}

/// Incoming connections served.
pub(crate) fn server_connections() -> Gauge {
    gauge!(SERVER_CONNECTIONS)
}

/// A heartbeat to `peer` came back after `seconds`.
pub(crate) fn heartbeat(peer: &str, seconds: f64) {
    histogram!(HEARTBEAT_SECONDS, "peer" => peer.to_owned()).record(seconds);
}
