//! Incoming RPCs as the application sees them.
//!
//! This module owns [`Rpc`] (a request, the [`Responder`] that answers it,
//! and for InstallSnapshot a [`SnapshotReader`] over its data), the
//! [`Consumer`] they arrive on, and the [`HeartbeatHandler`] that answers
//! heartbeats without going through the consumer.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_lite::{AsyncRead, Stream};
use raft_grpc_transport::Status;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, RaftRequest, RaftResponse,
};

/// Answers heartbeats directly, concurrently with the consumer (so a
/// heartbeat is answered while the consumer installs a snapshot). It must
/// not block: hashicorp/raft's handler only records the leader's contact.
pub type HeartbeatHandler =
    Arc<dyn Fn(&AppendEntriesRequest) -> Result<AppendEntriesResponse, Status> + Send + Sync>;

/// An answer for one request of a stream: its position, and the result.
pub(crate) type Answer = (u64, Result<RaftResponse, Status>);

/// Answers one incoming RPC. Dropping it without answering fails the RPC
/// with `UNKNOWN` ("no response").
#[derive(Debug)]
pub struct Responder {
    seq: u64,
    tx: Option<async_channel::Sender<Answer>>,
}

impl Responder {
    pub(crate) fn new(seq: u64, tx: async_channel::Sender<Answer>) -> Self {
        Responder { seq, tx: Some(tx) }
    }

    /// Sends the response, or an error whose message reaches the caller as
    /// text. Returns false if the call is already over (the caller gave up,
    /// the deadline passed, or the transport closed).
    pub fn respond(mut self, result: Result<RaftResponse, Status>) -> bool {
        match self.tx.take() {
            Some(tx) => tx.try_send((self.seq, result)).is_ok(),
            None => false,
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send((
                self.seq,
                Err(Status::new(
                    raft_grpc_transport::Code::Unknown,
                    "the RPC handler dropped its responder",
                )),
            ));
        }
    }
}

/// One incoming RPC.
#[derive(Debug)]
pub struct Rpc {
    /// The request.
    pub request: RaftRequest,
    /// Answers it.
    pub responder: Responder,
    /// For InstallSnapshot, the snapshot's data: read it to the end (it
    /// fails if fewer or more bytes than declared arrive, or the checksum
    /// does not match).
    pub snapshot: Option<SnapshotReader>,
}

impl Rpc {
    /// Answers the RPC (see [`Responder::respond`]).
    pub fn respond(self, result: Result<RaftResponse, Status>) -> bool {
        self.responder.respond(result)
    }
}

type RecvFuture =
    Pin<Box<dyn Future<Output = Result<Result<Bytes, Status>, async_channel::RecvError>> + Send>>;

/// The data of an incoming snapshot, as an [`AsyncRead`]. Memory is bounded:
/// the sender waits (HTTP/2 flow control) while this reader is not read.
pub struct SnapshotReader {
    rx: Pin<Box<async_channel::Receiver<Result<Bytes, Status>>>>,
    room: Arc<event_listener::Event>,
    failure: Arc<Mutex<Option<Status>>>,
    current: Bytes,
    recv: Option<RecvFuture>,
    done: bool,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("buffered", &self.current.len())
            .field("done", &self.done)
            .finish()
    }
}

impl SnapshotReader {
    pub(crate) fn new(
        rx: async_channel::Receiver<Result<Bytes, Status>>,
        room: Arc<event_listener::Event>,
        failure: Arc<Mutex<Option<Status>>>,
    ) -> Self {
        SnapshotReader {
            rx: Box::pin(rx),
            room,
            failure,
            current: Bytes::new(),
            recv: None,
            done: false,
        }
    }

    /// The next chunk of data as it arrived (no copy); `None` at the end.
    pub async fn chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        if self.done {
            return Ok(None);
        }
        let received = self.rx.recv().await;
        self.room.notify(1);
        match received {
            Ok(Ok(data)) => Ok(Some(data)),
            Ok(Err(status)) => {
                self.done = true;
                Err(io::Error::other(status))
            }
            Err(_) => {
                self.done = true;
                self.end()
            }
        }
    }

    /// The channel closed: the end of the data, or the stream's failure.
    fn end<T: Default>(&self) -> io::Result<T> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(status) => Err(io::Error::other(status)),
            None => Ok(T::default()),
        }
    }
}

impl AsyncRead for SnapshotReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Poll::Ready(Ok(n));
            }
            if self.done || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let this = &mut *self;
            let recv = this.recv.get_or_insert_with(|| {
                let rx = (*this.rx).clone();
                Box::pin(async move { rx.recv().await }) as RecvFuture
            });
            let result = std::task::ready!(recv.as_mut().poll(cx));
            this.recv = None;
            this.room.notify(1);
            match result {
                Ok(Ok(data)) => this.current = data,
                Ok(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Err(io::Error::other(status)));
                }
                Err(_) => {
                    this.done = true;
                    return Poll::Ready(this.end());
                }
            }
        }
    }
}

/// Where incoming RPCs arrive (heartbeats too, when no heartbeat handler
/// is set). Cloning gives another handle on the same queue.
#[derive(Debug)]
pub struct Consumer {
    rx: Pin<Box<async_channel::Receiver<Rpc>>>,
}

impl Clone for Consumer {
    fn clone(&self) -> Self {
        Consumer::new((*self.rx).clone())
    }
}

impl Consumer {
    pub(crate) fn new(rx: async_channel::Receiver<Rpc>) -> Self {
        Consumer { rx: Box::pin(rx) }
    }

    /// The next RPC; `None` once the transport is closed.
    pub async fn recv(&self) -> Option<Rpc> {
        self.rx.recv().await.ok()
    }

    /// The next RPC if one is waiting.
    pub fn try_recv(&self) -> Option<Rpc> {
        self.rx.try_recv().ok()
    }
}

impl Stream for Consumer {
    type Item = Rpc;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Rpc>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// Requests of a pipeline stream waiting for their answers, and answers
/// that came early.
#[derive(Debug, Default)]
pub(crate) struct AnswerOrder {
    next: u64,
    early: VecDeque<Answer>,
}

impl AnswerOrder {
    /// Takes an answer; returns those now ready, in request order.
    pub(crate) fn take(&mut self, answer: Answer) -> Vec<Result<RaftResponse, Status>> {
        self.early.push_back(answer);
        let mut ready = Vec::new();
        while let Some(i) = self.early.iter().position(|(seq, _)| *seq == self.next) {
            if let Some((_, result)) = self.early.remove(i) {
                ready.push(result);
            }
            self.next += 1;
        }
        ready
    }
}
