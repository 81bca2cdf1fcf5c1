//! Incoming RPCs on their way to the application.
//!
//! This module owns the [`Consumer`] queue that [`Rpc`]s arrive on, the
//! channel that carries a snapshot's data from its stream to the
//! application's [`SnapshotReader`] (with back-pressure), and the ordering of
//! a pipeline's answers. The types themselves (`Rpc`, `Responder`,
//! `SnapshotReader`) are the core's, shared by every transport.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_lite::{AsyncRead, Stream};
use raft_grpc_transport::Status;
use raft_grpc_transport::message::RaftResponse;
use raft_grpc_transport_api::{Responder, Rpc, SnapshotData};

/// An answer for one request of a stream: its position, and the result.
pub(crate) type Answer = (u64, Result<RaftResponse, Status>);

/// A responder that hands the answer to a stream's answer queue.
pub(crate) fn responder(seq: u64, tx: async_channel::Sender<Answer>) -> Responder {
    Responder::new(move |result| tx.try_send((seq, result)).is_ok())
}

type RecvFuture =
    Pin<Box<dyn Future<Output = Result<Result<Bytes, Status>, async_channel::RecvError>> + Send>>;

/// A snapshot's data as its stream delivers it, through a bounded channel:
/// the stream waits (and HTTP/2 flow control stops the sender) while the
/// application does not read.
pub(crate) struct ChannelSnapshot {
    rx: Pin<Box<async_channel::Receiver<Result<Bytes, Status>>>>,
    room: Arc<event_listener::Event>,
    failure: Arc<Mutex<Option<Status>>>,
    current: Bytes,
    recv: Option<RecvFuture>,
    done: bool,
}

impl ChannelSnapshot {
    pub(crate) fn new(
        rx: async_channel::Receiver<Result<Bytes, Status>>,
        room: Arc<event_listener::Event>,
        failure: Arc<Mutex<Option<Status>>>,
    ) -> Self {
        ChannelSnapshot {
            rx: Box::pin(rx),
            room,
            failure,
            current: Bytes::new(),
            recv: None,
            done: false,
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

impl SnapshotData for ChannelSnapshot {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let this = &mut *self;
        if !this.current.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut this.current))));
        }
        if this.done {
            return Poll::Ready(Ok(None));
        }
        let recv = this.recv.get_or_insert_with(|| {
            let rx = (*this.rx).clone();
            Box::pin(async move { rx.recv().await }) as RecvFuture
        });
        let result = std::task::ready!(recv.as_mut().poll(cx));
        this.recv = None;
        this.room.notify(1);
        Poll::Ready(match result {
            Ok(Ok(data)) => Ok(Some(data)),
            Ok(Err(status)) => {
                this.done = true;
                Err(io::Error::other(status))
            }
            Err(_) => {
                this.done = true;
                this.end().map(|()| None)
            }
        })
    }
}

impl AsyncRead for ChannelSnapshot {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.current.is_empty() {
            match std::task::ready!(self.as_mut().poll_chunk(cx))? {
                Some(chunk) => self.current = chunk,
                None => return Poll::Ready(Ok(0)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(n))
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

    /// Whether the transport closed the queue (what is left can still be
    /// received).
    pub fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }
}

impl Stream for Consumer {
    type Item = Rpc;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Rpc>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// One AppendEntries pipeline stream a peer opened, handed to the
/// transport's pipeline handler (see
/// [`GrpcTransport::set_pipeline_handler`](crate::GrpcTransport::set_pipeline_handler)):
/// its appends, in the order the peer sent them.
///
/// Each [`Rpc`] is an AppendEntries with its own responder. Answers may be
/// given in any order: the stream sends them back in request order. An
/// error answer ends the whole stream with that status, as gRPC streams
/// end (appends after it are not answered). At most `consumer_queue`
/// appends wait here; then the stream stops reading from the peer (HTTP/2
/// flow control holds it back).
#[derive(Debug)]
pub struct IncomingPipeline {
    rx: Pin<Box<async_channel::Receiver<Rpc>>>,
}

impl IncomingPipeline {
    pub(crate) fn new(rx: async_channel::Receiver<Rpc>) -> Self {
        IncomingPipeline { rx: Box::pin(rx) }
    }

    /// The next append, in the order the peer sent them; `None` once the
    /// stream is over. A stream that ends while appends still wait here
    /// (the peer reset it, its deadline passed, an answer was an error,
    /// the transport closed) drops them: their answers could go nowhere.
    pub async fn recv(&self) -> Option<Rpc> {
        let rpc = self.rx.recv().await.ok()?;
        self.live(rpc)
    }

    /// An append taken from a channel that is closed is one the stream
    /// left behind: a stream that ends well has taken an answer for every
    /// append it delivered.
    fn live(&self, rpc: Rpc) -> Option<Rpc> {
        (!self.rx.is_closed()).then_some(rpc)
    }
}

impl Stream for IncomingPipeline {
    type Item = Rpc;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Rpc>> {
        let rpc = std::task::ready!(self.rx.as_mut().poll_next(cx));
        Poll::Ready(rpc.and_then(|rpc| self.live(rpc)))
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
