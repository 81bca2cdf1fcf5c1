//! What the tests that run an example as a process share: building it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Builds example `name` of this package for the profile the running test
/// was built with, and returns the binary's path.
///
/// `cargo test` builds examples before it runs tests only when no target is
/// selected: `cargo test --test relay` does not. So a test builds the
/// example itself, with the cargo that runs it (a no-op when it is up to
/// date; cargo does not hold its build lock while tests run), and so never
/// runs a stale binary. The test runs from `target/<profile>/deps`, and
/// cargo puts examples in `target/<profile>/examples`.
pub fn build_example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", env!("CARGO_PKG_NAME")])
        .args(["--example", name, "--profile", profile])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run cargo to build the `{name}` example: {e}"));
    assert!(
        build.status.success(),
        "building the `{name}` example failed ({}):\n{}",
        build.status,
        String::from_utf8_lossy(&build.stderr)
    );
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the `{name}` example is not at {} after its build",
        binary.display()
    );
    binary
}
