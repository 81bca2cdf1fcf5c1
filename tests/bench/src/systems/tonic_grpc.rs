//! `tonic`: the same service written the usual way in Rust — tonic 0.14 on
//! a current_thread tokio runtime in each process (the reference point for
//! a Rust gRPC service on one thread), with code generated from our
//! `.proto` by build.rs (prost messages with `Bytes` payloads).
//!
//! HTTP/2 settings are ours (1 MiB max frame size, 1 MiB stream window,
//! 16 MiB connection window, TCP_NODELAY), so that the comparison is about
//! the implementation, not the settings; message limits are gRPC's 4 MiB.
//!
//! Server: like ours, a Raft-shaped consumer — handlers pass AppendEntries
//! to one consumer task through a channel (64 deep) and wait for its
//! answer; heartbeats are answered in the handler (the fast path is a few
//! lines here). The pipeline handler dispatches each request as it arrives
//! and sends the answers back in order.
//!
//! Client: `RaftTransportServiceClient` over one `Channel`; the pipeline is
//! the bidi `AppendEntriesPipeline` stream with [`WINDOW`] requests
//! unanswered at most.
//!
//! `tonic-tls` is the same over tonic's rustls TLS (`tls-ring`), with the
//! certificates of [`super::tls`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use super::{WINDOW, latency_report};
use crate::protocol::{ClientArgs, ClientReport, Scenario};

/// The generated prost messages, server trait and client.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("proto.raft.v1");
}

use pb::raft_transport_service_client::RaftTransportServiceClient;
use pb::raft_transport_service_server::{RaftTransportService, RaftTransportServiceServer};

const MAX_MESSAGE: usize = 4 << 20;
pub(super) const STREAM_WINDOW: u32 = 1 << 20;
pub(super) const CONNECTION_WINDOW: u32 = 16 << 20;
pub(super) const MAX_FRAME: u32 = 1 << 20;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tonic: runtime: {e}"))
}

/// One AppendEntries for the consumer, and where its answer goes.
struct Job {
    request: pb::AppendEntriesRequest,
    reply: oneshot::Sender<pb::AppendEntriesResponse>,
}

struct Service {
    consumer: mpsc::Sender<Job>,
    header: pb::RpcHeader,
}

fn is_heartbeat(r: &pb::AppendEntriesRequest) -> bool {
    r.term != 0
        && r.header.as_ref().is_some_and(|h| !h.addr.is_empty())
        && r.prev_log_entry == 0
        && r.prev_log_term == 0
        && r.leader_commit_index == 0
        && r.entries.is_empty()
}

fn answer(header: &pb::RpcHeader, r: &pb::AppendEntriesRequest) -> pb::AppendEntriesResponse {
    pb::AppendEntriesResponse {
        header: Some(header.clone()),
        term: r.term,
        last_log: r.entries.last().map_or(r.prev_log_entry, |e| e.index),
        success: true,
        no_retry_backoff: false,
    }
}

impl Service {
    async fn dispatch(
        &self,
        request: pb::AppendEntriesRequest,
    ) -> Result<oneshot::Receiver<pb::AppendEntriesResponse>, Status> {
        let (reply, answered) = oneshot::channel();
        self.consumer
            .send(Job { request, reply })
            .await
            .map_err(|_| Status::unavailable("consumer gone"))?;
        Ok(answered)
    }
}

fn from_pipeline(r: pb::AppendEntriesPipelineRequest) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        header: r.header,
        term: r.term,
        prev_log_entry: r.prev_log_entry,
        prev_log_term: r.prev_log_term,
        entries: r.entries,
        leader_commit_index: r.leader_commit_index,
        leader: r.leader,
    }
}

fn to_pipeline(r: pb::AppendEntriesResponse) -> pb::AppendEntriesPipelineResponse {
    pb::AppendEntriesPipelineResponse {
        header: r.header,
        term: r.term,
        last_log: r.last_log,
        success: r.success,
        no_retry_backoff: r.no_retry_backoff,
    }
}

#[tonic::async_trait]
impl RaftTransportService for Arc<Service> {
    type AppendEntriesPipelineStream =
        ReceiverStream<Result<pb::AppendEntriesPipelineResponse, Status>>;

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let request = request.into_inner();
        if is_heartbeat(&request) {
            return Ok(Response::new(answer(&self.header, &request)));
        }
        let answered = self.dispatch(request).await?;
        answered
            .await
            .map(Response::new)
            .map_err(|_| Status::unavailable("consumer gone"))
    }

    async fn append_entries_pipeline(
        &self,
        request: Request<Streaming<pb::AppendEntriesPipelineRequest>>,
    ) -> Result<Response<Self::AppendEntriesPipelineStream>, Status> {
        let mut incoming = request.into_inner();
        let (responses, stream) = mpsc::channel(WINDOW as usize);
        let (waiting, mut answers) = mpsc::channel(WINDOW as usize);
        let service = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = incoming.message().await {
                let Ok(answered) = service.dispatch(from_pipeline(request)).await else {
                    break;
                };
                if waiting.send(answered).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(answered) = answers.recv().await {
                let Ok(response) = answered.await else { break };
                if responses.send(Ok(to_pipeline(response))).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn request_vote(
        &self,
        _: Request<pb::RequestVoteRequest>,
    ) -> Result<Response<pb::RequestVoteResponse>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }

    async fn install_snapshot(
        &self,
        _: Request<Streaming<pb::InstallSnapshotRequest>>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }

    async fn timeout_now(
        &self,
        _: Request<pb::TimeoutNowRequest>,
    ) -> Result<Response<pb::TimeoutNowResponse>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }

    async fn request_pre_vote(
        &self,
        _: Request<pb::RequestPreVoteRequest>,
    ) -> Result<Response<pb::RequestPreVoteResponse>, Status> {
        Err(Status::unimplemented("not benchmarked"))
    }
}

/// Serves until stdin closes.
pub fn serve(listen: &str, tls: bool) -> Result<(), String> {
    let addr = listen
        .parse()
        .map_err(|e| format!("tonic: --listen {listen}: {e}"))?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let incoming = TcpIncoming::bind(addr)
            .map_err(|e| format!("tonic: bind {listen}: {e}"))?
            .with_nodelay(Some(true));
        let local = incoming
            .local_addr()
            .map_err(|e| format!("tonic: {e}"))?
            .to_string();
        let (consumer, mut jobs) = mpsc::channel::<Job>(64);
        let header = pb::RpcHeader {
            protocol_version: 3,
            id: Bytes::from_static(b"bench-server"),
            addr: Bytes::from(local.clone()),
        };
        let consumer_header = header.clone();
        tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                let _ = job.reply.send(answer(&consumer_header, &job.request));
            }
        });
        // The orchestrator closes stdin when it is done with this server.
        std::thread::spawn(|| {
            super::wait_for_stdin_eof();
            std::process::exit(0);
        });
        super::announce(&local);
        let service = RaftTransportServiceServer::new(Arc::new(Service { consumer, header }))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut server = Server::builder();
        if tls {
            let identity = tonic::transport::Identity::from_pem(
                super::tls::SERVER_CERT,
                super::tls::SERVER_KEY,
            );
            server = server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| format!("tonic-tls: {e}"))?;
        }
        server
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // Windows grow with the link (hyper's bandwidth-delay
            // estimate), as ours do: what this crate's README recommends
            // for a mounted service, so the same on both servers.
            .http2_adaptive_window(Some(true))
            .max_frame_size(MAX_FRAME)
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .map_err(|e| format!("tonic: serve: {e}"))
    })
}

fn append_request(payload: u64) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        header: Some(pb::RpcHeader {
            protocol_version: 3,
            id: Bytes::from_static(b"bench-client"),
            addr: Bytes::from_static(b"127.0.0.1:1"),
        }),
        term: 1,
        prev_log_entry: 1,
        prev_log_term: 1,
        entries: vec![pb::Log {
            index: 2,
            term: 1,
            data: Bytes::from(vec![0x5a; payload as usize]),
            ..Default::default()
        }],
        leader_commit_index: 1,
        ..Default::default()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("tonic: {what} failed: {e}")
}

/// Runs one measurement (unary or pipeline).
pub fn client(args: &ClientArgs, tls: bool) -> Result<ClientReport, String> {
    let args = args.clone();
    runtime()?.block_on(async move {
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", args.target))
            .map_err(|e| failed("endpoint", e))?;
        if tls {
            let config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(super::tls::CA))
                .domain_name("127.0.0.1");
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| failed("TLS config", e))?;
        }
        let channel = endpoint
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| failed("connect", e))?;
        let mut client = RaftTransportServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let request = append_request(args.payload);
        match args.scenario {
            Scenario::Unary => {
                let mut call = async || match client.append_entries(request.clone()).await {
                    Ok(r) if r.get_ref().success => Ok(()),
                    Ok(r) => Err(failed("AppendEntries", format!("{:?}", r.get_ref()))),
                    Err(e) => Err(failed("AppendEntries", e)),
                };
                for _ in 0..args.warmup {
                    call().await?;
                }
                let mut latencies = Vec::with_capacity(args.ops as usize);
                args.measuring_starts();
                let start = Instant::now();
                for _ in 0..args.ops {
                    let at = Instant::now();
                    call().await?;
                    latencies.push(super::nanos(at.elapsed()));
                }
                let elapsed = start.elapsed();
                args.measuring_ends();
                Ok(latency_report(latencies, elapsed, args.ops * args.payload))
            }
            Scenario::Pipeline => {
                let request = pb::AppendEntriesPipelineRequest {
                    header: request.header,
                    term: request.term,
                    prev_log_entry: request.prev_log_entry,
                    prev_log_term: request.prev_log_term,
                    entries: request.entries,
                    leader_commit_index: request.leader_commit_index,
                    leader: request.leader,
                };
                let (requests, outgoing) = mpsc::channel(WINDOW as usize);
                let mut responses = client
                    .append_entries_pipeline(ReceiverStream::new(outgoing))
                    .await
                    .map_err(|e| failed("opening the pipeline", e))?
                    .into_inner();
                let window = Semaphore::new(WINDOW as usize);
                let mut pipelined = async |n: u64| {
                    let send = async {
                        for _ in 0..n {
                            window
                                .acquire()
                                .await
                                .map_err(|e| failed("pipeline", e))?
                                .forget();
                            requests
                                .send(request.clone())
                                .await
                                .map_err(|e| failed("pipeline", e))?;
                        }
                        Ok::<(), String>(())
                    };
                    let receive = async {
                        for _ in 0..n {
                            match responses.message().await {
                                Ok(Some(r)) if r.success => window.add_permits(1),
                                Ok(Some(r)) => {
                                    return Err(failed("pipelined append", format!("{r:?}")));
                                }
                                Ok(None) => return Err(failed("pipelined append", "stream ended")),
                                Err(e) => return Err(failed("pipelined append", e)),
                            }
                        }
                        Ok(())
                    };
                    let (sent, received) = tokio::join!(send, receive);
                    sent.and(received)
                };
                pipelined(args.warmup).await?;
                args.measuring_starts();
                let start = Instant::now();
                pipelined(args.ops).await?;
                let elapsed = start.elapsed();
                args.measuring_ends();
                Ok(ClientReport {
                    ops: args.ops,
                    elapsed_ns: super::nanos(elapsed),
                    bytes: args.ops * args.payload,
                    ..Default::default()
                })
            }
            other => Err(format!("tonic: no {} scenario", other.name())),
        }
    })
}
