//! Generates the `tonic` system's client and server from
//! `proto/raft/v1/raft.proto`: protox (a pure-Rust protobuf compiler, so no
//! `protoc` is needed) builds the descriptors and tonic-prost-build turns
//! them into prost messages (with `bytes::Bytes` payloads, as our core uses)
//! and the `RaftTransportService` server trait and client. `src/tonic_sys.rs`
//! includes the result.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = root.join("raft/v1/raft.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile(["raft/v1/raft.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
