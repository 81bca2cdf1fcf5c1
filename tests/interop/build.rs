//! Generates the tonic client and server of `proto/raft/v1/raft.proto` for
//! `tests/tonic_interop.rs`, from the same `.proto` file the core's wire
//! types come from, but with tonic's own code generator: protox (a
//! pure-Rust protobuf compiler, so no `protoc` is needed) builds the
//! FileDescriptorSet, and tonic-prost-build turns it into prost messages
//! (`Vec<u8>` payloads, independent of the core's types) plus the
//! `RaftTransportService` server trait and client. The tests include the
//! result with `tonic::include_proto!("proto.raft.v1")`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = root.join("raft/v1/raft.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile(["raft/v1/raft.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
