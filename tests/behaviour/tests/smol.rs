//! The behaviour suite on smol and async-io.

type Rt = raft_grpc_transport_smol::SmolRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

include!("../suite.rs");

/// TLS and mutual TLS (see `tls.rs`).
mod tls {
    use super::*;
    include!("../tls.rs");
}
