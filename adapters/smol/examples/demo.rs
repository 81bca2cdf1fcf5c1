//! A three-node demo of the transport on loopback: what a Raft leader sends
//! its followers, and how long it takes.
//!
//! ```sh
//! cargo run --release -p raft-grpc-transport-smol --example demo
//! ```
//!
//! Node 0 plays the leader. It asks nodes 1 and 2 for pre-votes and votes,
//! sends heartbeats, replicates 10,000 entries to each follower through a
//! pipeline, streams a 256 MiB snapshot to node 2 while heartbeats keep
//! being answered by node 2's heartbeat handler, and hands leadership to node
//! 1 with TimeoutNow. The followers answer like `node serve`
//! (`raft_grpc_transport::reference`). Each step
//! prints one line; the demo exits non-zero if anything fails.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::AsyncReadExt;
use futures_lite::future::block_on;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

const ENTRIES: u64 = 10_000;
const SNAPSHOT: u64 = 256 << 20;

fn header(transport: &GrpcTransport, id: &str) -> RpcHeader {
    RpcHeader::new(3, id.to_owned(), transport.local_addr().to_owned())
}

async fn start_follower(id: &str) -> std::io::Result<GrpcTransport> {
    let transport = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
    let me = header(&transport, id);
    transport.set_heartbeat_handler(Some(raft_grpc_transport_api::reference::heartbeat_handler(
        me.clone(),
    )));
    let consumer = transport.consumer();
    smol::spawn(async move {
        while let Some(rpc) = consumer.recv().await {
            smol::spawn(raft_grpc_transport_api::reference::answer(rpc, me.clone())).detach();
        }
    })
    .detach();
    Ok(transport)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let leader = GrpcTransport::bind("127.0.0.1:0", Config::default()).await?;
    let followers = [
        start_follower("node1").await?,
        start_follower("node2").await?,
    ];
    let me = header(&leader, "node0");
    println!(
        "nodes: node0 {} (leader), node1 {}, node2 {}",
        leader.local_addr(),
        followers[0].local_addr(),
        followers[1].local_addr()
    );

    for (i, follower) in followers.iter().enumerate() {
        let start = Instant::now();
        let pre = leader
            .request_pre_vote(
                follower.local_addr(),
                RequestPreVoteRequest {
                    header: me.clone(),
                    term: 2,
                    last_log_index: 0,
                    last_log_term: 0,
                },
            )
            .await?;
        let vote = leader
            .request_vote(
                follower.local_addr(),
                RequestVoteRequest {
                    header: me.clone(),
                    term: 2,
                    ..Default::default()
                },
            )
            .await?;
        println!(
            "node{}: pre-vote granted={} vote granted={} ({:.2} ms, first connection included)",
            i + 1,
            pre.granted,
            vote.granted,
            millis(start.elapsed())
        );
    }

    let heartbeat = AppendEntriesRequest {
        header: me.clone(),
        term: 2,
        ..Default::default()
    };
    let mut samples = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        leader
            .append_entries(followers[0].local_addr(), heartbeat.clone())
            .await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "heartbeats to node1: p50 {:.0} µs, p99 {:.0} µs (200 sequential)",
        samples[100].as_secs_f64() * 1e6,
        samples[197].as_secs_f64() * 1e6
    );

    for (i, follower) in followers.iter().enumerate() {
        let start = Instant::now();
        let pipeline = leader
            .append_entries_pipeline(follower.local_addr())
            .await?;
        let send = async {
            for index in 1..=ENTRIES {
                let request = AppendEntriesRequest {
                    header: me.clone(),
                    term: 2,
                    prev_log_entry: index - 1,
                    prev_log_term: 2,
                    entries: vec![Log::command(index, 2, Bytes::from(vec![0u8; 1024]))],
                    leader_commit_index: index - 1,
                    ..Default::default()
                };
                pipeline.append(&request).await?;
            }
            Ok::<(), raft_grpc_transport_api::TransportError>(())
        };
        let receive = async {
            let mut last = 0;
            for _ in 0..ENTRIES {
                match pipeline.next().await {
                    Some((_, Ok(response))) => last = response.last_log,
                    Some((_, Err(e))) => return Err(e),
                    None => break,
                }
            }
            Ok(last)
        };
        let (sent, last) = futures_lite::future::zip(send, receive).await;
        sent?;
        let last = last?;
        let elapsed = start.elapsed();
        println!(
            "node{}: pipelined {ENTRIES} appends of 1 KiB, last_log {last}, {:.0} appends/s",
            i + 1,
            ENTRIES as f64 / elapsed.as_secs_f64()
        );
    }

    let start = Instant::now();
    let snapshot = leader.install_snapshot(
        followers[1].local_addr(),
        InstallSnapshotRequest {
            header: me.clone(),
            snapshot_version: 1,
            term: 2,
            last_log_index: ENTRIES,
            last_log_term: 2,
            size: SNAPSHOT,
            ..Default::default()
        },
        futures_lite::io::repeat(0x5a).take(SNAPSHOT),
    );
    let heartbeats = async {
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            let at = Instant::now();
            leader
                .append_entries(followers[1].local_addr(), heartbeat.clone())
                .await?;
            worst = worst.max(at.elapsed());
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        Ok::<Duration, raft_grpc_transport_api::TransportError>(worst)
    };
    let (installed, worst) = futures_lite::future::zip(snapshot, heartbeats).await;
    let installed = installed?;
    let elapsed = start.elapsed();
    println!(
        "node2: installed a {} MiB snapshot success={} at {:.0} MB/s; worst heartbeat meanwhile {:.2} ms",
        SNAPSHOT >> 20,
        installed.success,
        SNAPSHOT as f64 / elapsed.as_secs_f64() / 1e6,
        millis(worst?)
    );

    leader
        .timeout_now(followers[0].local_addr(), TimeoutNowRequest { header: me })
        .await?;
    println!("node1: TimeoutNow delivered: leadership handed over");

    leader.close().await;
    for follower in &followers {
        follower.close().await;
    }
    if !installed.success {
        return Err("the snapshot was not installed".into());
    }
    Ok(())
}

fn main() {
    if let Err(e) = block_on(run()) {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
