//! The `node` example as a command-line tool: `node serve` in a child
//! process, `node call` against it for every RPC kind, and against a closed
//! port.
//!
//! `cargo test` builds examples before it runs tests only when no target is
//! selected: `cargo test --test node_cli` does not. So the test builds the
//! example itself, once, with the cargo that runs it (a no-op when it is
//! up to date; cargo does not hold its build lock while tests run), and so
//! never runs a stale binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

mod common;

/// The `node` example, built once for this test binary.
fn node_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::build_example("node"))
}

/// Kills the server when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `node serve` on a free port; returns it and its address.
fn serve(node: &Path, id: &str) -> (KillOnDrop, String) {
    let child = Command::new(node)
        .args(["serve", "--listen", "127.0.0.1:0", "--id", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start `node serve`");
    let mut server = KillOnDrop(child);
    let stdout = server.0.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read `node serve`'s first line");
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("`node serve` printed {line:?}, not `listening on ADDR`"))
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "port 0 not resolved: {addr}"
    );
    (server, addr)
}

/// Runs `node call --target TARGET ARGS…`.
fn call(node: &Path, target: &str, args: &[&str]) -> Output {
    Command::new(node)
        .args(["call", "--target", target])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run `node call`")
}

/// The lines of a successful call's stdout.
fn lines(output: &Output, args: &[&str]) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`node call {}` failed ({}): stdout {stdout} stderr {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Asserts that `line` is one JSON object holding every one of `fields`.
fn assert_fields(line: &str, fields: &[&str]) {
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "not a JSON object: {line}"
    );
    for field in fields {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[test]
fn serve_and_call_every_rpc() {
    let node = node_binary();
    let (server, addr) = serve(node, "srv");
    let header = format!(r#""header":{{"protocol_version":3,"id":"srv","addr":"{addr}"}}"#);

    let args = ["--rpc", "append-entries", "--entries", "3", "--term", "5"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_fields(
        &out[0],
        &[
            &header,
            r#""term":5,"#,
            r#""last_log":3,"#,
            r#""success":true"#,
            r#""no_retry_backoff":false"#,
        ],
    );

    let args = ["--rpc", "append-entries", "--count", "2"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 2, "{out:?}");
    for line in &out {
        assert_fields(line, &[r#""term":1,"#, r#""last_log":1,"#]);
    }

    let args = ["--rpc", "pipeline", "--count", "50"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 50, "{out:?}");
    for (k, line) in (1..).zip(&out) {
        assert_fields(
            line,
            &[&header, &format!(r#""last_log":{k},"#), r#""success":true"#],
        );
    }

    let args = ["--rpc", "install-snapshot", "--snapshot-size", "5000000"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_fields(&out[0], &[&header, r#""term":1,"#, r#""success":true"#]);

    let args = ["--rpc", "request-vote", "--term", "7"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_fields(
        &out[0],
        &[
            &header,
            r#""term":7,"#,
            r#""peers":"""#,
            r#""granted":true"#,
        ],
    );

    let args = ["--rpc", "request-pre-vote", "--term", "8"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_fields(&out[0], &[&header, r#""term":8,"#, r#""granted":true"#]);

    let args = ["--rpc", "timeout-now"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out, [format!("{{{header}}}")]);

    drop(server);
}

#[test]
fn a_closed_port_is_unavailable() {
    let node = node_binary();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("its address").port()
    };
    let target = format!("127.0.0.1:{port}");
    let output = call(node, &target, &["--rpc", "request-vote"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}");
    let line = stdout.trim_end();
    assert!(
        line.starts_with(r#"{"error":{"code":"UNAVAILABLE","message":""#) && line.ends_with("\"}}"),
        "{line}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let node = node_binary();
    for args in [
        &[][..],
        &["frobnicate"],
        &["serve"],
        &["serve", "--listen"],
        &["call", "--target", "127.0.0.1:1"],
        &["call", "--target", "127.0.0.1:1", "--rpc", "nope"],
        &[
            "call",
            "--target",
            "127.0.0.1:1",
            "--rpc",
            "pipeline",
            "--bogus",
            "1",
        ],
        &[
            "call",
            "--target",
            "127.0.0.1:1",
            "--rpc",
            "pipeline",
            "--count",
            "-1",
        ],
    ] {
        let output = Command::new(node)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run `node`");
        assert_eq!(output.status.code(), Some(2), "node {}", args.join(" "));
        assert!(output.stdout.is_empty(), "node {}", args.join(" "));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("usage:"),
            "node {}",
            args.join(" ")
        );
    }
}
