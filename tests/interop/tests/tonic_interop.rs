//! Interop with tonic: our transport against an independent gRPC stack
//! speaking the same proto, both ways.
//!
//! This file owns the tonic side of the interop tests: a tonic server and a
//! tonic client of `proto/raft/v1/raft.proto`, and the tests that run them
//! against the smol adapter's `GrpcTransport`:
//!
//! * **our client → tonic server**: every RPC kind (AppendEntries with every
//!   log type and every added field, a heartbeat, RequestVote,
//!   RequestPreVote, TimeoutNow, a streamed InstallSnapshot of more than
//!   16 MiB, a pipeline of 2,000 appends); the tonic server answers as
//!   `raft_grpc_transport_api::reference::answer` does, records every request,
//!   and checks the snapshot stream (metadata-only first message, no empty
//!   or metadata-carrying data message, the running `data_crc32c`, exactly
//!   `size` bytes);
//! * **tonic client → our server**: the same coverage in reverse (our
//!   consumer records every request and answers with `reference::answer`;
//!   heartbeats go to a heartbeat handler), with snapshots streamed the way
//!   the Go library does (metadata only, then data messages, then
//!   half-close) and a bidi AppendEntriesPipeline of 2,000 messages;
//! * **error paths**: statuses (code, non-ASCII message, details) both
//!   ways, oversized messages both ways, a corrupted, a short and a long
//!   snapshot stream, and our client's deadline against a tonic server
//!   that never answers.
//!
//! The tonic code is generated, not hand-written: `build.rs` compiles the
//! proto with protox (no `protoc`) and tonic-prost-build, so the tonic side
//! has its own prost types (`Vec<u8>` payloads), its own encoder and its own
//! service routing, sharing nothing with the core but the `.proto` file.
//! That is what a third-party tonic peer would have. Requests and
//! responses are compared field by field through the `wire_*` conversions
//! below, which destructure every Rust message exhaustively: a field added
//! to a message type and not carried here fails to compile.
//!
//! tonic runs on tokio (multi-threaded runtimes for the tonic servers, a
//! current-thread runtime for the tonic clients); our transport is awaited
//! from inside those runtimes, its own tasks running on smol's executor.
//! Every test name starts with `interop_tonic_`, so that `cargo test
//! --workspace interop` and `cargo test -p raft-grpc-interop interop_tonic`
//! both select them all.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    Log, LogType, RaftRequest, RaftResponse, RequestPreVoteRequest, RequestPreVoteResponse,
    RequestVoteRequest, RequestVoteResponse, RpcHeader, TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_api::{Responder, Rpc, SnapshotBytes, SnapshotReader};
use raft_grpc_transport_smol::{Config, GrpcTransport, TransportError};
use tokio_stream::{Stream, StreamExt};

mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("proto.raft.v1");
}

use pb::raft_transport_service_client::RaftTransportServiceClient;
use pb::raft_transport_service_server::{RaftTransportService, RaftTransportServiceServer};

const MIB: usize = 1 << 20;
/// Snapshot size: over 16 MiB, and not a multiple of any chunk size.
const SNAPSHOT_SIZE: usize = 16 * MIB + 12_345;
/// Appends in each pipeline test.
const PIPELINED: u64 = 2_000;

// ---------------------------------------------------------------------------
// Field-by-field conversions from our messages to tonic's.

fn wire_header(header: &RpcHeader) -> Option<pb::RpcHeader> {
    let RpcHeader {
        protocol_version,
        id,
        addr,
    } = header;
    Some(pb::RpcHeader {
        protocol_version: *protocol_version,
        id: id.to_vec(),
        addr: addr.to_vec(),
    })
}

fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap(),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap(),
    }
}

fn wire_log(log: &Log) -> pb::Log {
    let Log {
        index,
        term,
        log_type,
        data,
        extensions,
        appended_at,
    } = log;
    pb::Log {
        index: *index,
        term: *term,
        r#type: u32::from(*log_type),
        data: data.to_vec(),
        extensions: extensions.to_vec(),
        appended_at_unix_nanos: appended_at.map(unix_nanos),
    }
}

fn wire_append(request: &AppendEntriesRequest) -> pb::AppendEntriesRequest {
    let AppendEntriesRequest {
        header,
        term,
        prev_log_entry,
        prev_log_term,
        entries,
        leader_commit_index,
        leader,
    } = request;
    pb::AppendEntriesRequest {
        header: wire_header(header),
        term: *term,
        prev_log_entry: *prev_log_entry,
        prev_log_term: *prev_log_term,
        entries: entries.iter().map(wire_log).collect(),
        leader_commit_index: *leader_commit_index,
        leader: leader.to_vec(),
    }
}

fn wire_pipeline_append(request: &AppendEntriesRequest) -> pb::AppendEntriesPipelineRequest {
    let pb::AppendEntriesRequest {
        header,
        term,
        prev_log_entry,
        prev_log_term,
        entries,
        leader_commit_index,
        leader,
    } = wire_append(request);
    pb::AppendEntriesPipelineRequest {
        header,
        term,
        prev_log_entry,
        prev_log_term,
        entries,
        leader_commit_index,
        leader,
    }
}

fn wire_append_response(response: &AppendEntriesResponse) -> pb::AppendEntriesResponse {
    let AppendEntriesResponse {
        header,
        term,
        last_log,
        success,
        no_retry_backoff,
    } = response;
    pb::AppendEntriesResponse {
        header: wire_header(header),
        term: *term,
        last_log: *last_log,
        success: *success,
        no_retry_backoff: *no_retry_backoff,
    }
}

fn wire_pipeline_response(response: &AppendEntriesResponse) -> pb::AppendEntriesPipelineResponse {
    let pb::AppendEntriesResponse {
        header,
        term,
        last_log,
        success,
        no_retry_backoff,
    } = wire_append_response(response);
    pb::AppendEntriesPipelineResponse {
        header,
        term,
        last_log,
        success,
        no_retry_backoff,
    }
}

fn wire_vote(request: &RequestVoteRequest) -> pb::RequestVoteRequest {
    let RequestVoteRequest {
        header,
        term,
        last_log_index,
        last_log_term,
        leadership_transfer,
        candidate,
    } = request;
    pb::RequestVoteRequest {
        header: wire_header(header),
        term: *term,
        last_log_index: *last_log_index,
        last_log_term: *last_log_term,
        leadership_transfer: *leadership_transfer,
        candidate: candidate.to_vec(),
    }
}

fn wire_vote_response(response: &RequestVoteResponse) -> pb::RequestVoteResponse {
    let RequestVoteResponse {
        header,
        term,
        peers,
        granted,
    } = response;
    pb::RequestVoteResponse {
        header: wire_header(header),
        term: *term,
        peers: peers.to_vec(),
        granted: *granted,
    }
}

fn wire_pre_vote(request: &RequestPreVoteRequest) -> pb::RequestPreVoteRequest {
    let RequestPreVoteRequest {
        header,
        term,
        last_log_index,
        last_log_term,
    } = request;
    pb::RequestPreVoteRequest {
        header: wire_header(header),
        term: *term,
        last_log_index: *last_log_index,
        last_log_term: *last_log_term,
    }
}

fn wire_pre_vote_response(response: &RequestPreVoteResponse) -> pb::RequestPreVoteResponse {
    let RequestPreVoteResponse {
        header,
        term,
        granted,
    } = response;
    pb::RequestPreVoteResponse {
        header: wire_header(header),
        term: *term,
        granted: *granted,
    }
}

fn wire_timeout_now(request: &TimeoutNowRequest) -> pb::TimeoutNowRequest {
    let TimeoutNowRequest { header } = request;
    pb::TimeoutNowRequest {
        header: wire_header(header),
    }
}

fn wire_timeout_now_response(response: &TimeoutNowResponse) -> pb::TimeoutNowResponse {
    let TimeoutNowResponse { header } = response;
    pb::TimeoutNowResponse {
        header: wire_header(header),
    }
}

/// The metadata message of a snapshot stream (no data, no checksum).
fn wire_snapshot_meta(meta: &InstallSnapshotRequest) -> pb::InstallSnapshotRequest {
    let InstallSnapshotRequest {
        header,
        snapshot_version,
        term,
        leader,
        last_log_index,
        last_log_term,
        peers,
        configuration,
        configuration_index,
        size,
    } = meta;
    pb::InstallSnapshotRequest {
        header: wire_header(header),
        term: *term,
        last_log_index: *last_log_index,
        last_log_term: *last_log_term,
        peers: peers.to_vec(),
        configuration: configuration.to_vec(),
        configuration_index: *configuration_index,
        size: i64::try_from(*size).unwrap(),
        data: Vec::new(),
        snapshot_version: *snapshot_version,
        leader: leader.to_vec(),
        data_crc32c: None,
    }
}

fn wire_snapshot_response(response: &InstallSnapshotResponse) -> pb::InstallSnapshotResponse {
    let InstallSnapshotResponse {
        header,
        term,
        success,
    } = response;
    pb::InstallSnapshotResponse {
        header: wire_header(header),
        term: *term,
        success: *success,
    }
}

// ---------------------------------------------------------------------------
// Requests with every field set.

fn leader_header() -> RpcHeader {
    RpcHeader::new(3, "leader-ünïcode", "10.1.2.3:7000")
}

fn all_log_types() -> [LogType; 7] {
    [
        LogType::Command,
        LogType::Noop,
        LogType::AddPeerDeprecated,
        LogType::RemovePeerDeprecated,
        LogType::Barrier,
        LogType::Configuration,
        LogType::Unknown(4_000_000_000),
    ]
}

/// An AppendEntries carrying one entry of every log type, each with data,
/// extensions and an append time (one before the Unix epoch: a negative
/// int64 on the wire), and the deprecated `leader`.
fn full_append(term: u64, first_index: u64) -> AppendEntriesRequest {
    let entries = all_log_types()
        .into_iter()
        .enumerate()
        .map(|(i, log_type)| {
            let index = first_index + i as u64;
            let appended_at = if i == 3 {
                UNIX_EPOCH - Duration::new(1, 500)
            } else {
                UNIX_EPOCH + Duration::new(1_700_000_000 + index, 123_456_789)
            };
            Log {
                index,
                term,
                log_type,
                data: Bytes::from(pseudo_random(100 + 997 * i, index)),
                extensions: Bytes::from(format!("ext-{index}-\u{2713}")),
                appended_at: Some(appended_at),
            }
        })
        .collect();
    AppendEntriesRequest {
        header: leader_header(),
        term,
        prev_log_entry: first_index - 1,
        prev_log_term: term - 1,
        entries,
        leader_commit_index: first_index - 2,
        leader: Bytes::from_static(b"10.1.2.3:7000-legacy"),
    }
}

/// What hashicorp/raft sends as a heartbeat: term, header, nothing else.
fn heartbeat(term: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: leader_header(),
        term,
        ..Default::default()
    }
}

/// The `i`th append of a pipeline: one entry, types cycling, half of them
/// with an append time.
fn pipeline_append(i: u64) -> AppendEntriesRequest {
    let types = all_log_types();
    AppendEntriesRequest {
        header: leader_header(),
        term: 9,
        prev_log_entry: i - 1,
        prev_log_term: 9,
        entries: vec![Log {
            index: i,
            term: 9,
            log_type: types[i as usize % types.len()],
            data: Bytes::from(format!("entry {i}")),
            extensions: if i % 3 == 0 {
                Bytes::new()
            } else {
                Bytes::from(vec![i as u8; 3])
            },
            appended_at: (i % 2 == 0).then(|| UNIX_EPOCH + Duration::from_nanos(i * 1_000_003)),
        }],
        leader_commit_index: i.saturating_sub(2),
        leader: if i % 5 == 0 {
            Bytes::from_static(b"legacy-leader")
        } else {
            Bytes::new()
        },
    }
}

fn full_vote() -> RequestVoteRequest {
    RequestVoteRequest {
        header: leader_header(),
        term: 11,
        last_log_index: 1_000_000_007,
        last_log_term: 10,
        leadership_transfer: true,
        candidate: Bytes::from_static(b"10.1.2.3:7000-candidate"),
    }
}

fn full_pre_vote() -> RequestPreVoteRequest {
    RequestPreVoteRequest {
        header: leader_header(),
        term: 12,
        last_log_index: u64::MAX,
        last_log_term: 1 << 40,
    }
}

fn full_timeout_now() -> TimeoutNowRequest {
    TimeoutNowRequest {
        header: leader_header(),
    }
}

fn full_snapshot_meta(size: usize) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: leader_header(),
        snapshot_version: 1,
        term: 13,
        leader: Bytes::from_static(b"10.1.2.3:7000-leader"),
        last_log_index: 5_000,
        last_log_term: 12,
        peers: Bytes::from_static(b"\x00legacy peer set\xff"),
        configuration: Bytes::from(pseudo_random(300, 77)),
        configuration_index: 4_321,
        size: size as u64,
    }
}

/// Deterministic bytes that are not all alike (xorshift).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// How a server answers.

/// The answers of a test server (tonic's or ours).
#[derive(Clone)]
enum Answer {
    /// As `reference::answer`.
    Reference,
    /// As `reference::answer`, plus the response fields it leaves at their
    /// defaults: `no_retry_backoff` set, RequestVote `peers` filled.
    Rich,
    /// Every call fails with this status (code, message, details).
    Fail(Code, &'static str, &'static [u8]),
    /// (tonic) Never answers within any test's deadline.
    Stall,
    /// (tonic) RequestVote answers with 5 MiB of `peers`, over our 4 MiB
    /// receive limit.
    Oversized,
}

const RICH_PEERS: &[u8] = b"legacy peers \x00\x01\x02";

/// Our side of [`Answer::Rich`]: what the reference answer lacks.
fn enrich(response: RaftResponse) -> RaftResponse {
    match response {
        RaftResponse::AppendEntries(r) => RaftResponse::AppendEntries(AppendEntriesResponse {
            no_retry_backoff: true,
            ..r
        }),
        RaftResponse::RequestVote(r) => RaftResponse::RequestVote(RequestVoteResponse {
            peers: Bytes::from_static(RICH_PEERS),
            ..r
        }),
        other => other,
    }
}

/// The reference AppendEntries answer, as our types, for checking what our
/// client got back.
fn expected_append_response(
    header: &RpcHeader,
    request: &AppendEntriesRequest,
    rich: bool,
) -> AppendEntriesResponse {
    AppendEntriesResponse {
        header: header.clone(),
        term: request.term,
        last_log: request
            .entries
            .last()
            .map_or(request.prev_log_entry, |e| e.index),
        success: true,
        no_retry_backoff: rich,
    }
}

fn tonic_status(code: Code, message: &str, details: &[u8]) -> tonic::Status {
    tonic::Status::with_details(
        tonic::Code::from_i32(code.as_i32()),
        message,
        Bytes::copy_from_slice(details),
    )
}

// ---------------------------------------------------------------------------
// The tonic server.

/// What the tonic server received.
#[derive(Debug, Default)]
struct TonicSeen {
    append: Vec<pb::AppendEntriesRequest>,
    vote: Vec<pb::RequestVoteRequest>,
    pre_vote: Vec<pb::RequestPreVoteRequest>,
    timeout_now: Vec<pb::TimeoutNowRequest>,
    pipeline: Vec<pb::AppendEntriesPipelineRequest>,
    snapshots: Vec<TonicSnapshot>,
    /// The `grpc-timeout` of every call, in arrival order, as tonic parsed
    /// the metadata.
    grpc_timeouts: Vec<Option<String>>,
}

/// One InstallSnapshot stream, as the tonic server checked it.
#[derive(Debug)]
struct TonicSnapshot {
    /// The first message, as received.
    meta: pb::InstallSnapshotRequest,
    /// Messages in the stream, the first included.
    messages: usize,
    /// Data bytes received.
    received: u64,
    /// CRC-32C of the data received.
    crc: u32,
    /// Departures from the wire contract.
    problems: Vec<String>,
}

struct TonicPeer {
    header: pb::RpcHeader,
    answer: Answer,
    seen: Arc<Mutex<TonicSeen>>,
}

impl TonicPeer {
    fn note<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned());
        lock(&self.seen).grpc_timeouts.push(timeout);
        match &self.answer {
            Answer::Fail(code, message, details) => Err(tonic_status(*code, message, details)),
            _ => Ok(()),
        }
    }

    async fn stall(&self) {
        if let Answer::Stall = self.answer {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    fn rich(&self) -> bool {
        matches!(self.answer, Answer::Rich)
    }

    /// The reference AppendEntries answer, in tonic's types.
    fn append_answer(
        &self,
        term: u64,
        prev: u64,
        entries: &[pb::Log],
    ) -> pb::AppendEntriesResponse {
        pb::AppendEntriesResponse {
            header: Some(self.header.clone()),
            term,
            last_log: entries.last().map_or(prev, |e| e.index),
            success: true,
            no_retry_backoff: self.rich(),
        }
    }
}

type PipelineStream =
    Pin<Box<dyn Stream<Item = Result<pb::AppendEntriesPipelineResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransportService for TonicPeer {
    type AppendEntriesPipelineStream = PipelineStream;

    async fn append_entries_pipeline(
        &self,
        request: tonic::Request<tonic::Streaming<pb::AppendEntriesPipelineRequest>>,
    ) -> Result<tonic::Response<PipelineStream>, tonic::Status> {
        self.note(&request)?;
        let seen = self.seen.clone();
        let header = self.header.clone();
        let rich = self.rich();
        let responses = request.into_inner().map(move |request| {
            let request = request?;
            let response = pb::AppendEntriesPipelineResponse {
                header: Some(header.clone()),
                term: request.term,
                last_log: request
                    .entries
                    .last()
                    .map_or(request.prev_log_entry, |e| e.index),
                success: true,
                no_retry_backoff: rich,
            };
            lock(&seen).pipeline.push(request);
            Ok(response)
        });
        Ok(tonic::Response::new(Box::pin(responses)))
    }

    async fn append_entries(
        &self,
        request: tonic::Request<pb::AppendEntriesRequest>,
    ) -> Result<tonic::Response<pb::AppendEntriesResponse>, tonic::Status> {
        self.note(&request)?;
        self.stall().await;
        let request = request.into_inner();
        let response = self.append_answer(request.term, request.prev_log_entry, &request.entries);
        lock(&self.seen).append.push(request);
        Ok(tonic::Response::new(response))
    }

    async fn request_vote(
        &self,
        request: tonic::Request<pb::RequestVoteRequest>,
    ) -> Result<tonic::Response<pb::RequestVoteResponse>, tonic::Status> {
        self.note(&request)?;
        self.stall().await;
        let request = request.into_inner();
        let peers = match self.answer {
            Answer::Rich => RICH_PEERS.to_vec(),
            Answer::Oversized => vec![b'p'; 5 * MIB],
            _ => Vec::new(),
        };
        let response = pb::RequestVoteResponse {
            header: Some(self.header.clone()),
            term: request.term,
            peers,
            granted: true,
        };
        lock(&self.seen).vote.push(request);
        Ok(tonic::Response::new(response))
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<tonic::Streaming<pb::InstallSnapshotRequest>>,
    ) -> Result<tonic::Response<pb::InstallSnapshotResponse>, tonic::Status> {
        // A failing server answers at once, without reading the stream.
        self.note(&request)?;
        let mut stream = request.into_inner();
        let Some(meta) = stream.message().await? else {
            return Err(tonic::Status::invalid_argument("no metadata message"));
        };
        let mut problems = Vec::new();
        if !meta.data.is_empty() || meta.data_crc32c.is_some() {
            problems.push("the metadata message carries data".to_owned());
        }
        let (mut messages, mut received, mut crc) = (1, 0u64, 0u32);
        while let Some(mut message) = stream.message().await? {
            messages += 1;
            let data = std::mem::take(&mut message.data);
            let data_crc32c = message.data_crc32c.take();
            if data.is_empty() {
                problems.push(format!("message {messages} has empty data"));
            }
            if message != pb::InstallSnapshotRequest::default() {
                problems.push(format!("message {messages} carries metadata: {message:?}"));
            }
            crc = crc32c::crc32c_append(crc, &data);
            received += data.len() as u64;
            match data_crc32c {
                Some(sent) if sent == crc => {}
                Some(sent) => problems.push(format!(
                    "message {messages}: running crc {sent:#x}, bytes give {crc:#x}"
                )),
                None => problems.push(format!("message {messages} has no running crc")),
            }
        }
        if i64::try_from(received) != Ok(meta.size) {
            problems.push(format!("{received} bytes for a size of {}", meta.size));
        }
        let response = pb::InstallSnapshotResponse {
            header: Some(self.header.clone()),
            term: meta.term,
            success: problems.is_empty(),
        };
        lock(&self.seen).snapshots.push(TonicSnapshot {
            meta,
            messages,
            received,
            crc,
            problems,
        });
        Ok(tonic::Response::new(response))
    }

    async fn timeout_now(
        &self,
        request: tonic::Request<pb::TimeoutNowRequest>,
    ) -> Result<tonic::Response<pb::TimeoutNowResponse>, tonic::Status> {
        self.note(&request)?;
        self.stall().await;
        lock(&self.seen).timeout_now.push(request.into_inner());
        Ok(tonic::Response::new(pb::TimeoutNowResponse {
            header: Some(self.header.clone()),
        }))
    }

    async fn request_pre_vote(
        &self,
        request: tonic::Request<pb::RequestPreVoteRequest>,
    ) -> Result<tonic::Response<pb::RequestPreVoteResponse>, tonic::Status> {
        self.note(&request)?;
        self.stall().await;
        let request = request.into_inner();
        let response = pb::RequestPreVoteResponse {
            header: Some(self.header.clone()),
            term: request.term,
            granted: true,
        };
        lock(&self.seen).pre_vote.push(request);
        Ok(tonic::Response::new(response))
    }
}

/// A tonic server on a loopback port, on the current tokio runtime.
struct TonicServer {
    addr: String,
    seen: Arc<Mutex<TonicSeen>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TonicServer {
    async fn start(answer: Answer) -> TonicServer {
        TonicServer::start_with(answer, None).await
    }

    /// A tonic server with `tls` (rustls) when given.
    async fn start_with(
        answer: Answer,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> TonicServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(TonicSeen::default()));
        let peer = TonicPeer {
            header: tonic_header(&addr),
            answer,
            seen: seen.clone(),
        };
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let task = tokio::spawn(
            builder
                .add_service(RaftTransportServiceServer::new(peer))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stop.await;
                    },
                ),
        );
        TonicServer {
            addr,
            seen,
            shutdown,
            task,
        }
    }

    /// The header the tonic server answers with, as our types.
    fn header(&self) -> RpcHeader {
        RpcHeader::new(3, "tonic-server", self.addr.clone())
    }

    fn seen(&self) -> MutexGuard<'_, TonicSeen> {
        lock(&self.seen)
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn tonic_header(addr: &str) -> pb::RpcHeader {
    pb::RpcHeader {
        protocol_version: 3,
        id: b"tonic-server".to_vec(),
        addr: addr.as_bytes().to_vec(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn rust_client(config: Config) -> GrpcTransport {
    GrpcTransport::builder("rust-client", config).build()
}

/// The status of a failed call of ours (panics on anything else).
fn status_of<T: std::fmt::Debug>(result: Result<T, TransportError>) -> Status {
    match result {
        Err(TransportError::Status(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 1. Our client → tonic server.

#[test]
fn interop_tonic_server_from_rust_client_every_unary_rpc() {
    multi_thread().block_on(async {
        let tonic = TonicServer::start(Answer::Reference).await;
        let client = rust_client(Config::default());
        let target = tonic.addr.as_str();
        let header = tonic.header();

        let append = full_append(7, 100);
        let response = client.append_entries(target, append.clone()).await.unwrap();
        assert_eq!(response, expected_append_response(&header, &append, false));
        assert_eq!(response.last_log, 106);

        let beat = heartbeat(7);
        let response = client.append_entries(target, beat.clone()).await.unwrap();
        assert_eq!(response, expected_append_response(&header, &beat, false));

        let vote = full_vote();
        let response = client.request_vote(target, vote.clone()).await.unwrap();
        assert_eq!(
            response,
            RequestVoteResponse {
                header: header.clone(),
                term: 11,
                peers: Bytes::new(),
                granted: true,
            }
        );

        let pre_vote = full_pre_vote();
        let response = client
            .request_pre_vote(target, pre_vote.clone())
            .await
            .unwrap();
        assert_eq!(
            response,
            RequestPreVoteResponse {
                header: header.clone(),
                term: 12,
                granted: true,
            }
        );

        let timeout_now = full_timeout_now();
        let response = client
            .timeout_now(target, timeout_now.clone())
            .await
            .unwrap();
        assert_eq!(
            response,
            TimeoutNowResponse {
                header: header.clone()
            }
        );

        {
            let seen = tonic.seen();
            assert_eq!(seen.append, vec![wire_append(&append), wire_append(&beat)]);
            assert_eq!(seen.vote, vec![wire_vote(&vote)]);
            assert_eq!(seen.pre_vote, vec![wire_pre_vote(&pre_vote)]);
            assert_eq!(seen.timeout_now, vec![wire_timeout_now(&timeout_now)]);
            // Every call carried a deadline tonic could read: at most our
            // 10 s RPC timeout, in one of gRPC's units.
            assert_eq!(seen.grpc_timeouts.len(), 5);
            for timeout in &seen.grpc_timeouts {
                let timeout = timeout.as_deref().expect("grpc-timeout sent");
                assert!(
                    parse_grpc_timeout(timeout) <= Duration::from_secs(10),
                    "{timeout}"
                );
                assert!(
                    parse_grpc_timeout(timeout) > Duration::from_secs(5),
                    "{timeout}"
                );
            }
        }
        client.close().await;
        tonic.stop().await;
    });
}

/// A `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits and a unit).
fn parse_grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    assert!(!digits.is_empty() && digits.len() <= 8, "{value}");
    let n: u64 = digits.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("bad grpc-timeout unit in {value}"),
    }
}

#[test]
fn interop_tonic_server_from_rust_client_16_mib_snapshot() {
    multi_thread().block_on(async {
        let tonic = TonicServer::start(Answer::Reference).await;
        let client = rust_client(Config::default());
        let data = pseudo_random(SNAPSHOT_SIZE, 42);
        let meta = full_snapshot_meta(SNAPSHOT_SIZE);
        let response = client
            .install_snapshot(
                &tonic.addr,
                meta.clone(),
                futures_lite::io::Cursor::new(data.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            response,
            InstallSnapshotResponse {
                header: tonic.header(),
                term: 13,
                success: true,
            }
        );
        {
            let seen = tonic.seen();
            assert_eq!(seen.snapshots.len(), 1);
            let snapshot = &seen.snapshots[0];
            assert_eq!(snapshot.problems, Vec::<String>::new());
            assert_eq!(snapshot.meta, wire_snapshot_meta(&meta));
            assert_eq!(snapshot.received, SNAPSHOT_SIZE as u64);
            assert_eq!(snapshot.crc, crc32c::crc32c(&data));
            // 1 MiB chunks by default: the metadata, then 17 data messages.
            assert_eq!(snapshot.messages, 1 + SNAPSHOT_SIZE.div_ceil(MIB));
        }
        client.close().await;
        tonic.stop().await;
    });
}

#[test]
fn interop_tonic_server_from_rust_client_pipeline_of_2000_appends() {
    multi_thread().block_on(async {
        let tonic = TonicServer::start(Answer::Reference).await;
        let client = rust_client(Config::default());
        let header = tonic.header();
        let pipeline = client.append_entries_pipeline(&tonic.addr).await.unwrap();
        let sender = async {
            for i in 1..=PIPELINED {
                assert_eq!(pipeline.append(&pipeline_append(i)).await.unwrap(), i - 1);
            }
        };
        let receiver = async {
            for i in 1..=PIPELINED {
                let (seq, response) = pipeline.next().await.unwrap();
                assert_eq!(seq, i - 1, "completions in send order");
                assert_eq!(
                    response.unwrap(),
                    expected_append_response(&header, &pipeline_append(i), false)
                );
            }
        };
        futures_lite::future::zip(sender, receiver).await;
        pipeline.close();
        assert!(pipeline.next().await.is_none());
        {
            let seen = tonic.seen();
            assert_eq!(seen.pipeline.len(), PIPELINED as usize);
            for (i, received) in (1..).zip(&seen.pipeline) {
                assert_eq!(*received, wire_pipeline_append(&pipeline_append(i)));
            }
            assert!(seen.append.is_empty(), "the pipeline is its own RPC");
        }
        client.close().await;
        tonic.stop().await;
    });
}

#[test]
fn interop_tonic_server_every_response_field_reaches_rust_client() {
    multi_thread().block_on(async {
        let tonic = TonicServer::start(Answer::Rich).await;
        let client = rust_client(Config::default());
        let target = tonic.addr.as_str();
        let header = tonic.header();

        let append = full_append(21, 10);
        assert_eq!(
            client.append_entries(target, append.clone()).await.unwrap(),
            expected_append_response(&header, &append, true)
        );
        assert_eq!(
            client.request_vote(target, full_vote()).await.unwrap(),
            RequestVoteResponse {
                header: header.clone(),
                term: 11,
                peers: Bytes::from_static(RICH_PEERS),
                granted: true,
            }
        );
        let pipeline = client.append_entries_pipeline(target).await.unwrap();
        pipeline.append(&pipeline_append(1)).await.unwrap();
        let (_, response) = pipeline.next().await.unwrap();
        assert_eq!(
            response.unwrap(),
            expected_append_response(&header, &pipeline_append(1), true)
        );
        pipeline.close();
        client.close().await;
        tonic.stop().await;
    });
}

#[test]
fn interop_tonic_server_status_reaches_rust_client() {
    const MESSAGE: &str = "tonic says no: ünïcode ✓ 100% \r\n done";
    const DETAILS: &[u8] = b"\x08\x0e\x12\x05oops\xff";
    multi_thread().block_on(async {
        let tonic = TonicServer::start(Answer::Fail(Code::Unavailable, MESSAGE, DETAILS)).await;
        let client = rust_client(Config::default());
        let target = tonic.addr.as_str();
        let check = |status: Status| {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(status.message(), MESSAGE);
            assert_eq!(&status.details()[..], DETAILS);
        };
        check(status_of(
            client.append_entries(target, full_append(7, 100)).await,
        ));
        check(status_of(client.append_entries(target, heartbeat(7)).await));
        check(status_of(client.request_vote(target, full_vote()).await));
        check(status_of(
            client.request_pre_vote(target, full_pre_vote()).await,
        ));
        check(status_of(
            client.timeout_now(target, full_timeout_now()).await,
        ));
        // The server fails the snapshot without reading it: our client must
        // report the status, not the reset of the stream it was writing.
        let data = pseudo_random(8 * MIB, 3);
        check(status_of(
            client
                .install_snapshot(
                    target,
                    full_snapshot_meta(data.len()),
                    futures_lite::io::Cursor::new(data),
                )
                .await,
        ));
        // A pipeline the server refuses: opening it fails with the status,
        // or (when the stream was open before the answer came) its first
        // append does. Which one is a race, as with grpc-go.
        match client.append_entries_pipeline(target).await {
            Err(e) => check(status_of::<()>(Err(e))),
            Ok(pipeline) => {
                let error = match pipeline.append(&pipeline_append(1)).await {
                    Err(e) => e,
                    Ok(_) => pipeline.next().await.unwrap().1.unwrap_err(),
                };
                check(status_of::<()>(Err(error)));
            }
        }
        assert_eq!(
            tonic.seen().grpc_timeouts.len(),
            7,
            "every call reached tonic"
        );
        client.close().await;
        tonic.stop().await;
    });
}

#[test]
fn interop_tonic_server_too_slow_or_oversized_fails_rust_client() {
    multi_thread().block_on(async {
        // A tonic server that does not answer in time: our deadline.
        let slow = TonicServer::start(Answer::Stall).await;
        let client = rust_client(Config::default().with_rpc_timeout(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        let status = status_of(client.request_vote(&slow.addr, full_vote()).await);
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let sent = slow.seen().grpc_timeouts[0].clone().unwrap();
        assert!(
            parse_grpc_timeout(&sent) <= Duration::from_millis(300),
            "{sent}"
        );
        client.close().await;
        slow.stop().await;

        // A tonic server whose answer is over our 4 MiB receive limit.
        let big = TonicServer::start(Answer::Oversized).await;
        let client = rust_client(Config::default());
        let status = status_of(client.request_vote(&big.addr, full_vote()).await);
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // The connection still serves other calls.
        client
            .request_pre_vote(&big.addr, full_pre_vote())
            .await
            .unwrap();
        client.close().await;
        big.stop().await;
    });
}

// ---------------------------------------------------------------------------
// 2. tonic client → our server.

/// What our server's consumer and heartbeat handler received.
#[derive(Debug, Default)]
struct RustSeen {
    /// Requests the consumer took, in order.
    requests: Vec<RaftRequest>,
    /// Heartbeats the heartbeat handler answered.
    heartbeats: Vec<AppendEntriesRequest>,
    /// Every snapshot's data as the consumer read it: bytes, CRC-32C, and
    /// the error that ended it, if one did.
    snapshots: Vec<(u64, u32, Option<String>)>,
}

/// Our transport, serving on loopback, its consumer answering with
/// `reference::answer` (through [`Answer`]).
struct RustServer {
    transport: GrpcTransport,
    seen: Arc<Mutex<RustSeen>>,
}

impl RustServer {
    async fn start(answer: Answer) -> RustServer {
        RustServer::start_with(
            answer,
            GrpcTransport::builder("127.0.0.1:0", Config::default()),
        )
        .await
    }

    /// The server `builder` binds (TLS, say).
    async fn start_with(answer: Answer, builder: raft_grpc_transport_smol::Builder) -> RustServer {
        let transport = builder.bind().await.unwrap();
        let seen = Arc::new(Mutex::new(RustSeen::default()));
        let header = rust_header(transport.local_addr());
        {
            let (seen, header) = (seen.clone(), header.clone());
            transport.set_heartbeat_handler(Some(Arc::new(
                move |request: &AppendEntriesRequest, _: &raft_grpc_transport_smol::PeerInfo| {
                    lock(&seen).heartbeats.push(request.clone());
                    Ok(expected_append_response(&header, request, false))
                },
            )));
        }
        let consumer = transport.consumer();
        let log = seen.clone();
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                serve_one(rpc, header.clone(), &answer, &log).await;
            }
        })
        .detach();
        RustServer { transport, seen }
    }

    fn addr(&self) -> String {
        format!("http://{}", self.transport.local_addr())
    }

    fn header(&self) -> RpcHeader {
        rust_header(self.transport.local_addr())
    }

    fn seen(&self) -> MutexGuard<'_, RustSeen> {
        lock(&self.seen)
    }
}

fn rust_header(addr: &str) -> RpcHeader {
    RpcHeader::new(3, "rust-server", addr.to_owned())
}

/// Records one RPC (reading a snapshot's data to its end) and answers it.
async fn serve_one(rpc: Rpc, header: RpcHeader, answer: &Answer, seen: &Mutex<RustSeen>) {
    let Rpc {
        request,
        responder,
        snapshot,
        ..
    } = rpc;
    lock(seen).requests.push(request.clone());
    // Read the snapshot here to check its bytes, then hand the same chunks
    // (no copies) to the reference responder.
    let snapshot = match snapshot {
        Some(mut reader) => {
            let size = reader.size();
            let (mut chunks, mut received, mut crc, mut error) = (Vec::new(), 0u64, 0u32, None);
            loop {
                match reader.chunk().await {
                    Ok(Some(chunk)) => {
                        received += chunk.len() as u64;
                        crc = crc32c::crc32c_append(crc, &chunk);
                        chunks.push(chunk);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            lock(seen).snapshots.push((received, crc, error.clone()));
            let failure = error.map(|e| Status::new(Code::DataLoss, e));
            Some(SnapshotReader::new(
                SnapshotBytes::new(chunks, failure),
                size,
            ))
        }
        None => None,
    };
    match answer {
        Answer::Fail(code, message, details) => {
            responder.respond(Err(
                Status::new(*code, *message).with_details(Bytes::from_static(details))
            ));
        }
        Answer::Rich => {
            let responder = Responder::new(move |result| responder.respond(result.map(enrich)));
            let rpc = Rpc::new(request, responder, snapshot);
            raft_grpc_transport_api::reference::answer(rpc, header).await;
        }
        _ => {
            let rpc = Rpc::new(request, responder, snapshot);
            raft_grpc_transport_api::reference::answer(rpc, header).await;
        }
    }
}

async fn tonic_client(
    server: &RustServer,
) -> RaftTransportServiceClient<tonic::transport::Channel> {
    RaftTransportServiceClient::connect(server.addr())
        .await
        .unwrap()
}

#[test]
fn interop_tonic_client_to_rust_server_every_unary_rpc() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let header = server.header();
        let mut client = tonic_client(&server).await;

        let append = full_append(7, 100);
        let response = client.append_entries(wire_append(&append)).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_append_response(&expected_append_response(&header, &append, false))
        );

        // A heartbeat goes to the heartbeat handler, not the consumer.
        let beat = heartbeat(7);
        let response = client.append_entries(wire_append(&beat)).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_append_response(&expected_append_response(&header, &beat, false))
        );

        let vote = full_vote();
        let response = client.request_vote(wire_vote(&vote)).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_vote_response(&RequestVoteResponse {
                header: header.clone(),
                term: 11,
                peers: Bytes::new(),
                granted: true,
            })
        );

        let pre_vote = full_pre_vote();
        let response = client
            .request_pre_vote(wire_pre_vote(&pre_vote))
            .await
            .unwrap();
        assert_eq!(
            response.into_inner(),
            wire_pre_vote_response(&RequestPreVoteResponse {
                header: header.clone(),
                term: 12,
                granted: true,
            })
        );

        let timeout_now = full_timeout_now();
        let mut request = tonic::Request::new(wire_timeout_now(&timeout_now));
        request.set_timeout(Duration::from_secs(3));
        let response = client.timeout_now(request).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_timeout_now_response(&TimeoutNowResponse {
                header: header.clone()
            })
        );

        {
            let seen = server.seen();
            assert_eq!(
                seen.requests,
                vec![
                    RaftRequest::AppendEntries(append),
                    RaftRequest::RequestVote(vote),
                    RaftRequest::RequestPreVote(pre_vote),
                    RaftRequest::TimeoutNow(timeout_now),
                ]
            );
            assert_eq!(seen.heartbeats, vec![beat]);
        }
        server.transport.close().await;
    });
}

/// A snapshot stream as the Go library sends it: the metadata alone, then
/// data messages (here of varied sizes, none empty, no checksum), then the
/// half-close. With `crc`, every data message carries the running
/// CRC-32C, as our sender does.
fn snapshot_messages(
    meta: &InstallSnapshotRequest,
    data: &[u8],
    crc: bool,
) -> Vec<pb::InstallSnapshotRequest> {
    let sizes = [MIB, 32 * 1024, 777, 3 * MIB, 1];
    let mut messages = vec![wire_snapshot_meta(meta)];
    let (mut offset, mut running) = (0, 0u32);
    for size in sizes.iter().cycle() {
        if offset == data.len() {
            break;
        }
        let chunk = &data[offset..(offset + size).min(data.len())];
        offset += chunk.len();
        running = crc32c::crc32c_append(running, chunk);
        messages.push(pb::InstallSnapshotRequest {
            data: chunk.to_vec(),
            data_crc32c: crc.then_some(running),
            ..Default::default()
        });
    }
    messages
}

#[test]
fn interop_tonic_client_to_rust_server_go_style_16_mib_snapshots() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let mut client = tonic_client(&server).await;
        let data = pseudo_random(SNAPSHOT_SIZE, 9);
        let meta = full_snapshot_meta(SNAPSHOT_SIZE);
        let expected = wire_snapshot_response(&InstallSnapshotResponse {
            header: server.header(),
            term: 13,
            success: true,
        });
        // As the Go library sends it, then with running checksums.
        for crc in [false, true] {
            let messages = snapshot_messages(&meta, &data, crc);
            assert!(messages.len() > 10);
            let response = client
                .install_snapshot(tokio_stream::iter(messages))
                .await
                .unwrap();
            assert_eq!(response.into_inner(), expected, "crc {crc}");
        }
        // Jille's Go transport puts data in the first message: accepted.
        let mut messages = snapshot_messages(&meta, &data, false);
        let second = messages.remove(1);
        messages[0].data = second.data;
        let response = client
            .install_snapshot(tokio_stream::iter(messages))
            .await
            .unwrap();
        assert_eq!(response.into_inner(), expected);

        {
            let seen = server.seen();
            assert_eq!(
                seen.requests,
                vec![RaftRequest::InstallSnapshot(meta); 3],
                "every metadata field arrived"
            );
            let whole = (SNAPSHOT_SIZE as u64, crc32c::crc32c(&data), None);
            assert_eq!(seen.snapshots, vec![whole.clone(), whole.clone(), whole]);
        }
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_bad_snapshot_streams_are_data_loss() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let mut client = tonic_client(&server).await;
        let data = pseudo_random(4 * MIB + 3, 5);
        let meta = full_snapshot_meta(data.len());

        // A corrupted chunk: its running checksum does not match.
        let mut corrupted = snapshot_messages(&meta, &data, true);
        corrupted[3].data[10] ^= 0x40;
        // Short: the last data message is missing.
        let mut short = snapshot_messages(&meta, &data, false);
        short.pop();
        // Long: one byte more than the declared size.
        let mut long = snapshot_messages(&meta, &data, false);
        long.push(pb::InstallSnapshotRequest {
            data: vec![1],
            ..Default::default()
        });
        for (what, messages) in [("corrupted", corrupted), ("short", short), ("long", long)] {
            let status = client
                .install_snapshot(tokio_stream::iter(messages))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::DataLoss, "{what}: {status:?}");
            assert!(status.message().contains("snapshot"), "{what}: {status:?}");
        }
        // The server keeps serving, on the same connection.
        let good = snapshot_messages(&meta, &data, true);
        let response = client
            .install_snapshot(tokio_stream::iter(good))
            .await
            .unwrap();
        assert!(response.into_inner().success);
        {
            // The consumer saw three failed snapshots and one whole one.
            let seen = server.seen();
            assert_eq!(seen.snapshots.len(), 4);
            for (received, _, error) in &seen.snapshots[..3] {
                assert!(error.is_some(), "{received} bytes, no error");
            }
            assert_eq!(
                seen.snapshots[3],
                (data.len() as u64, crc32c::crc32c(&data), None)
            );
        }
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_to_rust_server_pipeline_of_2000_appends() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let header = server.header();
        let mut client = tonic_client(&server).await;
        // A bounded channel: tonic sends while responses come back.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let sender = tokio::spawn(async move {
            for i in 1..=PIPELINED {
                tx.send(wire_pipeline_append(&pipeline_append(i)))
                    .await
                    .unwrap();
            }
            // Dropping the sender half-closes the stream.
        });
        let mut responses = client
            .append_entries_pipeline(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for i in 1..=PIPELINED {
            let response = responses.message().await.unwrap().expect("a response");
            assert_eq!(
                response,
                wire_pipeline_response(&expected_append_response(
                    &header,
                    &pipeline_append(i),
                    false
                )),
                "response {i} in order"
            );
        }
        assert_eq!(responses.message().await.unwrap(), None, "then OK");
        sender.await.unwrap();
        {
            let seen = server.seen();
            let expected: Vec<_> = (1..=PIPELINED)
                .map(|i| RaftRequest::AppendEntries(pipeline_append(i)))
                .collect();
            assert_eq!(seen.requests, expected);
        }
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_that_opens_a_pipeline_before_sending_gets_its_head_at_once() {
    // tonic's generated client returns from opening a bidirectional stream
    // only once the response head arrived: a client that sends its first
    // append after that waits for the head, which our server sends at once.
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let header = server.header();
        let mut client = tonic_client(&server).await;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let opened = tokio::time::timeout(
            Duration::from_secs(5),
            client.append_entries_pipeline(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .expect("the response head came before any append was sent");
        let mut responses = opened.unwrap().into_inner();
        for i in 1..=10 {
            tx.send(wire_pipeline_append(&pipeline_append(i)))
                .await
                .unwrap();
            let response = responses.message().await.unwrap().expect("a response");
            assert_eq!(
                response,
                wire_pipeline_response(&expected_append_response(
                    &header,
                    &pipeline_append(i),
                    false
                ))
            );
        }
        drop(tx);
        assert_eq!(responses.message().await.unwrap(), None, "then OK");
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_reads_every_response_field_from_rust_server() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Rich).await;
        let header = server.header();
        let mut client = tonic_client(&server).await;
        let append = full_append(21, 10);
        let response = client.append_entries(wire_append(&append)).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_append_response(&expected_append_response(&header, &append, true))
        );
        let response = client.request_vote(wire_vote(&full_vote())).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_vote_response(&RequestVoteResponse {
                header: header.clone(),
                term: 11,
                peers: Bytes::from_static(RICH_PEERS),
                granted: true,
            })
        );
        let request = wire_pipeline_append(&pipeline_append(1));
        let mut responses = client
            .append_entries_pipeline(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            responses.message().await.unwrap(),
            Some(wire_pipeline_response(&expected_append_response(
                &header,
                &pipeline_append(1),
                true
            )))
        );
        assert_eq!(responses.message().await.unwrap(), None);
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_gets_rust_server_status() {
    const MESSAGE: &str = "rust says no: ünïcode ✓ 100% \r\n done";
    const DETAILS: &[u8] = b"\x08\x09\x12\x03why\x00";
    current_thread().block_on(async {
        let server =
            RustServer::start(Answer::Fail(Code::FailedPrecondition, MESSAGE, DETAILS)).await;
        let mut client = tonic_client(&server).await;
        let check = |status: tonic::Status| {
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
            assert_eq!(status.message(), MESSAGE);
            assert_eq!(status.details(), DETAILS);
        };
        check(
            client
                .append_entries(wire_append(&full_append(7, 100)))
                .await
                .unwrap_err(),
        );
        check(
            client
                .request_vote(wire_vote(&full_vote()))
                .await
                .unwrap_err(),
        );
        check(
            client
                .request_pre_vote(wire_pre_vote(&full_pre_vote()))
                .await
                .unwrap_err(),
        );
        check(
            client
                .timeout_now(wire_timeout_now(&full_timeout_now()))
                .await
                .unwrap_err(),
        );
        let data = pseudo_random(2 * MIB, 1);
        let messages = snapshot_messages(&full_snapshot_meta(data.len()), &data, false);
        check(
            client
                .install_snapshot(tokio_stream::iter(messages))
                .await
                .unwrap_err(),
        );
        // On a pipeline the status ends the response stream.
        let request = wire_pipeline_append(&pipeline_append(1));
        match client
            .append_entries_pipeline(tokio_stream::iter([request]))
            .await
        {
            Err(status) => check(status),
            Ok(response) => check(response.into_inner().message().await.unwrap_err()),
        }
        assert_eq!(
            server.seen().requests.len(),
            6,
            "every call reached the consumer"
        );
        server.transport.close().await;
    });
}

#[test]
fn interop_tonic_client_oversized_message_is_resource_exhausted() {
    current_thread().block_on(async {
        let server = RustServer::start(Answer::Reference).await;
        let mut client = tonic_client(&server).await;
        let mut big = full_append(7, 100);
        big.entries[0].data = Bytes::from(vec![7u8; 5 * MIB]);

        let status = client.append_entries(wire_append(&big)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

        // On a pipeline: the first append is answered, then the oversized
        // one fails the stream. (Sent only once the first is answered: a
        // stream that fails drops the answers still pending on it.)
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(wire_pipeline_append(&pipeline_append(1)))
            .await
            .unwrap();
        let mut responses = client
            .append_entries_pipeline(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert!(responses.message().await.unwrap().unwrap().success);
        tx.send(wire_pipeline_append(&big)).await.unwrap();
        let status = responses.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        drop(tx);

        // The server keeps serving, on the same connection.
        let small = full_append(7, 100);
        assert!(
            client
                .append_entries(wire_append(&small))
                .await
                .unwrap()
                .into_inner()
                .success
        );
        assert_eq!(
            server.seen().requests,
            vec![
                RaftRequest::AppendEntries(pipeline_append(1)),
                RaftRequest::AppendEntries(small),
            ],
            "no oversized request reached the consumer"
        );
        server.transport.close().await;
    });
}

// ---------------------------------------------------------------------------
// 3. Over mutual TLS: tonic's rustls TLS against ours, both ways.

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM.
struct TlsPems {
    ca: String,
    server: (String, String),
    client: (String, String),
}

impl TlsPems {
    fn new() -> TlsPems {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        TlsPems {
            server: leaf("127.0.0.1"),
            client: leaf("raft-client"),
            ca: ca.pem(),
        }
    }
}

#[test]
fn interop_tonic_tls_server_from_rust_client_over_mutual_tls() {
    use raft_grpc_transport_smol::tls::TlsClient;
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    multi_thread().block_on(async {
        let pems = TlsPems::new();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pems.server.0, &pems.server.1))
            .client_ca_root(Certificate::from_pem(&pems.ca));
        let tonic = TonicServer::start_with(Answer::Reference, Some(tls)).await;
        let client_tls = TlsClient::from_pem_roots(pems.ca.as_bytes())
            .unwrap()
            .with_client_cert_pem(pems.client.0.as_bytes(), pems.client.1.as_bytes())
            .unwrap();
        let client = GrpcTransport::builder("rust-client", Config::default())
            .tls_client(client_tls)
            .build();
        let target = tonic.addr.as_str();
        let header = tonic.header();

        let append = full_append(7, 100);
        let response = client.append_entries(target, append.clone()).await.unwrap();
        assert_eq!(response, expected_append_response(&header, &append, false));
        let vote = client.request_vote(target, full_vote()).await.unwrap();
        assert!(vote.granted && vote.header == header);
        let pre_vote = client
            .request_pre_vote(target, full_pre_vote())
            .await
            .unwrap();
        assert!(pre_vote.granted);
        client
            .timeout_now(target, full_timeout_now())
            .await
            .unwrap();
        let size = 16 << 20;
        let data = pseudo_random(size, 7);
        let response = client
            .install_snapshot(
                target,
                full_snapshot_meta(size),
                futures_lite::io::Cursor::new(data.clone()),
            )
            .await
            .unwrap();
        assert!(response.success);
        let pipeline = client.append_entries_pipeline(target).await.unwrap();
        for i in 1..=200 {
            pipeline.append(&pipeline_append(i)).await.unwrap();
        }
        for i in 1..=200 {
            let (_, response) = pipeline.next().await.unwrap();
            assert_eq!(response.unwrap().last_log, i);
        }
        pipeline.close();
        {
            let seen = tonic.seen();
            assert_eq!(seen.append.len(), 1);
            assert_eq!(seen.vote.len(), 1);
        }

        // tonic refuses a client without a certificate.
        let anonymous = GrpcTransport::builder("rust-client", Config::default())
            .tls_client(TlsClient::from_pem_roots(pems.ca.as_bytes()).unwrap())
            .build();
        let status = status_of(anonymous.request_vote(target, full_vote()).await);
        assert_eq!(status.code(), Code::Unavailable, "{status}");
        client.close().await;
        anonymous.close().await;
        tonic.stop().await;
    });
}

#[test]
fn interop_tonic_tls_client_to_rust_server_over_mutual_tls() {
    use raft_grpc_transport_smol::tls::TlsServer;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    current_thread().block_on(async {
        let pems = TlsPems::new();
        let server_tls = TlsServer::mutual_from_pem(
            pems.server.0.as_bytes(),
            pems.server.1.as_bytes(),
            pems.ca.as_bytes(),
        )
        .unwrap();
        let server = RustServer::start_with(
            Answer::Reference,
            GrpcTransport::builder("127.0.0.1:0", Config::default()).tls_server(server_tls),
        )
        .await;
        let header = server.header();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pems.ca))
            .identity(Identity::from_pem(&pems.client.0, &pems.client.1))
            .domain_name("127.0.0.1");
        let channel = Channel::from_shared(format!("https://{}", server.transport.local_addr()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = RaftTransportServiceClient::new(channel);

        let append = full_append(7, 100);
        let response = client.append_entries(wire_append(&append)).await.unwrap();
        assert_eq!(
            response.into_inner(),
            wire_append_response(&expected_append_response(&header, &append, false))
        );
        let response = client.request_vote(wire_vote(&full_vote())).await.unwrap();
        assert!(response.into_inner().granted);
        let response = client
            .request_pre_vote(wire_pre_vote(&full_pre_vote()))
            .await
            .unwrap();
        assert!(response.into_inner().granted);
        client
            .timeout_now(wire_timeout_now(&full_timeout_now()))
            .await
            .unwrap();
        assert_eq!(
            server.seen().requests.len(),
            4,
            "every call reached the consumer"
        );

        // A tonic client without a certificate cannot connect.
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pems.ca))
            .domain_name("127.0.0.1");
        let refused = async {
            let channel =
                Channel::from_shared(format!("https://{}", server.transport.local_addr()))
                    .unwrap()
                    .tls_config(tls)
                    .unwrap()
                    .connect()
                    .await?;
            RaftTransportServiceClient::new(channel)
                .request_vote(wire_vote(&full_vote()))
                .await
                .map_err(|status| Box::new(status) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        assert!(
            refused.await.is_err(),
            "a client without a certificate is refused"
        );
        server.transport.close().await;
    });
}
