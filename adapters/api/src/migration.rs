//! Moving a cluster from one transport to another with no downtime.
//!
//! This module owns [`MigrationTransport`]: a [`Transport`] over two, a
//! primary (the transport being moved to) and a secondary (the one being
//! left). Every outgoing RPC — RequestPreVote and TimeoutNow included — goes
//! to the primary first and, when a predicate on the primary's error says
//! so, to the secondary; a pipeline falls back when the primary cannot open
//! one. A snapshot falls back only when its source can be opened again from
//! its first byte ([`SnapshotSource`]); otherwise the primary's error
//! stands, and a half-read stream is never replayed. Incoming RPCs of both
//! are merged into one consumer. The local address and peer encoding are
//! the primary's. Close closes both.
//!
//! It needs no runtime: it only awaits the two transports' futures. Ready
//! predicates: [`fallback_on_unavailable`], [`fallback_on_unimplemented`],
//! [`fallback_on_either`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_io::AsyncRead;

use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RaftResponse,
};
use raft_grpc_transport::{Code, Status};

use crate::{AppendPipeline, HeartbeatHandler, OutgoingRpc, Rpc, Transport, TransportError};

/// Decides, from the primary's error, whether to try the secondary.
pub type FallbackPredicate = Arc<dyn Fn(&TransportError) -> bool + Send + Sync>;

/// Falls back when the peer cannot be reached on the primary: the connect
/// was refused, the connection broke, the peer is shutting down
/// (`UNAVAILABLE`). A closed local transport never falls back.
pub fn fallback_on_unavailable(error: &TransportError) -> bool {
    matches!(error, TransportError::Status(s) if s.code() == Code::Unavailable)
}

/// Falls back when the peer answers on the primary but does not speak this
/// service yet (`UNIMPLEMENTED`).
pub fn fallback_on_unimplemented(error: &TransportError) -> bool {
    matches!(error, TransportError::Status(s) if s.code() == Code::Unimplemented)
}

/// Falls back on either of the above: the usual choice mid-migration.
pub fn fallback_on_either(error: &TransportError) -> bool {
    fallback_on_unavailable(error) || fallback_on_unimplemented(error)
}

/// A snapshot source that can be opened again from its first byte (a file,
/// a buffer), so that a failed attempt on the primary can be replayed on
/// the secondary.
pub trait SnapshotSource: Send {
    /// The reader of one attempt.
    type Reader: AsyncRead + Unpin + Send;

    /// Opens the source at its first byte.
    fn open(&mut self) -> io::Result<Self::Reader>;
}

impl<R, F> SnapshotSource for F
where
    F: FnMut() -> io::Result<R> + Send,
    R: AsyncRead + Unpin + Send,
{
    type Reader = R;

    fn open(&mut self) -> io::Result<R> {
        self()
    }
}

/// A transport over a primary and a secondary. See the module docs.
pub struct MigrationTransport<P, S> {
    primary: P,
    secondary: S,
    fallback: FallbackPredicate,
    closed: AtomicBool,
}

impl<P, S> std::fmt::Debug for MigrationTransport<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationTransport")
            .field("closed", &self.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<P: Transport, S: Transport> MigrationTransport<P, S> {
    /// Wraps `primary` and `secondary`; `fallback` says which primary
    /// errors send an RPC to the secondary.
    pub fn new(
        primary: P,
        secondary: S,
        fallback: impl Fn(&TransportError) -> bool + Send + Sync + 'static,
    ) -> Self {
        MigrationTransport {
            primary,
            secondary,
            fallback: Arc::new(fallback),
            closed: AtomicBool::new(false),
        }
    }

    /// The primary transport.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The secondary transport.
    pub fn secondary(&self) -> &S {
        &self.secondary
    }

    fn should_fall_back(&self, error: &TransportError) -> bool {
        !self.closed.load(Ordering::SeqCst) && (self.fallback)(error)
    }

    /// Streams a snapshot opened from `source`: first on the primary, and
    /// again from the first byte on the secondary if the primary's error
    /// says so.
    pub async fn install_snapshot_from(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        mut source: impl SnapshotSource,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        let reader = source.open().map_err(source_error)?;
        match self
            .primary
            .install_snapshot(target, meta.clone(), reader)
            .await
        {
            Err(error) if self.should_fall_back(&error) => {
                let reader = source.open().map_err(source_error)?;
                self.secondary.install_snapshot(target, meta, reader).await
            }
            result => result,
        }
    }
}

fn source_error(error: io::Error) -> TransportError {
    TransportError::Status(Status::new(
        Code::Aborted,
        format!("opening the snapshot source failed: {error}"),
    ))
}

/// The pipeline of a [`MigrationTransport`]: the primary's, or the
/// secondary's when the primary could not open one.
#[derive(Debug)]
pub enum MigrationPipeline<A, B> {
    /// On the primary.
    Primary(A),
    /// On the secondary.
    Secondary(B),
}

impl<A: AppendPipeline, B: AppendPipeline> AppendPipeline for MigrationPipeline<A, B> {
    async fn append(&self, request: &AppendEntriesRequest) -> Result<u64, TransportError> {
        match self {
            MigrationPipeline::Primary(p) => p.append(request).await,
            MigrationPipeline::Secondary(p) => p.append(request).await,
        }
    }

    async fn next(&self) -> Option<(u64, Result<AppendEntriesResponse, TransportError>)> {
        match self {
            MigrationPipeline::Primary(p) => p.next().await,
            MigrationPipeline::Secondary(p) => p.next().await,
        }
    }

    fn close(&self) {
        match self {
            MigrationPipeline::Primary(p) => p.close(),
            MigrationPipeline::Secondary(p) => p.close(),
        }
    }
}

impl<P: Transport, S: Transport> Transport for MigrationTransport<P, S> {
    type Pipeline = MigrationPipeline<P::Pipeline, S::Pipeline>;

    fn local_addr(&self) -> &str {
        self.primary.local_addr()
    }

    /// The next RPC from either transport; `None` once both are closed.
    async fn recv_rpc(&self) -> Option<Rpc> {
        let mut primary = std::pin::pin!(self.primary.recv_rpc());
        let mut secondary = std::pin::pin!(self.secondary.recv_rpc());
        let (mut primary_done, mut secondary_done) = (false, false);
        std::future::poll_fn(|cx| {
            if !primary_done {
                if let Poll::Ready(rpc) = primary.as_mut().poll(cx) {
                    match rpc {
                        Some(rpc) => return Poll::Ready(Some(rpc)),
                        None => primary_done = true,
                    }
                }
            }
            if !secondary_done {
                if let Poll::Ready(rpc) = secondary.as_mut().poll(cx) {
                    match rpc {
                        Some(rpc) => return Poll::Ready(Some(rpc)),
                        None => secondary_done = true,
                    }
                }
            }
            if primary_done && secondary_done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        self.primary.set_heartbeat_handler(handler.clone());
        self.secondary.set_heartbeat_handler(handler);
    }

    /// Every unary RPC kind falls back: AppendEntries, RequestVote,
    /// RequestPreVote and TimeoutNow.
    async fn call(&self, target: &str, rpc: OutgoingRpc) -> Result<RaftResponse, TransportError> {
        match self.primary.call(target, rpc.clone()).await {
            Err(error) if self.should_fall_back(&error) => self.secondary.call(target, rpc).await,
            result => result,
        }
    }

    /// A source that can be read once goes to the primary only: on failure
    /// its error stands (use
    /// [`install_snapshot_from`](MigrationTransport::install_snapshot_from)
    /// with a reopenable source to fall back).
    async fn install_snapshot<R: AsyncRead + Unpin + Send>(
        &self,
        target: &str,
        meta: InstallSnapshotRequest,
        data: R,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        self.primary.install_snapshot(target, meta, data).await
    }

    async fn append_entries_pipeline(
        &self,
        target: &str,
    ) -> Result<Self::Pipeline, TransportError> {
        match self.primary.append_entries_pipeline(target).await {
            Ok(pipeline) => Ok(MigrationPipeline::Primary(pipeline)),
            Err(error) if self.should_fall_back(&error) => self
                .secondary
                .append_entries_pipeline(target)
                .await
                .map(MigrationPipeline::Secondary),
            Err(error) => Err(error),
        }
    }

    fn encode_peer(&self, id: &str, addr: &str) -> bytes::Bytes {
        self.primary.encode_peer(id, addr)
    }

    fn decode_peer(&self, peer: &[u8]) -> String {
        self.primary.decode_peer(peer)
    }

    /// Removes the peer from both transports.
    fn remove_peer(&self, target: &str) {
        self.primary.remove_peer(target);
        self.secondary.remove_peer(target);
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.primary.close().await;
        self.secondary.close().await;
    }
}

/// A reader over bytes in memory: a [`SnapshotSource`] reopens it by
/// cloning the `Bytes` (no copy).
#[derive(Debug, Clone)]
pub struct BytesReader {
    data: Bytes,
}

impl BytesReader {
    /// A reader of `data`.
    pub fn new(data: Bytes) -> Self {
        BytesReader { data }
    }
}

impl AsyncRead for BytesReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        bytes::Buf::advance(&mut self.data, n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let unavailable = TransportError::Status(Status::new(Code::Unavailable, "refused"));
        let unimplemented =
            TransportError::Status(Status::new(Code::Unimplemented, "no such service"));
        let deadline = TransportError::Status(Status::new(Code::DeadlineExceeded, "late"));
        assert!(fallback_on_unavailable(&unavailable));
        assert!(!fallback_on_unavailable(&unimplemented));
        assert!(fallback_on_unimplemented(&unimplemented));
        assert!(fallback_on_either(&unavailable) && fallback_on_either(&unimplemented));
        assert!(!fallback_on_either(&deadline));
        assert!(!fallback_on_either(&TransportError::Shutdown));
        assert!(!fallback_on_either(&TransportError::PipelineShutdown));
    }
}
