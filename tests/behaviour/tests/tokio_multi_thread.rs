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

include!("../suite.rs");

/// TLS and mutual TLS (see `tls.rs`).
mod tls {
    use super::*;
    include!("../tls.rs");
}
