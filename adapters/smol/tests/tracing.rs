//! The `tracing` feature: spans and events captured by a test subscriber
//! while a client and a server on this backend run every kind of call, a
//! snapshot, a pipeline, a heartbeat and a call to a port that refuses.
//! Runs only with the feature: `cargo test -p raft-grpc-transport-smol
//! --features tracing --test tracing`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_lite::future::block_on;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as it closed: its name, level and fields.
#[derive(Debug, Clone)]
struct ClosedSpan {
    name: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

/// An event: its target, level, fields (`message` among them) and the
/// name of the span it happened in.
#[derive(Debug, Clone)]
struct SeenEvent {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
    span: Option<String>,
}

#[derive(Default)]
struct Seen {
    open: BTreeMap<u64, ClosedSpan>,
    closed: Vec<ClosedSpan>,
    events: Vec<SeenEvent>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Records every span and event, whatever its level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ClosedSpan {
            name: attrs.metadata().name().to_owned(),
            level: *attrs.metadata().level(),
            fields,
        };
        self.0.lock().unwrap().open.insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.0.lock().unwrap().open.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        self.0.lock().unwrap().events.push(SeenEvent {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        if let Some(span) = seen.open.remove(&id.into_u64()) {
            seen.closed.push(span);
        }
    }
}

impl Capture {
    fn spans(&self, name: &str, method: &str) -> Vec<ClosedSpan> {
        self.0
            .lock()
            .unwrap()
            .closed
            .iter()
            .filter(|s| s.name == name && s.fields.get("method").is_none_or(|m| m == method))
            .cloned()
            .collect()
    }

    fn events(&self, message: &str) -> Vec<SeenEvent> {
        self.0
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| e.fields.get("message").is_some_and(|m| m == message))
            .cloned()
            .collect()
    }
}

fn served() -> GrpcTransport {
    let server = block_on(GrpcTransport::bind("127.0.0.1:0", Config::default())).unwrap();
    let consumer = server.consumer();
    let header = RpcHeader::new(3, "server", server.local_addr().to_owned());
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    })
    .detach();
    server
}

/// Waits (up to 2 s) for `check` to hold.
fn eventually(check: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(2) {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    check()
}

#[test]
fn calls_connections_snapshots_and_pipelines_are_traced() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .unwrap();
    let server = served();
    let target = server.local_addr().to_owned();
    let client = GrpcTransport::builder("client", Config::default()).build();
    block_on(async {
        let vote = RequestVoteRequest {
            term: 7,
            ..Default::default()
        };
        client.request_vote(&target, vote).await.unwrap();
        let heartbeat = AppendEntriesRequest {
            term: 7,
            header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
            ..Default::default()
        };
        client.append_entries(&target, heartbeat).await.unwrap();
        let meta = InstallSnapshotRequest {
            term: 7,
            size: 3 << 20,
            ..Default::default()
        };
        let data = futures_lite::io::Cursor::new(vec![7u8; 3 << 20]);
        client.install_snapshot(&target, meta, data).await.unwrap();
        let pipeline = client.append_entries_pipeline(&target).await.unwrap();
        for index in 1..=3 {
            let request = AppendEntriesRequest {
                term: 7,
                prev_log_entry: index - 1,
                entries: vec![Log::command(index, 7, Bytes::from_static(b"x"))],
                ..Default::default()
            };
            pipeline.append(&request).await.unwrap();
        }
        for _ in 0..3 {
            pipeline.next().await.unwrap().1.unwrap();
        }
        drop(pipeline);
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let vote = RequestVoteRequest::default();
        assert!(client.request_vote(&refused, vote).await.is_err());
    });

    // Outgoing calls: a span each, with the code and the duration.
    let votes = capture.spans("raft_grpc.call", "RequestVote");
    let [vote, failed] = &votes[..] else {
        panic!("{votes:?}")
    };
    assert_eq!(vote.level, Level::INFO);
    assert_eq!(vote.fields["peer"], target);
    assert_eq!(vote.fields.get("code").map(String::as_str), Some("OK"));
    assert!(vote.fields["duration_us"].parse::<u64>().is_ok());
    assert_ne!(failed.fields["peer"], target);
    assert_eq!(
        failed.fields.get("code").map(String::as_str),
        Some("UNAVAILABLE"),
        "the refused call's span says why"
    );
    let [heartbeat] = &capture.spans("raft_grpc.call", "AppendEntries")[..] else {
        panic!()
    };
    assert_eq!(heartbeat.level, Level::TRACE, "heartbeats at trace level");
    assert_eq!(
        heartbeat.fields.get("heartbeat").map(String::as_str),
        Some("true")
    );

    // The snapshot: its span, and progress at debug level (the last one at
    // the end of the data).
    let [snapshot] = &capture.spans("raft_grpc.snapshot", "InstallSnapshot")[..] else {
        panic!()
    };
    assert_eq!(snapshot.fields.get("code").map(String::as_str), Some("OK"));
    let progress = capture.events("snapshot progress");
    assert!(
        progress.iter().any(|e| e.level == Level::DEBUG
            && e.fields.get("sent") == Some(&(3u64 << 20).to_string())
            && e.span.as_deref() == Some("raft_grpc.snapshot")),
        "{progress:?}"
    );

    // The pipeline: its appends, closed by its caller.
    let [pipeline] = &capture.spans("raft_grpc.pipeline", "")[..] else {
        panic!()
    };
    assert_eq!(
        pipeline.fields.get("appends").map(String::as_str),
        Some("3")
    );
    assert_eq!(capture.events("pipeline closed").len(), 1);

    // Incoming calls on the server: delivered to answered (the server's
    // spans close when the answer is given, maybe after the client saw it).
    assert!(eventually(|| capture
        .spans("raft_grpc.incoming", "InstallSnapshot")
        .len()
        == 1));
    let [incoming_vote] = &capture.spans("raft_grpc.incoming", "RequestVote")[..] else {
        panic!()
    };
    assert_eq!(
        incoming_vote.fields.get("code").map(String::as_str),
        Some("OK")
    );
    assert!(incoming_vote.fields["peer"].starts_with("127.0.0.1:"));
    let appends = capture.spans("raft_grpc.incoming", "AppendEntries");
    assert_eq!(appends.len(), 4, "the heartbeat and the three appends");
    let levels: Vec<(Level, Option<&str>)> = appends
        .iter()
        .map(|s| (s.level, s.fields.get("pipelined").map(String::as_str)))
        .collect();
    assert_eq!(
        levels
            .iter()
            .filter(|l| **l == (Level::DEBUG, Some("true")))
            .count(),
        3,
        "pipelined appends at debug: {levels:?}"
    );

    // Connections: connected, then the refused connect at warn level.
    assert!(!capture.events("connected").is_empty());
    let refused = capture.events("connect failed; backing off");
    assert!(
        refused.len() == 1
            && refused[0].level == Level::WARN
            && refused[0].target == "raft_grpc::connection",
        "{refused:?}"
    );
    assert!(!capture.events("accepted").is_empty());

    // Bytes that are not HTTP/2: the server's handshake fails, at warn.
    {
        use std::io::Write;
        let mut garbage = std::net::TcpStream::connect(&target).unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(eventually(|| !capture
            .events("incoming handshake failed")
            .is_empty()));
        let failed = &capture.events("incoming handshake failed")[0];
        assert_eq!(failed.level, Level::WARN);
        assert!(failed.fields["detail"].contains("HTTP/2"), "{failed:?}");
    }

    // The server closes (GOAWAY on connections without streams, which h2
    // reports as their end): the client's connections to it end.
    block_on(server.close());
    assert!(eventually(|| {
        let ended = [
            capture.events("connection closed"),
            capture.events("connection lost"),
        ];
        ended
            .iter()
            .flatten()
            .any(|e| e.fields.get("peer") == Some(&target))
    }));
    block_on(client.close());
}
