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
    serve_with(node, id, &[])
}

/// Starts `node serve … EXTRA…` on a free port.
fn serve_with(node: &Path, id: &str, extra: &[&str]) -> (KillOnDrop, String) {
    let child = Command::new(node)
        .args(["serve", "--listen", "127.0.0.1:0", "--id", id])
        .args(extra)
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
    let output = call(node, &addr, &args);
    // Off a terminal, no progress line: stderr stays empty.
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = lines(&output, &args);
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
fn serve_and_call_in_the_v0_1_wire_profile() {
    let node = node_binary();
    let (server, addr) = serve_with(node, "old", &["--wire-profile", "v0.1"]);
    let header = format!(r#""header":{{"protocol_version":3,"id":"old","addr":"{addr}"}}"#);
    let v0_1 = ["--wire-profile", "v0.1"];

    // Requests in v0.1 numbering are read right: last_log is the last
    // entry's index, which a mismatched numbering would get wrong.
    let args = [
        &v0_1[..],
        &["--rpc", "append-entries", "--entries", "3", "--term", "5"],
    ]
    .concat();
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_fields(
        &out[0],
        &[
            &header,
            r#""term":5,"#,
            r#""last_log":3,"#,
            r#""success":true"#,
        ],
    );

    let args = [&v0_1[..], &["--rpc", "pipeline", "--count", "20"]].concat();
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 20, "{out:?}");
    assert_fields(&out[19], &[r#""last_log":20,"#, r#""success":true"#]);

    let args = [
        &v0_1[..],
        &["--rpc", "install-snapshot", "--snapshot-size", "3000000"],
    ]
    .concat();
    let out = lines(&call(node, &addr, &args), &args);
    assert_fields(&out[0], &[&header, r#""success":true"#]);

    let args = [&v0_1[..], &["--rpc", "request-vote", "--term", "7"]].concat();
    let out = lines(&call(node, &addr, &args), &args);
    assert_fields(&out[0], &[&header, r#""term":7,"#, r#""granted":true"#]);

    // v0.1 has no pre-vote: the call fails without being sent.
    let args = [&v0_1[..], &["--rpc", "request-pre-vote"]].concat();
    let output = call(node, &addr, &args);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(r#"{"error":{"code":"UNIMPLEMENTED","message":"pre-vote not supported"#),
        "{stdout}"
    );

    // A client in the default profile is not understood: its entries land
    // in the wrong fields and the server answers INTERNAL.
    let args = ["--rpc", "append-entries", "--entries", "3"];
    let output = call(node, &addr, &args);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(r#"{"error":{"code":"INTERNAL""#),
        "{stdout}"
    );

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

    // With `--stats`, the client's view of the peer follows: its slots
    // backing off, the failure counted with its error.
    let output = call(node, &target, &["--rpc", "request-vote", "--stats"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_fields(
        lines[1],
        &[
            &format!(r#"{{"stats":{{"peer":"{target}","slots":["failed, backing off","#),
            r#""connect_failures":1,"last_error":"UNAVAILABLE: connecting to "#,
            r#""bytes_sent":0,"bytes_received":0}}"#,
        ],
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
        &["serve", "--listen", "127.0.0.1:0", "--wire-profile", "v9"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "nowhere",
        ],
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

/// GETs `http://ADDR/metrics` (HTTP/1.1, one request per connection).
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn serve_exports_prometheus_metrics() {
    let node = node_binary();
    let metrics = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("its address").to_string()
    };
    let child = Command::new(node)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &metrics,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start `node serve`");
    let mut server = KillOnDrop(child);
    let mut stdout = BufReader::new(server.0.stdout.take().expect("piped stdout"));
    let (mut first, mut second) = (String::new(), String::new());
    stdout.read_line(&mut first).unwrap();
    stdout.read_line(&mut second).unwrap();
    let addr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    assert_eq!(
        second.trim_end(),
        format!("metrics on http://{metrics}/metrics")
    );

    let args = ["--rpc", "request-vote", "--stats"];
    let out = lines(&call(node, &addr, &args), &args);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_fields(
        &out[1],
        &[
            &format!(
                r#"{{"stats":{{"peer":"{addr}","slots":["ready, 0 streams open","idle","idle"],"#
            ),
            r#""connect_failures":0,"calls_in_flight":0,"pipelines":0,"appends_in_flight":0,"#,
        ],
    );
    assert!(!out[1].contains(r#""bytes_sent":0,"#), "{}", out[1]);
    for args in [
        &["--rpc", "request-vote"][..],
        &["--rpc", "pipeline", "--count", "3"],
        &["--rpc", "install-snapshot", "--snapshot-size", "100000"],
    ] {
        lines(&call(node, &addr, args), args);
    }
    let service = r#"grpc_service="proto.raft.v1.RaftTransportService""#;
    let expected = [
        format!(
            r#"grpc_server_handled_total{{grpc_type="unary",{service},grpc_method="RequestVote",grpc_code="OK"}} 2"#
        ),
        format!(
            r#"grpc_server_msg_received_total{{grpc_type="bidi_stream",{service},grpc_method="AppendEntriesPipeline"}} 3"#
        ),
        format!(
            r#"grpc_server_handled_total{{grpc_type="client_stream",{service},grpc_method="InstallSnapshot",grpc_code="OK"}} 1"#
        ),
        "raft_grpc_snapshot_received_bytes_total 100000".to_owned(),
        format!(
            r#"grpc_server_handling_seconds_count{{grpc_type="unary",{service},grpc_method="RequestVote"}} 2"#
        ),
    ];
    // The server records a call as its answer goes out: by the time the
    // client has it, or just after.
    let start = std::time::Instant::now();
    let text = loop {
        let text = scrape(&metrics);
        let missing = expected.iter().any(|line| !text.lines().any(|l| l == line));
        if !missing || start.elapsed() > std::time::Duration::from_secs(5) {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for line in &expected {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert!(
        text.contains(r#"grpc_server_handling_seconds_bucket{grpc_type="unary","#),
        "histograms are exported with buckets"
    );
}

/// PEM files for mutual TLS in a temporary directory: a CA, a server
/// certificate for 127.0.0.1 and a client certificate, both signed by it.
struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    fn new(name: &str) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("node-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (leaf, names) in [
            ("server", vec!["127.0.0.1".to_owned()]),
            ("client", vec!["client".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.join(format!("{leaf}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{leaf}.key")), key.serialize_pem()).unwrap();
        }
        TlsFiles { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn serve_and_call_over_mutual_tls() {
    let node = node_binary();
    let tls = TlsFiles::new("mtls");
    let (ca, cert, key) = (
        tls.path("ca.pem"),
        tls.path("server.pem"),
        tls.path("server.key"),
    );
    let (_server, addr) = serve_with(
        node,
        "tls",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
        ],
    );
    let (client_cert, client_key) = (tls.path("client.pem"), tls.path("client.key"));

    // Every RPC kind over mutual TLS.
    for rpc in [
        "append-entries",
        "request-vote",
        "request-pre-vote",
        "timeout-now",
        "install-snapshot",
        "pipeline",
    ] {
        let args = [
            "--rpc",
            rpc,
            "--count",
            "2",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &client_cert,
            "--tls-key",
            &client_key,
        ];
        let out = lines(&call(node, &addr, &args), &args);
        assert_eq!(out.len(), 2, "{rpc}: {out:?}");
        let header = format!(r#""header":{{"protocol_version":3,"id":"tls","addr":"{addr}"}}"#);
        for line in &out {
            assert_fields(line, &[&header]);
        }
    }

    // Without a client certificate, or trusting another CA: UNAVAILABLE,
    // the TLS error in the message, exit code 1.
    let other = TlsFiles::new("other");
    let other_ca = other.path("ca.pem");
    for (args, expected) in [
        (
            vec!["--rpc", "request-vote", "--tls-ca", &ca],
            "CertificateRequired",
        ),
        (
            vec![
                "--rpc",
                "request-vote",
                "--tls-ca",
                &other_ca,
                "--tls-cert",
                &client_cert,
                "--tls-key",
                &client_key,
            ],
            "invalid peer certificate",
        ),
        (vec!["--rpc", "request-vote"], "UNAVAILABLE"),
    ] {
        let output = call(node, &addr, &args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stdout}");
        assert_fields(stdout.trim_end(), &[r#""code":"UNAVAILABLE""#, expected]);
    }

    // TLS options that do not go together are usage errors.
    for args in [
        vec![
            "--rpc",
            "request-vote",
            "--tls-cert",
            &client_cert,
            "--tls-key",
            &client_key,
        ],
        vec![
            "--rpc",
            "request-vote",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &client_cert,
        ],
    ] {
        assert_eq!(call(node, &addr, &args).status.code(), Some(2), "{args:?}");
    }
    let serve_usage = Command::new(node)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-client-ca", &ca])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(serve_usage.status.code(), Some(2));
    // A missing file is a failure, not a usage error.
    let missing = call(
        node,
        &addr,
        &["--rpc", "request-vote", "--tls-ca", "/nonexistent/ca.pem"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read --tls-ca"));
}

/// On a terminal, `install-snapshot` draws its progress on stderr. The
/// terminal is a pseudo-terminal from util-linux's `script`; without it the
/// test says so and checks nothing.
#[test]
fn install_snapshot_shows_progress_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to make a pseudo-terminal");
        return;
    }
    let node = node_binary();
    let (server, addr) = serve(node, "srv");
    // stderr to the terminal, stdout (the JSON line) away.
    let command = format!(
        "{} call --target {addr} --rpc install-snapshot --snapshot-size 800000000 2>&1 >/dev/null",
        node.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run `script`");
    assert!(output.status.success(), "{output:?}");
    let shown = String::from_utf8_lossy(&output.stdout);
    let line = shown
        .split('\r')
        .find(|l| l.starts_with('[') && l.contains(" MiB / 762.9 MiB "))
        .unwrap_or_else(|| panic!("no progress line in {shown:?}"));
    assert!(
        line.contains(" MiB/s ") && line.ends_with(" left"),
        "{line:?}"
    );
    drop(server);
}
