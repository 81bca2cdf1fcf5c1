//! Builds the Go program (`go/`: the `go-grpc` and `go-net` systems) with
//! `go build` into the target directory, next to this binary.
//!
//! Without a `go` command the Go rows are skipped with a note, unless
//! `RAFT_GRPC_BENCH_REQUIRE_GO=1`, which makes that (or a failed build) an
//! error. The build needs the modules in `go/go.sum`: from the module cache,
//! or downloaded through the Go module proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Where the Go program's source is.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Whether a missing Go toolchain is an error.
pub fn required() -> bool {
    std::env::var("RAFT_GRPC_BENCH_REQUIRE_GO").is_ok_and(|v| v == "1")
}

/// Builds the Go program as `<dir of this executable>/raft-grpc-bench-go`.
/// `Ok(None)` with the reason when Go is missing or the build failed and Go
/// is not required.
pub fn build(rust_exe: &Path) -> Result<Result<PathBuf, String>, String> {
    let output = rust_exe.with_file_name("raft-grpc-bench-go");
    let version = Command::new("go")
        .arg("version")
        .stderr(Stdio::null())
        .output();
    let skip = |reason: String| {
        if required() {
            Err(format!("{reason} (RAFT_GRPC_BENCH_REQUIRE_GO=1)"))
        } else {
            Ok(Err(reason))
        }
    };
    match version {
        Ok(v) if v.status.success() => {
            eprintln!(
                "building the Go program with {}",
                String::from_utf8_lossy(&v.stdout).trim()
            );
        }
        _ => return skip("no `go` command: go-grpc and go-net rows skipped".to_owned()),
    }
    let start = Instant::now();
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&output)
        .arg(".")
        .current_dir(source_dir())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
    match status {
        Ok(s) if s.success() => {
            eprintln!(
                "built {} in {:.1} s",
                output.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(Ok(output))
        }
        other => skip(format!(
            "`go build` in {} failed ({other:?}): go-grpc and go-net rows skipped",
            source_dir().display()
        )),
    }
}
