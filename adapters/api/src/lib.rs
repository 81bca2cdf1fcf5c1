//! The runtime-free async API of the Raft gRPC transport.
//!
//! This crate owns the transport as a Raft implementation sees it:
//! hashicorp/raft's `raft.Transport` in Rust's terms, with no runtime in it.
//! * [`Transport`]: incoming RPCs, the heartbeat fast path, one generic
//!   unary [`call`](Transport::call) (with named conveniences), pipelines,
//!   streamed snapshots, peer encoding and close;
//! * the types every implementation shares: [`Rpc`] with its
//!   [`Responder`], [`SnapshotReader`] over [`SnapshotData`],
//!   [`HeartbeatHandler`], [`AppendPipeline`], and the core's
//!   [`TransportError`];
//! * [`mod@migration`]: `MigrationTransport`, written once against the
//!   trait;
//! * [`mod@reference`]: the reference answer to an incoming [`Rpc`], as
//!   `node serve` gives it.
//!
//! It does no I/O and runs nothing: its futures only await the futures of
//! the transports underneath, and its readers use the `futures-io` traits
//! (definitions only). The transports themselves — gRPC over h2 on smol,
//! tokio or plain threads, and the in-memory one — live in the adapter
//! crates; the protocol they run is the sans-IO core,
//! `raft-grpc-transport`.
//!
//! # Public surface
//!
//! [`Transport`], [`AppendPipeline`], [`Rpc`], [`Responder`],
//! [`SnapshotReader`], [`SnapshotData`], [`SnapshotBytes`],
//! [`HeartbeatHandler`], the core's [`TransportError`], [`OutgoingRpc`] and
//! [`UnaryRequest`]; the modules [`mod@migration`] and [`mod@reference`].

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod migration;
pub mod reference;

pub use raft_grpc_transport::TransportError;
pub use raft_grpc_transport::client::{OutgoingRpc, UnaryRequest};

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_io::AsyncRead;

use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftRequest, RaftResponse, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
pub use raft_grpc_transport::server::PeerInfo;
use raft_grpc_transport::{Code, Status};

/// Answers heartbeats directly, concurrently with the consumer, so that a
/// heartbeat is answered while the consumer installs a snapshot. It gets
/// the request and its sender ([`PeerInfo`]: the address and, under mutual
/// TLS, the verified certificate chain). It must not block:
/// hashicorp/raft's handler only records the leader's contact.
pub type HeartbeatHandler = Arc<
    dyn Fn(&AppendEntriesRequest, &PeerInfo) -> Result<AppendEntriesResponse, Status> + Send + Sync,
>;

/// Delivers an answer; says whether it could still be delivered.
type Reply = Box<dyn FnOnce(Result<RaftResponse, Status>) -> bool + Send>;

/// Answers one incoming RPC. Dropping it without answering fails the RPC
/// with `UNKNOWN`.
pub struct Responder {
    reply: Option<Reply>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("answered", &self.reply.is_none())
            .finish()
    }
}

impl Responder {
    /// A responder that hands the answer to `reply`, which says whether it
    /// could still be delivered.
    pub fn new(reply: impl FnOnce(Result<RaftResponse, Status>) -> bool + Send + 'static) -> Self {
        Responder {
            reply: Some(Box::new(reply)),
        }
    }

    /// Sends the response, or an error whose message reaches the caller as
    /// text. Returns false if the call is already over (the caller gave up,
    /// the deadline passed, or the transport closed).
    pub fn respond(mut self, result: Result<RaftResponse, Status>) -> bool {
        self.reply.take().is_some_and(|reply| reply(result))
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply(Err(Status::new(
                Code::Unknown,
                "the RPC handler dropped its responder without answering",
            )));
        }
    }
}

/// The data of an incoming snapshot, as a transport delivers it.
pub trait SnapshotData: AsyncRead + Send + Unpin {
    /// The next chunk as it arrived (no copy); `None` at the end. Fails if
    /// fewer or more bytes than declared arrive, or a checksum does not
    /// match.
    fn poll_chunk(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>>;
}

/// The data of an incoming snapshot: read it to its end, as an
/// [`AsyncRead`] or chunk by chunk with [`chunk`](Self::chunk). Memory is
/// bounded: the sender waits while it is not read. It counts what was read,
/// for a caller to show progress.
pub struct SnapshotReader {
    data: Box<dyn SnapshotData>,
    size: u64,
    read: u64,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("size", &self.size)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// A reader over a transport's snapshot data of `size` bytes.
    pub fn new(data: impl SnapshotData + 'static, size: u64) -> Self {
        SnapshotReader {
            data: Box::new(data),
            size,
            read: 0,
        }
    }

    /// The next chunk as it arrived, without a copy; `None` at the end.
    pub async fn chunk(&mut self) -> io::Result<Option<Bytes>> {
        let chunk = std::future::poll_fn(|cx| Pin::new(&mut *self.data).poll_chunk(cx)).await?;
        self.read += chunk.as_ref().map_or(0, |c| c.len() as u64);
        Ok(chunk)
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The snapshot's declared size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl AsyncRead for SnapshotReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut *self.data).poll_read(cx, buf))?;
        self.read += n as u64;
        Poll::Ready(Ok(n))
    }
}

/// In-memory [`SnapshotData`], for transports that have the bytes at hand
/// (and for tests).
#[derive(Debug, Default)]
pub struct SnapshotBytes {
    chunks: std::collections::VecDeque<Bytes>,
    error: Option<Status>,
}

impl SnapshotBytes {
    /// Data made of these chunks, then the end — or `error` instead of the
    /// end.
    pub fn new(chunks: impl IntoIterator<Item = Bytes>, error: Option<Status>) -> Self {
        SnapshotBytes {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            error,
        }
    }
}

impl AsyncRead for SnapshotBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(front) = self.chunks.front_mut() else {
            return Poll::Ready(match self.error.take() {
                Some(status) => Err(io::Error::other(status)),
                None => Ok(0),
            });
        };
        let n = buf.len().min(front.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.advance(n);
        if front.is_empty() {
            self.chunks.pop_front();
        }
        Poll::Ready(Ok(n))
    }
}

impl SnapshotData for SnapshotBytes {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        Poll::Ready(match self.chunks.pop_front() {
            Some(chunk) => Ok(Some(chunk)),
            None => match self.error.take() {
                Some(status) => Err(io::Error::other(status)),
                None => Ok(None),
            },
        })
    }
}

/// One incoming RPC: the request, the way to answer it, and for
/// InstallSnapshot the data.
///
/// `#[non_exhaustive]`: what is known of an RPC (its peer, say) can grow
/// without a breaking change; transports build one with [`Rpc::new`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Rpc {
    /// The request.
    pub request: RaftRequest,
    /// Answers it.
    pub responder: Responder,
    /// For InstallSnapshot, the snapshot's data: read it to its end before
    /// answering.
    pub snapshot: Option<SnapshotReader>,
    /// Who sent it: the peer's address and, under mutual TLS, the
    /// certificate chain TLS verified (empty when the transport does not
    /// know: an in-memory transport, say).
    pub peer: Arc<PeerInfo>,
}

impl Rpc {
    /// An incoming RPC, as a transport hands it to the consumer.
    pub fn new(
        request: RaftRequest,
        responder: Responder,
        snapshot: Option<SnapshotReader>,
    ) -> Rpc {
        Rpc {
            request,
            responder,
            snapshot,
            peer: Arc::default(),
        }
    }

    /// An incoming RPC from `peer` (as [`new`](Self::new) then
    /// [`with_peer`](Self::with_peer), without making the empty peer first).
    pub fn from_peer(
        request: RaftRequest,
        responder: Responder,
        snapshot: Option<SnapshotReader>,
        peer: Arc<PeerInfo>,
    ) -> Rpc {
        Rpc {
            request,
            responder,
            snapshot,
            peer,
        }
    }

    /// The same RPC, from `peer`.
    #[must_use]
    pub fn with_peer(mut self, peer: Arc<PeerInfo>) -> Rpc {
        self.peer = peer;
        self
    }

    /// Answers the RPC (see [`Responder::respond`]).
    pub fn respond(self, result: Result<RaftResponse, Status>) -> bool {
        self.responder.respond(result)
    }
}

/// An AppendEntries pipeline to one peer: appends go out without waiting
/// for earlier answers and complete in the order they were sent.
pub trait AppendPipeline: Send + Sync {
    /// Sends an AppendEntries, waiting while the window is full (the
    /// back-pressure). Returns its sequence number.
    fn append(
        &self,
        request: &AppendEntriesRequest,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;

    /// The next completion, in send order; `None` once the pipeline is
    /// closed and every append has completed.
    fn next(
        &self,
    ) -> impl Future<Output = Option<(u64, Result<AppendEntriesResponse, TransportError>)>> + Send;

    /// Closes the pipeline: appends in flight complete with
    /// [`TransportError::PipelineShutdown`].
    fn close(&self);
}

/// A Raft transport: hashicorp/raft's `raft.Transport`, runtime-free.
///
/// Every outgoing RPC completes exactly once, with its response or a
/// [`TransportError`]; after [`close`](Self::close), pending and later
/// calls fail with [`TransportError::Shutdown`].
pub trait Transport: Send + Sync {
    /// The pipeline type.
    type Pipeline: AppendPipeline;

    /// The address peers reach this transport at.
    fn local_addr(&self) -> &str;

    /// The next incoming RPC (heartbeats too, unless a heartbeat handler
    /// is set); `None` once the transport is closed.
    fn recv_rpc(&self) -> impl Future<Output = Option<Rpc>> + Send;

    /// Answers heartbeats with `handler` instead of the consumer; `None`
    /// sends them to the consumer again.
    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>);

    /// Sends one unary RPC (AppendEntries, RequestVote, RequestPreVote or
    /// TimeoutNow) and waits for its answer. Every other unary method of
    /// this trait is a typed convenience over this one.
    fn call(
        &self,
        target: &str,
        rpc: OutgoingRpc,
    ) -> impl Future<Output = Result<RaftResponse, TransportError>> + Send;

    /// Sends a unary request of any kind and returns its typed response.
    fn unary<R: UnaryRequest + Send>(
        &self,
        target: &str,
        request: R,
    ) -> impl Future<Output = Result<R::Response, TransportError>> + Send {
        async move { R::response(self.call(target, request.into()).await?) }
    }

    /// Sends AppendEntries (a heartbeat when it carries nothing but the
    /// term and the leader).
    fn append_entries(
        &self,
        target: &str,
        request: AppendEntriesRequest,
    ) -> impl Future<Output = Result<AppendEntriesResponse, TransportError>> + Send {
        self.unary(target, request)
    }

    /// Sends RequestVote.
    fn request_vote(
        &self,
        target: &str,
        request: RequestVoteRequest,
    ) -> impl Future<Output = Result<RequestVoteResponse, TransportError>> + Send {
        self.unary(target, request)
    }

    /// Sends RequestPreVote.
    fn request_pre_vote(
        &self,
        target: &str,
        request: RequestPreVoteRequest,
    ) -> impl Future<Output = Result<RequestPreVoteResponse, TransportError>> + Send {
        self.unary(target, request)
    }

    /// Sends TimeoutNow (leadership transfer).
    fn timeout_now(
        &self,
        target: &str,
        request: TimeoutNowRequest,
    ) -> impl Future<Output = Result<TimeoutNowResponse, TransportError>> + Send {
        self.unary(target, request)
    }

    /// Streams a snapshot of `meta.size` bytes read from `data`; the peer
    /// receives exactly that many bytes or the install fails.
    fn install_snapshot<R: AsyncRead + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        data: R,
    ) -> impl Future<Output = Result<InstallSnapshotResponse, TransportError>> + Send;

    /// Opens an AppendEntries pipeline to `target`.
    fn append_entries_pipeline(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Self::Pipeline, TransportError>> + Send;

    /// Serializes a peer's address (hashicorp's `EncodePeer`): its bytes.
    fn encode_peer(&self, id: &str, addr: &str) -> Bytes {
        let _ = id;
        Bytes::copy_from_slice(addr.as_bytes())
    }

    /// Reads a peer's address back (hashicorp's `DecodePeer`).
    fn decode_peer(&self, peer: &[u8]) -> String {
        String::from_utf8_lossy(peer).into_owned()
    }

    /// Removes a peer that left the cluster: its connections take no new
    /// call and close once the calls on them are done; a later call to it
    /// connects afresh, without the reconnect backoff it had.
    fn remove_peer(&self, target: &str);

    /// Closes the transport. Idempotent.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn responder_answers_once_and_dropping_it_fails_the_rpc() {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let sink = answers.clone();
        let responder = Responder::new(move |r| {
            sink.lock().unwrap().push(r);
            true
        });
        assert!(responder.respond(Ok(RaftResponse::TimeoutNow(TimeoutNowResponse::default()))));
        let sink = answers.clone();
        drop(Responder::new(move |r| {
            sink.lock().unwrap().push(r);
            true
        }));
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 2);
        assert!(answers[0].is_ok());
        assert_eq!(answers[1].as_ref().unwrap_err().code(), Code::Unknown);
    }

    #[test]
    fn snapshot_bytes_read_both_ways() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let data = SnapshotBytes::new(
            [
                Bytes::from_static(b"ab"),
                Bytes::new(),
                Bytes::from_static(b"cde"),
            ],
            None,
        );
        let mut reader = SnapshotReader::new(data, 5);
        let mut buf = [0u8; 4];
        let Poll::Ready(Ok(n)) = Pin::new(&mut reader).poll_read(&mut cx, &mut buf) else {
            panic!()
        };
        assert_eq!(&buf[..n], b"ab");
        {
            let next = std::pin::pin!(reader.chunk());
            let Poll::Ready(Ok(Some(chunk))) = next.poll(&mut cx) else {
                panic!()
            };
            assert_eq!(&chunk[..], b"cde");
        }
        assert_eq!((reader.bytes_read(), reader.size()), (5, 5));

        let mut failing = SnapshotBytes::new([], Some(Status::new(Code::DataLoss, "short")));
        let Poll::Ready(Err(e)) = Pin::new(&mut failing).poll_chunk(&mut cx) else {
            panic!()
        };
        assert!(e.to_string().contains("short"));
    }
}
