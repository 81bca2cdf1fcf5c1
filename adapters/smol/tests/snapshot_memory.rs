//! A 1 GiB snapshot streamed over loopback in bounded memory.
//!
//! Its own test binary, so that the process's peak RSS (`VmHWM`) measures
//! this transfer alone. Both sides run in this process: the bound covers the
//! sender and the receiver together.

use std::time::Instant;

use futures_lite::AsyncReadExt;
use futures_lite::future::block_on;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

const SIZE: u64 = 1 << 30;

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn one_gib_snapshot_in_bounded_memory() {
    block_on(async {
        let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let consumer = server.consumer();
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                raft_grpc_transport_api::reference::answer(rpc, RpcHeader::default()).await;
            }
        })
        .detach();
        let client = GrpcTransport::builder("client", Config::default()).build();
        // Warm up the connections so the baseline includes them.
        let small = client
            .install_snapshot(
                server.local_addr(),
                InstallSnapshotRequest {
                    term: 1,
                    size: 1 << 20,
                    ..Default::default()
                },
                futures_lite::io::repeat(7).take(1 << 20),
            )
            .await
            .unwrap();
        assert!(small.success);

        let before = peak_rss();
        let start = Instant::now();
        let response = client
            .install_snapshot(
                server.local_addr(),
                InstallSnapshotRequest {
                    term: 2,
                    size: SIZE,
                    ..Default::default()
                },
                futures_lite::io::repeat(0x5a).take(SIZE),
            )
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert!(response.success);
        let grown = peak_rss().saturating_sub(before);
        let rate = SIZE as f64 / elapsed.as_secs_f64() / 1e6;
        println!(
            "1 GiB in {elapsed:?} ({rate:.0} MB/s); peak RSS grew by {} MiB",
            grown >> 20
        );
        // Per side: two 1 MiB chunks queued, one read buffer, one message in
        // the decoder, two in the reader's channel, and the 1 MiB stream
        // window h2 buffers: well under 32 MiB for both.
        if cfg!(target_os = "linux") {
            assert!(grown < 32 << 20, "peak RSS grew by {} MiB", grown >> 20);
        }

        // A source that returns 64 KiB per read (a pipe, a socket): the short
        // reads share buffers instead of pinning one each.
        let before = peak_rss();
        let response = client
            .install_snapshot(
                server.local_addr(),
                InstallSnapshotRequest {
                    term: 3,
                    size: 64 << 20,
                    ..Default::default()
                },
                ShortReads(futures_lite::io::repeat(0x33).take(64 << 20)),
            )
            .await
            .unwrap();
        assert!(response.success);
        let grown = peak_rss().saturating_sub(before);
        println!(
            "64 MiB in 64 KiB reads: peak RSS grew by {} MiB",
            grown >> 20
        );
        if cfg!(target_os = "linux") {
            assert!(grown < 32 << 20, "peak RSS grew by {} MiB", grown >> 20);
        }
        client.close().await;
        server.close().await;
    });
}

/// Hands out at most 64 KiB per read.
struct ShortReads<R>(R);

impl<R: futures_lite::AsyncRead + Unpin> futures_lite::AsyncRead for ShortReads<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(64 * 1024);
        std::pin::Pin::new(&mut self.0).poll_read(cx, &mut buf[..n])
    }
}
