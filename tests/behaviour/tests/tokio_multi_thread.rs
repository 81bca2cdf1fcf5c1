//! The behaviour suite on a multi-thread tokio runtime (two workers).

type Rt = raft_grpc_transport_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
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
