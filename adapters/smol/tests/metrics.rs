//! The `metrics` feature (on in this package's tests through its
//! dev-dependencies): a recorder that keeps every value sees the gRPC
//! families and the transport's own metrics after a known sequence of
//! calls — successes, an application error, a refusal by the authorizer, a
//! call to a port that refuses, a snapshot, a pipeline, a heartbeat — with
//! the counts and codes that sequence must give.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use raft_grpc_transport::head::RpcMethod;
use raft_grpc_transport::message::*;
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_driver::metrics::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

/// Every value recorded so far, by name and sorted labels. The recorder's
/// snapshots drain what they report (counters and gauges back to 0,
/// histograms emptied): counters and gauges are summed over them,
/// histogram samples gathered.
#[derive(Default)]
struct Values {
    counters: BTreeMap<MetricId, u64>,
    gauges: BTreeMap<MetricId, f64>,
    histograms: BTreeMap<MetricId, Vec<f64>>,
}

/// A metric's name and its labels, sorted.
type MetricId = (String, Vec<(String, String)>);

impl Values {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let id = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *self.counters.entry(id).or_default() += n,
                DebugValue::Gauge(g) => *self.gauges.entry(id).or_default() += g.into_inner(),
                DebugValue::Histogram(samples) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(samples.into_iter().map(|s| s.into_inner())),
            }
        }
    }

    /// The counter `name` with exactly these labels (0 if never recorded).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters.get(&id(name, labels)).copied().unwrap_or(0)
    }

    /// The sum of counter `name` over every label set that includes these.
    fn counter_sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter(|((n, l), _)| n == name && includes(l, labels))
            .map(|(_, v)| v)
            .sum()
    }

    fn gauge_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.gauges
            .iter()
            .filter(|((n, l), _)| n == name && includes(l, labels))
            .map(|(_, v)| v)
            .sum()
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .get(&id(name, labels))
            .cloned()
            .unwrap_or_default()
    }
}

fn id(name: &str, labels: &[(&str, &str)]) -> MetricId {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn includes(have: &[(String, String)], want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
}

/// The gRPC labels of a call of `method` (without its code).
fn grpc(method: RpcMethod) -> Vec<(&'static str, &'static str)> {
    vec![
        ("grpc_type", raft_grpc_transport::record::grpc_type(method)),
        ("grpc_service", "proto.raft.v1.RaftTransportService"),
        ("grpc_method", method.name()),
    ]
}

fn with_code(method: RpcMethod, code: Code) -> Vec<(&'static str, &'static str)> {
    let mut labels = grpc(method);
    labels.push(("grpc_code", code.as_str()));
    labels
}

/// A server whose consumer answers as `node serve` does, but fails a vote
/// for term 13 with FAILED_PRECONDITION; its authorizer refuses TimeoutNow.
fn served() -> GrpcTransport {
    let server = block_on(GrpcTransport::bind("127.0.0.1:0", Config::default())).unwrap();
    server.set_authorizer(Some(std::sync::Arc::new(
        |request: &raft_grpc_transport_smol::AuthorizationRequest<'_>| match request.method {
            RpcMethod::TimeoutNow => Err(Status::new(Code::PermissionDenied, "no transfers")),
            _ => Ok(()),
        },
    )));
    let consumer = server.consumer();
    let header = RpcHeader::new(3, "server", server.local_addr().to_owned());
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            if matches!(&rpc.request, RaftRequest::RequestVote(v) if v.term == 13) {
                rpc.respond(Err(Status::new(Code::FailedPrecondition, "unlucky")));
                continue;
            }
            raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
        }
    })
    .detach();
    server
}

/// Waits (up to 5 s) for `check` to hold on fresh values.
fn eventually(
    values: &mut Values,
    snapshotter: &Snapshotter,
    check: impl Fn(&Values) -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        values.take(snapshotter);
        if check(values) {
            return true;
        }
        if start.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_known_sequence_of_calls_gives_known_counts_and_codes() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Before any transport is built: their handles register with it.
    recorder.install().unwrap();
    let mut values = Values::default();

    let server = served();
    let target = server.local_addr().to_owned();
    let client = GrpcTransport::builder("client", Config::default()).build();
    let snapshot_size = 3u64 << 20;
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    block_on(async {
        for term in [1, 2] {
            let vote = RequestVoteRequest {
                term,
                ..Default::default()
            };
            client.request_vote(&target, vote).await.unwrap();
        }
        let unlucky = RequestVoteRequest {
            term: 13,
            ..Default::default()
        };
        let error = client.request_vote(&target, unlucky).await.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        let error = client
            .timeout_now(&target, TimeoutNowRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
        let heartbeat = AppendEntriesRequest {
            term: 7,
            header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
            ..Default::default()
        };
        client.append_entries(&target, heartbeat).await.unwrap();
        let meta = InstallSnapshotRequest {
            term: 7,
            size: snapshot_size,
            ..Default::default()
        };
        let data = futures_lite::io::Cursor::new(vec![7u8; snapshot_size as usize]);
        client.install_snapshot(&target, meta, data).await.unwrap();
        let pipeline = client.append_entries_pipeline(&target).await.unwrap();
        for index in 1..=5 {
            let request = AppendEntriesRequest {
                term: 7,
                prev_log_entry: index - 1,
                entries: vec![Log::command(index, 7, Bytes::from_static(b"x"))],
                ..Default::default()
            };
            pipeline.append(&request).await.unwrap();
        }
        // Three taken, two left in flight.
        for _ in 0..3 {
            pipeline.next().await.unwrap().1.unwrap();
        }
        values.take(&snapshotter);
        assert_eq!(
            values.gauge_sum(PIPELINE_APPENDS_IN_FLIGHT, &[("peer", &target)]),
            2.0
        );
        drop(pipeline);
        let error = client
            .request_vote(&refused, RequestVoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
    });
    // The server's counts come as its answers go out, maybe after the
    // client saw them; the pipeline's end after the client dropped it. A
    // pipeline its caller closes resets its stream: it ends OK for the
    // client and CANCELLED for the server.
    let pipeline_done = with_code(RpcMethod::AppendEntriesPipeline, Code::Ok);
    let pipeline_reset = with_code(RpcMethod::AppendEntriesPipeline, Code::Cancelled);
    assert!(
        eventually(&mut values, &snapshotter, |v| {
            v.counter(GRPC_SERVER_HANDLED_TOTAL, &pipeline_reset) == 1
                && v.counter(
                    GRPC_SERVER_HANDLED_TOTAL,
                    &with_code(RpcMethod::InstallSnapshot, Code::Ok),
                ) == 1
        }),
        "{:#?}",
        values.counters
    );

    // The client's gRPC family.
    let vote = RpcMethod::RequestVote;
    assert_eq!(values.counter(GRPC_CLIENT_STARTED_TOTAL, &grpc(vote)), 4);
    assert_eq!(
        values.counter(GRPC_CLIENT_HANDLED_TOTAL, &with_code(vote, Code::Ok)),
        2
    );
    assert_eq!(
        values.counter(
            GRPC_CLIENT_HANDLED_TOTAL,
            &with_code(vote, Code::FailedPrecondition)
        ),
        1
    );
    assert_eq!(
        values.counter(
            GRPC_CLIENT_HANDLED_TOTAL,
            &with_code(vote, Code::Unavailable)
        ),
        1,
        "the refused port"
    );
    assert_eq!(values.counter(GRPC_CLIENT_MSG_SENT_TOTAL, &grpc(vote)), 4);
    assert_eq!(
        values.counter(GRPC_CLIENT_MSG_RECEIVED_TOTAL, &grpc(vote)),
        2
    );
    assert_eq!(
        values
            .samples(GRPC_CLIENT_HANDLING_SECONDS, &grpc(vote))
            .len(),
        4
    );
    assert_eq!(
        values.counter(
            GRPC_CLIENT_HANDLED_TOTAL,
            &with_code(RpcMethod::TimeoutNow, Code::PermissionDenied)
        ),
        1
    );
    let pipeline = RpcMethod::AppendEntriesPipeline;
    assert_eq!(
        values.counter(GRPC_CLIENT_STARTED_TOTAL, &grpc(pipeline)),
        1
    );
    assert_eq!(
        values.counter(GRPC_CLIENT_MSG_SENT_TOTAL, &grpc(pipeline)),
        5
    );
    assert_eq!(
        values.counter(GRPC_CLIENT_MSG_RECEIVED_TOTAL, &grpc(pipeline)),
        3,
        "the completions taken"
    );
    assert_eq!(values.counter(GRPC_CLIENT_HANDLED_TOTAL, &pipeline_done), 1);
    let snapshot = RpcMethod::InstallSnapshot;
    let client_snapshot_messages = values.counter(GRPC_CLIENT_MSG_SENT_TOTAL, &grpc(snapshot));
    assert!(
        client_snapshot_messages >= 2,
        "the metadata and the chunks: {client_snapshot_messages}"
    );

    // The server's: the same calls, but the one to the refused port.
    assert_eq!(values.counter(GRPC_SERVER_STARTED_TOTAL, &grpc(vote)), 3);
    assert_eq!(
        values.counter(GRPC_SERVER_HANDLED_TOTAL, &with_code(vote, Code::Ok)),
        2
    );
    assert_eq!(
        values.counter(
            GRPC_SERVER_HANDLED_TOTAL,
            &with_code(vote, Code::FailedPrecondition)
        ),
        1
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_RECEIVED_TOTAL, &grpc(vote)),
        3
    );
    assert_eq!(values.counter(GRPC_SERVER_MSG_SENT_TOTAL, &grpc(vote)), 2);
    assert_eq!(
        values
            .samples(GRPC_SERVER_HANDLING_SECONDS, &grpc(vote))
            .len(),
        3
    );
    let timeout_now = RpcMethod::TimeoutNow;
    assert_eq!(
        values.counter(GRPC_SERVER_STARTED_TOTAL, &grpc(timeout_now)),
        1,
        "a refused call starts"
    );
    assert_eq!(
        values.counter(
            GRPC_SERVER_HANDLED_TOTAL,
            &with_code(timeout_now, Code::PermissionDenied)
        ),
        1
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_RECEIVED_TOTAL, &grpc(timeout_now)),
        0,
        "refused before its request was read"
    );
    let append = RpcMethod::AppendEntries;
    assert_eq!(
        values.counter(GRPC_SERVER_HANDLED_TOTAL, &with_code(append, Code::Ok)),
        1,
        "the heartbeat"
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_RECEIVED_TOTAL, &grpc(pipeline)),
        5
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_SENT_TOTAL, &grpc(pipeline)),
        5
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_RECEIVED_TOTAL, &grpc(snapshot)),
        client_snapshot_messages,
        "every message the client sent"
    );
    assert_eq!(
        values.counter(GRPC_SERVER_MSG_SENT_TOTAL, &grpc(snapshot)),
        1
    );

    // The transport's own.
    assert_eq!(
        values.counter(SNAPSHOT_SENT_BYTES_TOTAL, &[("peer", &target)]),
        snapshot_size
    );
    assert_eq!(
        values.counter(SNAPSHOT_RECEIVED_BYTES_TOTAL, &[]),
        snapshot_size
    );
    assert_eq!(
        values.gauge_sum(PIPELINE_APPENDS_IN_FLIGHT, &[("peer", &target)]),
        0.0,
        "a dropped pipeline has nothing in flight"
    );
    let heartbeats = values.samples(HEARTBEAT_SECONDS, &[("peer", &target)]);
    assert!(
        heartbeats.len() == 1 && heartbeats[0] > 0.0 && heartbeats[0] < 5.0,
        "{heartbeats:?}"
    );
    // Connections: the control, replication and snapshot slots are up.
    let lanes: Vec<String> = values
        .gauges
        .iter()
        .filter(|((n, l), g)| {
            n == CLIENT_CONNECTIONS && includes(l, &[("peer", &target)]) && **g == 1.0
        })
        .filter_map(|((_, l), _)| l.iter().find(|(k, _)| k == "lanes").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(lanes, ["control", "replication", "snapshot"]);
    assert_eq!(values.gauge_sum(SERVER_CONNECTIONS, &[]), 3.0);
    assert_eq!(
        values.counter_sum(CLIENT_CONNECT_FAILURES_TOTAL, &[("peer", &refused)]),
        1
    );
    assert_eq!(values.counter_sum(CLIENT_RECONNECTS_TOTAL, &[]), 0);

    // The peer is removed: its connections close once idle, on both
    // sides; the next call reconnects.
    client.remove_peer(&target);
    assert!(
        eventually(&mut values, &snapshotter, |v| {
            v.gauge_sum(CLIENT_CONNECTIONS, &[("peer", &target)]) == 0.0
                && v.gauge_sum(SERVER_CONNECTIONS, &[]) == 0.0
        }),
        "{:?}",
        values.gauges
    );
    block_on(client.request_vote(&target, RequestVoteRequest::default())).unwrap();
    values.take(&snapshotter);
    assert_eq!(
        values.counter(
            CLIENT_RECONNECTS_TOTAL,
            &[("peer", &target), ("lanes", "control")]
        ),
        1
    );
    assert_eq!(
        values.gauge_sum(CLIENT_CONNECTIONS, &[("peer", &target)]),
        1.0
    );

    block_on(client.close());
    block_on(server.close());
}
