//! The Rust types in `src/wire/proto.raft.v1.rs` are generated from
//! `proto/raft/v1/raft.proto` by protox (a pure-Rust protobuf compiler) and
//! prost-build, and checked in so that users' builds need neither `protoc`
//! nor protox. This test regenerates them and fails when the checked-in file
//! differs. Run it with `UPDATE_GENERATED=1` to rewrite the file.

use std::path::Path;

#[test]
fn checked_in_wire_types_match_the_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated_wire");
    std::fs::create_dir_all(&out).unwrap();

    let descriptors = protox::compile(["raft/v1/raft.proto"], [root.join("proto")])
        .expect("proto/raft/v1/raft.proto compiles");
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.out_dir(&out);
    config
        .compile_fds(descriptors)
        .expect("prost-build generates code");

    let fresh = std::fs::read_to_string(out.join("proto.raft.v1.rs")).unwrap();
    let checked_in_path = root.join("src/wire/proto.raft.v1.rs");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "src/wire/proto.raft.v1.rs is stale: run `UPDATE_GENERATED=1 cargo test --test generated_code`"
    );
}
