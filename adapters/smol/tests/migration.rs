//! The in-memory transport, and `MigrationTransport` over it and over the
//! gRPC transport.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use raft_grpc_transport::Code;
use raft_grpc_transport::message::*;
use raft_grpc_transport_api::migration::{BytesReader, MigrationTransport, fallback_on_either};
use raft_grpc_transport_api::{AppendPipeline, Transport, TransportError};
use raft_grpc_transport_smol::{
    Config, Connector, GrpcTransport, InmemConfig, InmemNetwork, InmemTransport, PeerInfo,
    tcp_connector,
};

/// Answers every RPC on `transport` like `node serve`, naming itself `id`.
fn answer_all<T: Transport + Clone + 'static>(transport: &T, id: &str) {
    let (t, header) = (
        transport.clone(),
        RpcHeader::new(3, id.to_owned(), transport.local_addr().to_owned()),
    );
    smol::spawn(async move {
        while let Some(rpc) = t.recv_rpc().await {
            smol::spawn(raft_grpc_transport_api::reference::answer(
                rpc,
                header.clone(),
            ))
            .detach();
        }
    })
    .detach();
}

fn append(index: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term: 2,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, 2, Bytes::from_static(b"entry"))],
        ..Default::default()
    }
}

fn snapshot_meta(size: u64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        term: 2,
        size,
        ..Default::default()
    }
}

#[test]
fn inmem_transport_behaves_like_the_real_one() {
    block_on(async {
        let net = InmemNetwork::new();
        let a = net.transport("a", InmemConfig::default());
        let b = net.transport("b", InmemConfig::default());
        answer_all(&b, "b");

        let r = a.append_entries("b", append(7)).await.unwrap();
        assert_eq!(
            (r.last_log, r.header.id.clone()),
            (7, Bytes::from_static(b"b"))
        );
        assert!(
            a.request_vote(
                "b",
                RequestVoteRequest {
                    term: 3,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .granted
        );
        assert!(
            a.request_pre_vote(
                "b",
                RequestPreVoteRequest {
                    term: 3,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .granted
        );
        a.timeout_now("b", TimeoutNowRequest::default())
            .await
            .unwrap();
        let data = Bytes::from(vec![5u8; 300_000]);
        assert!(
            a.install_snapshot("b", snapshot_meta(300_000), BytesReader::new(data.clone()))
                .await
                .unwrap()
                .success
        );
        // A source shorter than declared fails, and the receiver sees it.
        let short = a
            .install_snapshot("b", snapshot_meta(400_000), BytesReader::new(data))
            .await
            .unwrap_err();
        assert_eq!(short.code(), Code::DataLoss);

        // 200 appends through a window of 64: sending waits for completions.
        let pipeline = a.append_entries_pipeline("b").await.unwrap();
        let send = async {
            for i in 1..=200 {
                pipeline.append(&append(i)).await.unwrap();
            }
        };
        let receive = async {
            for i in 0..200u64 {
                let (seq, result) = pipeline.next().await.unwrap();
                assert_eq!((seq, result.unwrap().last_log), (i, i + 1));
            }
        };
        futures_lite::future::zip(send, receive).await;

        // Partitions, then healing.
        net.disconnect("a", "b");
        assert_eq!(
            a.append_entries("b", append(1)).await.unwrap_err().code(),
            Code::Unavailable
        );
        net.connect("a", "b");
        assert!(a.append_entries("b", append(1)).await.is_ok());
        assert_eq!(
            a.append_entries("nobody", append(1))
                .await
                .unwrap_err()
                .code(),
            Code::Unavailable
        );

        // Heartbeats go to the handler when one is set.
        b.set_heartbeat_handler(Some(Arc::new(|r: &AppendEntriesRequest, _: &PeerInfo| {
            Ok(AppendEntriesResponse {
                term: r.term,
                last_log: 4242,
                ..Default::default()
            })
        })));
        let hb = AppendEntriesRequest {
            header: RpcHeader::new(3, "a", "a"),
            term: 2,
            ..Default::default()
        };
        assert_eq!(a.append_entries("b", hb).await.unwrap().last_log, 4242);

        a.close().await;
        assert_eq!(
            a.append_entries("b", append(1)).await.unwrap_err(),
            TransportError::Shutdown
        );
        b.close().await;
        assert!(b.recv_rpc().await.is_none());
    });
}

#[test]
fn inmem_calls_fail_when_the_link_is_cut_in_flight_or_the_deadline_passes() {
    block_on(async {
        let net = InmemNetwork::new();
        let config = InmemConfig::default().with_rpc_timeout(Duration::from_millis(200));
        let a = net.transport("a", config.clone());
        let b = net.transport("b", config);
        // b never answers.
        let held = b.consumer();
        let keep = smol::spawn(async move {
            let mut all = Vec::new();
            while let Some(rpc) = held.recv().await {
                all.push(rpc);
            }
            all.len()
        });
        let err = a
            .request_vote("b", RequestVoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        let call = a.request_vote("b", RequestVoteRequest::default());
        let cut = async {
            async_io::Timer::after(Duration::from_millis(50)).await;
            net.disconnect("a", "b");
        };
        let (err, ()) = futures_lite::future::zip(call, cut).await;
        assert_eq!(err.unwrap_err().code(), Code::Unavailable);
        b.close().await;
        assert_eq!(keep.await, 2);
    });
}

/// Old (secondary) and new (primary) in-memory networks; `only_old` nodes
/// are not on the new one yet.
/// Each node's primary (new, absent for legacy nodes) and secondary (old)
/// transport.
type Cluster = HashMap<String, (Option<InmemTransport>, InmemTransport)>;

fn inmem_cluster(nodes: &[&str], only_old: &[&str]) -> (InmemNetwork, InmemNetwork, Cluster) {
    let (new, old) = (InmemNetwork::new(), InmemNetwork::new());
    let mut map = HashMap::new();
    for n in nodes {
        let primary = (!only_old.contains(n)).then(|| new.transport(n, InmemConfig::default()));
        let secondary = old.transport(n, InmemConfig::default());
        map.insert(n.to_string(), (primary, secondary));
    }
    (new, old, map)
}

#[test]
fn migration_over_inmem_mixed_cluster() {
    block_on(async {
        let (_new, _old, nodes) = inmem_cluster(&["leader", "upgraded", "legacy"], &["legacy"]);
        let (p, s) = nodes["leader"].clone();
        let leader = MigrationTransport::new(p.unwrap(), s, fallback_on_either);
        let (up_new, up_old) = nodes["upgraded"].clone();
        let up_new = up_new.unwrap();
        answer_all(&up_new, "upgraded-new");
        answer_all(&up_old, "upgraded-old");
        answer_all(&nodes["legacy"].1, "legacy-old");

        // An upgraded peer answers on the primary, a legacy one on the secondary,
        // for every RPC kind.
        let r = leader.append_entries("upgraded", append(1)).await.unwrap();
        assert_eq!(r.header.id, Bytes::from_static(b"upgraded-new"));
        let r = leader.append_entries("legacy", append(1)).await.unwrap();
        assert_eq!(r.header.id, Bytes::from_static(b"legacy-old"));
        assert_eq!(
            leader
                .request_vote("legacy", RequestVoteRequest::default())
                .await
                .unwrap()
                .header
                .id,
            Bytes::from_static(b"legacy-old")
        );
        assert_eq!(
            leader
                .request_pre_vote("legacy", RequestPreVoteRequest::default())
                .await
                .unwrap()
                .header
                .id,
            Bytes::from_static(b"legacy-old")
        );
        assert_eq!(
            leader
                .timeout_now("legacy", TimeoutNowRequest::default())
                .await
                .unwrap()
                .header
                .id,
            Bytes::from_static(b"legacy-old")
        );
        let pipeline = leader.append_entries_pipeline("legacy").await.unwrap();
        assert!(matches!(
            pipeline,
            raft_grpc_transport_api::migration::MigrationPipeline::Secondary(_)
        ));
        pipeline.append(&append(1)).await.unwrap();
        assert_eq!(
            pipeline.next().await.unwrap().1.unwrap().header.id,
            Bytes::from_static(b"legacy-old")
        );

        // Snapshots: a reopenable source falls back; a read-once one does not.
        let data = Bytes::from(vec![1u8; 100_000]);
        let source = {
            let data = data.clone();
            move || Ok(BytesReader::new(data.clone()))
        };
        let r = leader
            .install_snapshot_from("legacy", snapshot_meta(100_000), source)
            .await
            .unwrap();
        assert!(r.success && r.header.id == Bytes::from_static(b"legacy-old"));
        let err = leader
            .install_snapshot("legacy", snapshot_meta(100_000), BytesReader::new(data))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unavailable,
            "the primary's error, no half-read replay"
        );

        // Incoming RPCs of both transports reach one consumer.
        let (up_sender, legacy_sender) = (up_new.clone(), nodes["legacy"].1.clone());
        let incoming = async {
            let mut ids = Vec::new();
            for _ in 0..2 {
                let rpc = leader.recv_rpc().await.unwrap();
                if let RaftRequest::RequestVote(r) = &rpc.request {
                    ids.push(r.header.id.clone());
                }
                rpc.respond(Ok(RaftResponse::RequestVote(RequestVoteResponse {
                    granted: true,
                    ..Default::default()
                })));
            }
            ids.sort();
            ids
        };
        let calls = async {
            let a = up_sender.request_vote(
                "leader",
                RequestVoteRequest {
                    header: RpcHeader::new(3, "via-new", ""),
                    ..Default::default()
                },
            );
            let b = legacy_sender.request_vote(
                "leader",
                RequestVoteRequest {
                    header: RpcHeader::new(3, "via-old", ""),
                    ..Default::default()
                },
            );
            let (a, b) = futures_lite::future::zip(a, b).await;
            assert!(a.unwrap().granted && b.unwrap().granted);
        };
        let (ids, ()) = futures_lite::future::zip(incoming, calls).await;
        assert_eq!(
            ids,
            vec![
                Bytes::from_static(b"via-new"),
                Bytes::from_static(b"via-old")
            ]
        );

        // Close: both close, later calls fail at once, the consumer ends.
        leader.close().await;
        assert_eq!(
            leader
                .append_entries("upgraded", append(2))
                .await
                .unwrap_err(),
            TransportError::Shutdown
        );
        assert!(leader.recv_rpc().await.is_none());
    });
}

#[test]
fn migration_close_fails_calls_in_flight() {
    block_on(async {
        let (_new, _old, nodes) = inmem_cluster(&["leader", "slow"], &[]);
        let (p, s) = nodes["leader"].clone();
        let leader = MigrationTransport::new(p.unwrap(), s, fallback_on_either);
        // "slow" never answers, on either transport.
        let (slow_new, slow_old) = nodes["slow"].clone();
        let hold = |t: InmemTransport| {
            smol::spawn(async move {
                let mut held = Vec::new();
                while let Some(rpc) = t.recv_rpc().await {
                    held.push(rpc);
                }
            })
            .detach()
        };
        hold(slow_new.unwrap());
        hold(slow_old);
        let calls = async {
            let a = leader.request_vote("slow", RequestVoteRequest::default());
            let b = leader.append_entries("slow", append(1));
            futures_lite::future::zip(a, b).await
        };
        let close = async {
            async_io::Timer::after(Duration::from_millis(50)).await;
            leader.close().await;
        };
        let ((a, b), ()) = futures_lite::future::zip(calls, close).await;
        assert_eq!(a.unwrap_err(), TransportError::Shutdown);
        assert_eq!(b.unwrap_err(), TransportError::Shutdown);
    });
}

#[test]
fn migration_over_grpc_falls_back_to_the_old_port() {
    block_on(async {
        // The upgraded peer serves both transports; the legacy one only the
        // old. Peers are known by their new address; the secondary's
        // connector maps it to the old port.
        let up_new = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let up_old = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let legacy_old = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        answer_all(&up_new, "upgraded-new");
        answer_all(&up_old, "upgraded-old");
        answer_all(&legacy_old, "legacy-old");
        // The legacy peer's "new" address: a port nobody listens on.
        let legacy_new = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let old_ports: HashMap<String, String> = [
            (
                up_new.local_addr().to_owned(),
                up_old.local_addr().to_owned(),
            ),
            (legacy_new.clone(), legacy_old.local_addr().to_owned()),
        ]
        .into();
        let tcp = tcp_connector();
        let to_old_port: Connector =
            Arc::new(move |peer: String| tcp(old_ports.get(&peer).cloned().unwrap_or(peer)));
        let primary = GrpcTransport::builder("leader-new", Config::default()).build();
        let secondary = GrpcTransport::builder("leader-old", Config::default())
            .connector(to_old_port)
            .build();
        let leader = MigrationTransport::new(primary, secondary, fallback_on_either);

        let r = leader
            .append_entries(up_new.local_addr(), append(1))
            .await
            .unwrap();
        assert_eq!(r.header.id, Bytes::from_static(b"upgraded-new"));
        let r = leader.append_entries(&legacy_new, append(1)).await.unwrap();
        assert_eq!(r.header.id, Bytes::from_static(b"legacy-old"));
        assert!(
            leader
                .request_pre_vote(&legacy_new, RequestPreVoteRequest::default())
                .await
                .unwrap()
                .granted
        );
        leader
            .timeout_now(&legacy_new, TimeoutNowRequest::default())
            .await
            .unwrap();
        let data = Bytes::from(vec![9u8; 2_000_000]);
        let source = {
            let data = data.clone();
            move || Ok(BytesReader::new(data.clone()))
        };
        assert!(
            leader
                .install_snapshot_from(&legacy_new, snapshot_meta(2_000_000), source)
                .await
                .unwrap()
                .success
        );
        let err = leader
            .install_snapshot(
                &legacy_new,
                snapshot_meta(2_000_000),
                BytesReader::new(data),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        // The primary cannot open a pipeline to the legacy peer: it opens on
        // the secondary.
        let pipeline = leader.append_entries_pipeline(&legacy_new).await.unwrap();
        assert!(matches!(
            pipeline,
            raft_grpc_transport_api::migration::MigrationPipeline::Secondary(_)
        ));
        pipeline.append(&append(1)).await.unwrap();
        let (_, result) = pipeline.next().await.unwrap();
        assert_eq!(result.unwrap().header.id, Bytes::from_static(b"legacy-old"));
        let pipeline = leader
            .append_entries_pipeline(up_new.local_addr())
            .await
            .unwrap();
        assert!(matches!(
            pipeline,
            raft_grpc_transport_api::migration::MigrationPipeline::Primary(_)
        ));
        leader.close().await;
        for t in [up_new, up_old, legacy_old] {
            t.close().await;
        }
    });
}
