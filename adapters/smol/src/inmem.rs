//! An in-memory transport for tests, as hashicorp/raft has one.
//!
//! [`InmemNetwork`] connects any number of [`InmemTransport`]s by address,
//! with no sockets; links can be cut and restored at will to simulate
//! partitions. Each transport implements the same
//! [`Transport`] trait, with the
//! same semantics as the gRPC one: one consumer queue per node (heartbeats
//! to the heartbeat handler when one is set), RPC deadlines (scaled by size
//! for snapshots), snapshot data streamed with back-pressure and checked
//! against the declared size, pipelines completing in send order, calls
//! failing with `UNAVAILABLE` across a cut link (in flight too), and
//! [`TransportError::Shutdown`] after close.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_io::Timer;
use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::{AsyncRead, AsyncReadExt, future};
use raft_grpc_transport::heartbeat::is_heartbeat;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftRequest, RaftResponse,
};
use raft_grpc_transport::snapshot::{DEFAULT_TIMEOUT_SCALE, snapshot_timeout};
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_api::{
    AppendPipeline, HeartbeatHandler, Responder, Rpc, SnapshotReader, Transport, TransportError,
};

use raft_grpc_transport::client::OutgoingRpc;

/// A response of the wrong kind for the call (a peer bug): `INTERNAL`.
fn mismatch(response: &RaftResponse) -> TransportError {
    TransportError::Status(Status::new(
        Code::Internal,
        format!("unexpected {} for this call", response.proto_name()),
    ))
}
use crate::rpc::{ChannelSnapshot, Consumer};

/// Settings of an in-memory transport.
#[derive(Debug, Clone, PartialEq)]
pub struct InmemConfig {
    /// Deadline of an RPC (default 10 s); snapshots scale it by size.
    pub rpc_timeout: Duration,
    /// Appends in flight on one pipeline (default 64).
    pub pipeline_window: usize,
    /// Snapshot bytes per chunk handed to the receiver (default 64 KiB).
    pub snapshot_chunk_size: usize,
}

impl Default for InmemConfig {
    fn default() -> Self {
        InmemConfig {
            rpc_timeout: Duration::from_secs(10),
            pipeline_window: 64,
            snapshot_chunk_size: 64 * 1024,
        }
    }
}

/// The in-memory network the transports live on.
#[derive(Debug, Clone, Default)]
pub struct InmemNetwork {
    state: Arc<Mutex<NetState>>,
    changed: Arc<Event>,
}

#[derive(Debug, Default)]
struct NetState {
    nodes: HashMap<String, Weak<Node>>,
    cut: HashSet<(String, String)>,
}

fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl InmemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        InmemNetwork::default()
    }

    /// A transport at `addr` on this network.
    pub fn transport(&self, addr: &str, config: InmemConfig) -> InmemTransport {
        let (tx, rx) = async_channel::unbounded();
        let node = Arc::new(Node {
            addr: addr.to_owned(),
            consumer_tx: tx,
            consumer: Consumer::new(rx),
            heartbeat: RwLock::new(None),
            closed: AtomicBool::new(false),
            shutdown: Event::new(),
            config,
        });
        self.lock()
            .nodes
            .insert(addr.to_owned(), Arc::downgrade(&node));
        InmemTransport {
            node,
            net: self.clone(),
        }
    }

    /// Cuts the link between `a` and `b`: calls either way fail with
    /// `UNAVAILABLE`, those in flight too.
    pub fn disconnect(&self, a: &str, b: &str) {
        self.lock().cut.insert(link(a, b));
        self.changed.notify(usize::MAX);
    }

    /// Restores the link between `a` and `b`.
    pub fn connect(&self, a: &str, b: &str) {
        self.lock().cut.remove(&link(a, b));
        self.changed.notify(usize::MAX);
    }

    /// Cuts every link of `addr`.
    pub fn isolate(&self, addr: &str) {
        let mut state = self.lock();
        let others: Vec<String> = state.nodes.keys().filter(|n| *n != addr).cloned().collect();
        for other in others {
            state.cut.insert(link(addr, &other));
        }
        drop(state);
        self.changed.notify(usize::MAX);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node at `to`, if `from` can reach it.
    fn route(&self, from: &str, to: &str) -> Result<Arc<Node>, TransportError> {
        let state = self.lock();
        let unavailable = |why: &str| {
            TransportError::Status(Status::new(Code::Unavailable, format!("{to}: {why}")))
        };
        if state.cut.contains(&link(from, to)) {
            return Err(unavailable("network partition"));
        }
        match state.nodes.get(to).and_then(Weak::upgrade) {
            Some(node) if !node.closed.load(Ordering::SeqCst) => Ok(node),
            _ => Err(unavailable("connection refused")),
        }
    }
}

struct Node {
    addr: String,
    consumer_tx: async_channel::Sender<Rpc>,
    consumer: Consumer,
    heartbeat: RwLock<Option<HeartbeatHandler>>,
    closed: AtomicBool,
    shutdown: Event,
    config: InmemConfig,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A transport on an [`InmemNetwork`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InmemTransport {
    node: Arc<Node>,
    net: InmemNetwork,
}

/// Where the answer to one delivered RPC arrives.
type AnswerReceiver = async_channel::Receiver<Result<RaftResponse, Status>>;

/// How an outgoing call ended, before its response is typed.
type Outcome = Result<RaftResponse, TransportError>;

impl InmemTransport {
    /// The consumer queue of incoming RPCs.
    pub fn consumer(&self) -> Consumer {
        self.node.consumer.clone()
    }

    fn closed(&self) -> bool {
        self.node.closed.load(Ordering::SeqCst)
    }

    /// Delivers `request` to `target` and waits for its answer, its
    /// deadline, a cut link or our close.
    async fn call(
        &self,
        target: &str,
        request: RaftRequest,
        snapshot: Option<SnapshotReader>,
        timeout: Duration,
        answer: AnswerReceiver,
        responder: Responder,
    ) -> Outcome {
        if self.closed() {
            return Err(TransportError::Shutdown);
        }
        let peer = self.net.route(&self.node.addr, target)?;
        if let RaftRequest::AppendEntries(heartbeat) = &request {
            let handler = peer
                .heartbeat
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let (true, Some(handler)) = (is_heartbeat(heartbeat), handler) {
                return handler(heartbeat)
                    .map(RaftResponse::AppendEntries)
                    .map_err(TransportError::Status);
            }
        }
        let rpc = Rpc {
            request,
            responder,
            snapshot,
        };
        if peer.consumer_tx.send(rpc).await.is_err() {
            return Err(TransportError::Status(Status::new(
                Code::Unavailable,
                format!("{target}: shut down"),
            )));
        }
        self.wait(target, answer, timeout).await
    }

    /// Waits for an answer.
    async fn wait(&self, target: &str, answer: AnswerReceiver, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.net.changed.listen();
            let shutdown = self.node.shutdown.listen();
            if self.closed() {
                return Err(TransportError::Shutdown);
            }
            self.net.route(&self.node.addr, target)?;
            let answered = async { Some(answer.recv().await) };
            let late = async {
                Timer::at(deadline).await;
                None
            };
            let interrupted = async {
                future::or(changed, shutdown).await;
                Some(Err(async_channel::RecvError))
            };
            match future::or(answered, future::or(late, interrupted)).await {
                Some(Ok(Ok(response))) => return Ok(response),
                Some(Ok(Err(status))) => return Err(TransportError::Status(status)),
                // Interrupted: check the route and our state again.
                Some(Err(_)) if !answer.is_closed() => continue,
                Some(Err(_)) => {
                    return Err(TransportError::Status(Status::new(
                        Code::Unknown,
                        "the RPC was not answered",
                    )));
                }
                None => {
                    return Err(TransportError::Status(Status::new(
                        Code::DeadlineExceeded,
                        "deadline exceeded",
                    )));
                }
            }
        }
    }

    async fn unary(&self, target: &str, request: RaftRequest) -> Outcome {
        let (tx, rx) = async_channel::bounded(1);
        let responder = Responder::new(move |r| tx.try_send(r).is_ok());
        self.call(
            target,
            request,
            None,
            self.node.config.rpc_timeout,
            rx,
            responder,
        )
        .await
    }
}

impl Transport for InmemTransport {
    type Pipeline = InmemPipeline;

    fn local_addr(&self) -> &str {
        &self.node.addr
    }

    async fn recv_rpc(&self) -> Option<Rpc> {
        self.node.consumer.recv().await
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        *self
            .node
            .heartbeat
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
    }

    async fn call(&self, target: &str, rpc: OutgoingRpc) -> Result<RaftResponse, TransportError> {
        let request = match rpc {
            OutgoingRpc::AppendEntries(r) => RaftRequest::AppendEntries(r),
            OutgoingRpc::RequestVote(r) => RaftRequest::RequestVote(r),
            OutgoingRpc::RequestPreVote(r) => RaftRequest::RequestPreVote(r),
            OutgoingRpc::TimeoutNow(r) => RaftRequest::TimeoutNow(r),
        };
        self.unary(target, request).await
    }

    async fn install_snapshot<R: AsyncRead + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        mut data: R,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        let size = meta.size;
        let (data_tx, data_rx) = async_channel::bounded(2);
        let room = Arc::new(Event::new());
        let failure = Arc::new(Mutex::new(None));
        let reader =
            SnapshotReader::new(ChannelSnapshot::new(data_rx, room, failure.clone()), size);
        let (tx, rx) = async_channel::bounded(1);
        let responder = Responder::new(move |r| tx.try_send(r).is_ok());
        let timeout = snapshot_timeout(self.node.config.rpc_timeout, size, DEFAULT_TIMEOUT_SCALE);
        let chunk_size = self.node.config.snapshot_chunk_size.max(1);
        let fail =
            |status: Status| *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        // Streams the source into the receiver's reader, checking its size.
        let pump = async {
            let mut sent = 0u64;
            loop {
                let mut buf = BytesMut::zeroed(chunk_size);
                let n = match data.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let status =
                            Status::new(Code::Aborted, format!("reading the snapshot failed: {e}"));
                        fail(status.clone());
                        return Err(TransportError::Status(status));
                    }
                };
                if n == 0 {
                    break;
                }
                sent += n as u64;
                if sent > size {
                    let status = Status::new(
                        Code::DataLoss,
                        format!("snapshot runs past its declared size of {size} bytes"),
                    );
                    fail(status.clone());
                    return Err(TransportError::Status(status));
                }
                buf.truncate(n);
                if data_tx.send(Ok(Bytes::from(buf))).await.is_err() {
                    // The receiver stopped reading: its answer tells.
                    return Ok(());
                }
            }
            if sent < size {
                let status = Status::new(
                    Code::DataLoss,
                    format!("snapshot ended after {sent} of {size} bytes"),
                );
                fail(status.clone());
                return Err(TransportError::Status(status));
            }
            data_tx.close();
            Ok(())
        };
        let call = self.call(
            target,
            RaftRequest::InstallSnapshot(meta),
            Some(reader),
            timeout,
            rx.clone(),
            responder,
        );
        let mut call = std::pin::pin!(call);
        // The call delivers the RPC and waits; the pump feeds it meanwhile.
        let first = future::or(async { Err::<Outcome, _>(pump.await) }, async {
            Ok(call.as_mut().await)
        })
        .await;
        let outcome = match first {
            Ok(outcome) => outcome,
            Err(Err(error)) => {
                data_tx.close();
                return Err(error);
            }
            Err(Ok(())) => call.await,
        };
        match outcome? {
            RaftResponse::InstallSnapshot(r) => Ok(r),
            other => Err(mismatch(&other)),
        }
    }

    async fn append_entries_pipeline(&self, target: &str) -> Result<InmemPipeline, TransportError> {
        if self.closed() {
            return Err(TransportError::Shutdown);
        }
        self.net.route(&self.node.addr, target)?;
        Ok(InmemPipeline {
            transport: self.clone(),
            target: target.to_owned(),
            pending: Mutex::new(VecDeque::new()),
            next_seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            room: Event::new(),
        })
    }

    async fn close(&self) {
        if !self.node.closed.swap(true, Ordering::SeqCst) {
            self.node.consumer_tx.close();
            self.node.shutdown.notify(usize::MAX);
            // RPCs still queued for the consumer are answered, not left
            // behind.
            while let Some(rpc) = self.node.consumer.try_recv() {
                rpc.respond(Err(Status::new(Code::Unavailable, "transport shut down")));
            }
        }
    }
}

/// A pipeline of an [`InmemTransport`]: each append is delivered to the
/// peer's consumer at once, in order; completions come in send order, and
/// [`next`](AppendPipeline::next) waits for an append when none is in
/// flight.
#[derive(Debug)]
pub struct InmemPipeline {
    transport: InmemTransport,
    target: String,
    pending: Mutex<VecDeque<(u64, AnswerReceiver)>>,
    next_seq: AtomicU64,
    closed: AtomicBool,
    room: Event,
}

impl AppendPipeline for InmemPipeline {
    async fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        loop {
            let room = self.room.listen();
            if self.closed.load(Ordering::SeqCst) {
                return Err(TransportError::PipelineShutdown);
            }
            if self.transport.closed() {
                return Err(TransportError::Shutdown);
            }
            let window = self.transport.node.config.pipeline_window.max(1);
            if self.pending.lock().unwrap_or_else(|e| e.into_inner()).len() < window {
                break;
            }
            room.await;
        }
        let peer = self
            .transport
            .net
            .route(&self.transport.node.addr, &self.target)?;
        let (tx, rx) = async_channel::bounded(1);
        let rpc = Rpc {
            request: RaftRequest::AppendEntries(request.clone()),
            responder: Responder::new(move |r| tx.try_send(r).is_ok()),
            snapshot: None,
        };
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((seq, rx));
        self.room.notify(usize::MAX);
        if peer.consumer_tx.send(rpc).await.is_err() {
            return Err(TransportError::Status(Status::new(
                Code::Unavailable,
                "the peer shut down",
            )));
        }
        Ok(seq)
    }

    async fn next(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        let (seq, answer) = loop {
            let listener = self.room.listen();
            let shutdown = self.transport.node.shutdown.listen();
            let front = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match front {
                Some(front) => break front,
                None if self.closed.load(Ordering::SeqCst) || self.transport.closed() => {
                    return None;
                }
                None => future::or(listener, shutdown).await,
            }
        };
        self.room.notify(usize::MAX);
        if self.closed.load(Ordering::SeqCst) {
            return Some((seq, Err(TransportError::PipelineShutdown)));
        }
        let timeout = self.transport.node.config.rpc_timeout;
        let result = match self.transport.wait(&self.target, answer, timeout).await {
            Ok(RaftResponse::AppendEntries(r)) => Ok(r),
            Ok(other) => Err(mismatch(&other)),
            Err(e) if self.closed.load(Ordering::SeqCst) => Err(match e {
                TransportError::Shutdown => e,
                _ => TransportError::PipelineShutdown,
            }),
            Err(e) => Err(e),
        };
        Some((seq, result))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.room.notify(usize::MAX);
    }
}
