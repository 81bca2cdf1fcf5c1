//! The behaviour suite on the blocking runtime (a thread per task, std
//! sockets, no executor).

type Rt = raft_grpc_transport_blocking::BlockingRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    raft_grpc_transport_blocking::block_on(future)
}

/// Serving transports listen on a port of their own.
async fn bind_server(
    addr: &str,
    config: raft_grpc_transport_driver::Config,
) -> std::io::Result<raft_grpc_transport_driver::GrpcTransport<Rt>> {
    raft_grpc_transport_driver::GrpcTransport::bind(addr, config).await
}

include!("../suite.rs");

/// TLS and mutual TLS (see `tls.rs`).
mod tls {
    use super::*;
    include!("../tls.rs");
}
