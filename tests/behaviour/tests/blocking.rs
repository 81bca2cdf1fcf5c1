//! The behaviour suite on the blocking runtime (a thread per task, std
//! sockets, no executor).

type Rt = raft_grpc_transport_blocking::BlockingRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    raft_grpc_transport_blocking::block_on(future)
}

include!("../suite.rs");

/// TLS and mutual TLS (see `tls.rs`).
mod tls {
    use super::*;
    include!("../tls.rs");
}
