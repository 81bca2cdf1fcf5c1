//! Shared helpers of the interop tests: finding `go`, building the Go
//! harness in `go/`, and running its programs.
//!
//! The tests themselves are in `tests/`; every test name contains `interop`
//! so that `cargo test --workspace interop` selects them.

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
