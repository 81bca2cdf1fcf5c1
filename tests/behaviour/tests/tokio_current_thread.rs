//! The behaviour suite on a current-thread tokio runtime.

type Rt = raft_grpc_transport_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

include!("../suite.rs");

/// TLS and mutual TLS (see `tls.rs`).
mod tls {
    use super::*;
    include!("../tls.rs");
}
