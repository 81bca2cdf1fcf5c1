//! Shared helpers of the interop tests: finding `go`, building the Go
//! harness in `go/`, running its programs, and the canonical JSON form in
//! which both sides print what they sent and received ([`canon`]), and the
//! request suite the Go interop tests send ([`suite`]).
//!
//! The tests themselves are in `tests/`; every test name contains `interop`
//! so that `cargo test --workspace interop` selects them.
//!
//! Go is needed for the Go parts. Without `go` on `PATH` those tests print
//! that they skip and pass, unless `RAFT_GRPC_INTEROP=require` (set by
//! `.ci/run`), under which a missing `go` fails them.

pub mod canon;
pub mod suite;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};

/// The environment variable that turns a missing `go` into a failure.
pub const REQUIRE_ENV: &str = "RAFT_GRPC_INTEROP";

/// Whether `go` runs here. When it does not: panics if
/// `RAFT_GRPC_INTEROP=require`, else prints that `test` skips and returns
/// false.
pub fn go_available(test: &str) -> bool {
    let works = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("require") {
        panic!("{test}: `go` is not on PATH, and {REQUIRE_ENV}=require");
    }
    eprintln!("{test}: skipped, `go` is not on PATH (set {REQUIRE_ENV}=require to fail instead)");
    false
}

/// The Go module of the harness: `tests/interop/go`.
pub fn go_module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The linker flag of every Go program built here: protobuf-go's
/// registration conflicts ignored. `cmd/peer` links both the harness's
/// code generated from our proto (`go/raftpb`) and the Go library v0.1.0's
/// own (`--library v0.1.0`), which register the same `proto.raft.v1` names;
/// protobuf-go panics at start-up on that unless told otherwise. Each
/// package marshals with its own descriptors and nothing looks a type up
/// by name, so the conflict is harmless.
pub const GO_LDFLAGS: &str =
    "-ldflags=-X=google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore";

/// Builds `go/cmd/<name>` into `target/interop-go/<name>` (once per test
/// process, with [`GO_LDFLAGS`]) and returns the binary's path. Panics
/// with go's output when the build fails.
pub fn build_go_program(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let out = target_dir().join("interop-go").join(name);
    let output = Command::new("go")
        .arg("build")
        .arg(GO_LDFLAGS)
        .arg("-o")
        .arg(&out)
        .arg(format!("./cmd/{name}"))
        .current_dir(go_module_dir())
        .output()
        .expect("run go build");
    assert!(
        output.status.success(),
        "go build ./cmd/{name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(name.to_owned(), out.clone());
    out
}

/// A child process killed when dropped. Its stdout is read by a thread of
/// its own as it comes (so a chatty program never blocks on a full pipe)
/// and handed out line by line.
pub struct Program {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Program {
    /// Starts `command` with stdout piped (stderr is inherited).
    pub fn spawn(command: &mut Command) -> Program {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Program { child, lines }
    }

    /// The next line of stdout without its newline; None at end of output.
    pub fn line(&mut self) -> Option<String> {
        self.lines.recv().ok()
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .line()
                .unwrap_or_else(|| panic!("program ended before printing {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Waits for the program to end and returns every line it still prints
    /// and whether it exited successfully.
    pub fn finish(mut self) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        while let Some(line) = self.line() {
            lines.push(line);
        }
        let status = self.child.wait().expect("wait for the program");
        (lines, status.success())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- Helpers of the cluster-through-relay test (tests/cluster_interop.rs),
// usable by any test that runs workspace examples or whole programs. They
// name std items in full so that they stand alone.

/// Builds example `example` of workspace package `package` with the cargo
/// and the profile that built the running test, and returns the binary's
/// path. `cargo test --test <name>` does not build examples, so a test that
/// runs one builds it itself (a no-op when up to date; cargo holds no build
/// lock while tests run). Panics with cargo's output when the build fails.
pub fn build_example(package: &str, example: &str) -> std::path::PathBuf {
    // The test runs from target/<profile>/deps/<test>-<hash>; cargo puts
    // examples in target/<profile>/examples.
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let output = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--example", example])
        .args(["--profile", profile])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cargo build --example");
    assert!(
        output.status.success(),
        "cargo build -p {package} --example {example} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = profile_dir
        .join("examples")
        .join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "example {example} is not at {} after its build",
        binary.display()
    );
    binary
}

/// `n` distinct loopback addresses with ports that were free a moment ago:
/// all are bound at once (so they differ), then released for the caller's
/// programs to listen on.
pub fn free_loopback_addrs(n: usize) -> Vec<std::net::SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound listener's address"))
        .collect()
}

/// How a program run by [`run_with_deadline`] ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status; None when it was killed at the deadline.
    pub status: Option<std::process::ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// From spawn to exit (or kill).
    pub elapsed: std::time::Duration,
}

impl Finished {
    /// Whether it exited on its own with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` to its end with stdout and stderr captured, killing it
/// if it is still running after `deadline`.
pub fn run_with_deadline(
    command: &mut std::process::Command,
    deadline: std::time::Duration,
) -> Finished {
    use std::io::Read;
    fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let start = std::time::Instant::now();
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break Some(status);
        }
        if start.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
    }
}
