//! The Rust types in `src/wire/proto.raft.v1.rs` and `src/wire/raft.v0_1.rs`
//! are generated from `proto/raft/v1/raft.proto` and
//! `proto/raft/v0_1/raft.proto` by protox (a pure-Rust protobuf compiler)
//! and prost-build, and checked in so that users' builds need neither
//! `protoc` nor protox. This test regenerates them and fails when a
//! checked-in file differs. Run it with `UPDATE_GENERATED=1` to rewrite the
//! files.

use std::path::Path;

/// Generates `file` with prost-build (every `bytes` field a `Bytes`, the
/// `extern_paths` mapped to existing Rust types) and compares the output
/// `generated` with `src/wire/<checked_in>`.
fn check(file: &str, extern_paths: &[(&str, &str)], generated: &str, checked_in: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("generated_wire")
        .join(checked_in);
    std::fs::create_dir_all(&out).unwrap();

    let descriptors =
        protox::compile([file], [root.join("proto")]).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    for (proto, rust) in extern_paths {
        config.extern_path(*proto, *rust);
    }
    config.out_dir(&out);
    config
        .compile_fds(descriptors)
        .expect("prost-build generates code");

    let fresh = std::fs::read_to_string(out.join(generated)).unwrap();
    let checked_in_path = root.join("src/wire").join(checked_in);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
        return;
    }
    let checked_in_text = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in_text == fresh,
        "src/wire/{checked_in} is stale: run `UPDATE_GENERATED=1 cargo test --test generated_code`"
    );
}

#[test]
fn checked_in_wire_types_match_the_proto() {
    check(
        "raft/v1/raft.proto",
        &[],
        "proto.raft.v1.rs",
        "proto.raft.v1.rs",
    );
}

#[test]
fn checked_in_v0_1_wire_types_match_the_proto() {
    // The v0.1 requests use the v1 header and log entry: the generated code
    // refers to crate::wire's types for them.
    check(
        "raft/v0_1/raft.proto",
        &[(".proto.raft.v1", "crate::wire")],
        "raft.v0_1.rs",
        "raft.v0_1.rs",
    );
}
