//! The request suite both Go interop tests send, and what they share to
//! send and compare it: the snapshot data pattern (the same bytes as the Go
//! peer's `pattern`), the call of any request, the transcript comparison.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_lite::AsyncRead;
use raft_grpc_transport::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Log, LogType, RaftRequest, RaftResponse,
    RequestPreVoteRequest, RequestVoteRequest, RpcHeader, TimeoutNowRequest,
};
use raft_grpc_transport_api::TransportError;
use raft_grpc_transport_smol::GrpcTransport;

use crate::canon;

/// The size of the suite's snapshot.
pub const SNAPSHOT_SIZE: u64 = 64 << 20;
/// Appends each pipeline test sends.
pub const PIPELINED: u64 = 10_000;

/// The snapshot data: `size` bytes of a fixed pattern, generated as read
/// (the same bytes as the Go peer's `pattern`).
pub struct Pattern {
    pos: u64,
    size: u64,
}

impl Pattern {
    /// `size` bytes of the pattern, from its start.
    pub fn new(size: u64) -> Pattern {
        Pattern { pos: 0, size }
    }
}

/// The pattern's byte at offset `i`.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B1) >> 13) as u8
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = (self.size - self.pos).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.pos + k as u64);
        }
        self.pos += n as u64;
        Poll::Ready(Ok(n))
    }
}

/// The canonical form of `size` bytes of [`Pattern`].
pub fn pattern_data(size: u64) -> String {
    let mut crc = 0;
    let mut buf = vec![0; 1 << 20];
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(pos + k as u64);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        pos += n as u64;
    }
    canon::data(size, crc)
}

/// Every kind of request our client sends, with every field set : an AppendEntries with 7 entries
/// (one of 1 MiB, some with `appended_at`), a heartbeat, a RequestVote, a
/// RequestPreVote, a TimeoutNow and the metadata of a 64 MiB snapshot.
pub fn rust_suite(header: &RpcHeader) -> Vec<RaftRequest> {
    let at = UNIX_EPOCH + Duration::new(1_700_000_000, 987_654_321);
    let mut entries: Vec<Log> = (0..6u32)
        .map(|i| Log {
            index: 21 + u64::from(i),
            term: 4,
            log_type: LogType::from(i),
            data: Bytes::from(format!("rust entry {i}")),
            extensions: Bytes::from(vec![0xee, i as u8]),
            appended_at: (i % 2 == 1).then(|| at + Duration::from_micros(u64::from(i))),
        })
        .collect();
    entries.push(Log {
        index: 27,
        term: 4,
        log_type: LogType::Command,
        data: Bytes::from((0..1u32 << 20).map(|i| (i * 13) as u8).collect::<Vec<_>>()),
        extensions: Bytes::new(),
        appended_at: Some(at),
    });
    vec![
        RaftRequest::AppendEntries(AppendEntriesRequest {
            header: header.clone(),
            term: (1 << 33) + 4,
            prev_log_entry: 20,
            prev_log_term: 3,
            entries,
            leader_commit_index: 19,
            leader: header.addr.clone(),
        }),
        // A heartbeat.
        RaftRequest::AppendEntries(AppendEntriesRequest {
            header: header.clone(),
            term: 4,
            ..Default::default()
        }),
        RaftRequest::RequestVote(RequestVoteRequest {
            header: header.clone(),
            term: u64::MAX,
            last_log_index: 27,
            last_log_term: (1 << 40) + 1,
            leadership_transfer: true,
            candidate: header.addr.clone(),
        }),
        RaftRequest::RequestPreVote(RequestPreVoteRequest {
            header: header.clone(),
            term: 5,
            last_log_index: 27,
            last_log_term: 4,
        }),
        RaftRequest::TimeoutNow(TimeoutNowRequest {
            header: header.clone(),
        }),
        RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            header: header.clone(),
            snapshot_version: 1,
            term: 4,
            leader: header.addr.clone(),
            last_log_index: 2000,
            last_log_term: 4,
            peers: Bytes::from_static(b"rust peers"),
            configuration: Bytes::from(vec![7u8; 300]),
            configuration_index: 1500,
            size: SNAPSHOT_SIZE,
        }),
    ]
}

/// Sends `request` from `client` to `target` (a snapshot's data is
/// [`Pattern`]).
pub async fn call(
    client: &GrpcTransport,
    target: &str,
    request: RaftRequest,
) -> Result<RaftResponse, TransportError> {
    Ok(match request {
        RaftRequest::AppendEntries(r) => {
            RaftResponse::AppendEntries(client.append_entries(target, r).await?)
        }
        RaftRequest::RequestVote(r) => {
            RaftResponse::RequestVote(client.request_vote(target, r).await?)
        }
        RaftRequest::RequestPreVote(r) => {
            RaftResponse::RequestPreVote(client.request_pre_vote(target, r).await?)
        }
        RaftRequest::TimeoutNow(r) => {
            RaftResponse::TimeoutNow(client.timeout_now(target, r).await?)
        }
        RaftRequest::InstallSnapshot(r) => {
            let size = r.size;
            RaftResponse::InstallSnapshot(
                client
                    .install_snapshot(target, r, Pattern::new(size))
                    .await?,
            )
        }
    })
}

/// Fails the test, naming `what`, when the two transcript lines differ.
pub fn assert_same(what: &str, ours: &str, theirs: &str) {
    assert!(
        ours == theirs,
        "{what}: the transcripts differ\n ours:   {ours}\n theirs: {theirs}"
    );
}
