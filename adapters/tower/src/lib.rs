//! The Raft gRPC service as a [`tower_service::Service`], to mount on a
//! tonic server (or route from axum, or serve with hyper) beside your other
//! gRPC services, on one port.
//!
//! [`RaftService`] answers `/proto.raft.v1.RaftTransportService/*` — the
//! service of the Go library `raft-grpc-transport`, wire-compatible with
//! it — for any request body `B: http_body::Body`, with a streaming
//! response body ([`RaftBody`]: DATA, then trailers). It holds no protocol
//! of its own: each request becomes a stream of a transport's core
//! `ServerEndpoint` (through the driver's
//! [`hosted`](raft_grpc_transport_driver::hosted) seam), which decides
//! every status, deadline, limit and answer order exactly as on the
//! transport's own port, and delivers the requests to the same consumer
//! queue, heartbeat handler and pipeline handler. This crate moves the
//! request body in and the answer out, and reads the peer's address from
//! the request.
//!
//! ```no_run
//! use raft_grpc_transport_tokio::{Config, GrpcTransport};
//! use raft_grpc_transport_tower::RaftService;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The transport: outgoing calls from its own client; incoming RPCs
//! // come from the tonic server below, not from a listener of its own.
//! let transport = GrpcTransport::builder("10.0.0.1:7000", Config::default()).build();
//! let consumer = transport.consumer(); // hand this to the Raft loop
//!
//! tonic::transport::Server::builder()
//!     // Windows that grow with the link: without it, a snapshot or a
//!     // pipeline moves one 1 MiB window per round trip.
//!     .http2_adaptive_window(Some(true))
//!     .add_service(RaftService::new(&transport))
//!     // .add_service(your_other_service)
//!     .serve("0.0.0.0:7000".parse()?)
//!     .await?;
//! # drop(consumer);
//! # Ok(())
//! # }
//! ```
//!
//! Tower layers apply as to any service: an authentication layer in front
//! of `RaftService` sees every Raft call (see the crate's tests), and the
//! transport's own authorizer still runs after it.
//!
//! # What the virtual connections mean
//!
//! The HTTP/2 server you run owns the connections, their PINGs and their
//! flow-control windows (configure those on it: turn on
//! `http2_adaptive_window`, as above, for links with a round trip of more
//! than a millisecond or so). The endpoint groups the
//! streams of one peer address into a virtual connection, for the
//! per-connection memory budget and the connection limits; the address
//! comes from tonic's `TcpConnectInfo` request extension, or from
//! [`RaftService::with_peer_info`].

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use raft_grpc_transport::call::ServerTransmit;
use raft_grpc_transport::http2::CANCEL;
use raft_grpc_transport::server::PeerInfo;
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_driver::hosted::{HostedServer, HostedStream, RequestInput};
use raft_grpc_transport_driver::{GrpcTransport, Runtime};

/// The gRPC service name it answers, as on the Go library's server.
pub const SERVICE_NAME: &str = "proto.raft.v1.RaftTransportService";

/// Most response bytes handed to the HTTP/2 stack per body poll.
const SEND_ROOM: usize = 256 * 1024;

/// Exchanges in a row that hand nothing out before a poll yields (a guard;
/// the endpoint's `again` is true only when something waits).
const IDLE_EXCHANGES: usize = 4;

/// Reads who sent a request from its head.
pub type PeerInfoFn = Arc<dyn Fn(&http::request::Parts) -> PeerInfo + Send + Sync>;

/// The Raft service of a transport, as a tower service: mount it on a
/// tonic server with `add_service`, or route `/{SERVICE_NAME}/*` to it.
///
/// Cheap to clone; every clone serves the same transport.
#[derive(Clone)]
pub struct RaftService {
    hosted: HostedServer,
    peer_info: PeerInfoFn,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl RaftService {
    /// Serves `transport`'s endpoint: its consumer, heartbeat handler,
    /// pipeline handler and authorizer get these requests, as they get
    /// those of the transport's own connections.
    pub fn new<R: Runtime>(transport: &GrpcTransport<R>) -> Self {
        RaftService {
            hosted: transport.hosted(),
            peer_info: Arc::new(tonic_peer_info),
        }
    }

    /// Ready once the transport closes (by `close`, or when its last
    /// handle is dropped); holding it does not keep the transport open.
    /// A shutdown signal for the server that mounts the service:
    /// `Server::builder().add_service(raft.clone()).serve_with_shutdown(addr, raft.closed())`.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let hosted = self.hosted.clone();
        async move { hosted.closed().await }
    }

    /// Reads the peer of each request with `f` (the address keys the
    /// virtual connection; certificates reach the authorizer) instead of
    /// tonic's `TcpConnectInfo` extension: for axum's `ConnectInfo`, a
    /// proxy's header, or a TLS layer of your own.
    pub fn with_peer_info(
        mut self,
        f: impl Fn(&http::request::Parts) -> PeerInfo + Send + Sync + 'static,
    ) -> Self {
        self.peer_info = Arc::new(f);
        self
    }
}

/// The peer address tonic's server records on every request it accepted
/// over TCP.
fn tonic_peer_info(parts: &http::request::Parts) -> PeerInfo {
    let addr = parts
        .extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr());
    PeerInfo::new(addr)
}

impl tonic::server::NamedService for RaftService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tower_service::Service<http::Request<B>> for RaftService
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<RaftBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The endpoint takes every stream and answers the ones it refuses.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let end_of_stream = body.is_end_stream();
        let peer = (self.peer_info)(&parts);
        let stream = self.hosted.open_stream(peer, &parts, end_of_stream);
        ResponseFuture {
            pump: Some(Box::new(Pump {
                stream,
                request: Box::new(RequestBody(Box::pin(body))),
                request_done: end_of_stream,
                inputs: Vec::new(),
                out: VecDeque::new(),
            })),
        }
    }
}

/// Request body frames, whatever the body's type: data as `Bytes` (a
/// slice, not a copy, when the stack's data is `Bytes`), trailers as
/// `None`, a failure as the HTTP/2 error code to report.
trait RequestSource: Send {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Option<Bytes>, u32>>>;
}

struct RequestBody<B>(Pin<Box<B>>);

impl<B> RequestSource for RequestBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Option<Bytes>, u32>>> {
        match self.0.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            // The stack says only that the body failed (a reset, a lost
            // connection): the stream is cancelled either way.
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(CANCEL))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    Poll::Ready(Some(Ok(Some(bytes))))
                }
                Err(_trailers) => Poll::Ready(Some(Ok(None))),
            },
        }
    }
}

/// One request's stream: its body goes in, its answer comes out.
struct Pump {
    stream: HostedStream,
    request: Box<dyn RequestSource>,
    request_done: bool,
    inputs: Vec<RequestInput>,
    out: VecDeque<ServerTransmit>,
}

impl Pump {
    /// The next part of the answer; takes request data on the way, as much
    /// as the stream has room for.
    fn poll_transmit(&mut self, cx: &mut Context<'_>) -> Poll<Option<ServerTransmit>> {
        let mut idle = 0;
        loop {
            if let Some(transmit) = self.out.pop_front() {
                return Poll::Ready(Some(transmit));
            }
            if self.stream.is_finished() {
                return Poll::Ready(None);
            }
            let mut room = self.stream.request_room();
            // Stopped reading for want of room, not for want of data.
            let mut starved = false;
            while !self.request_done {
                if room == 0 {
                    starved = true;
                    break;
                }
                match self.request.poll_next(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(Some(data)))) => {
                        room = room.saturating_sub(data.len());
                        self.inputs.push(RequestInput::Data(data));
                    }
                    // gRPC requests carry no trailers that mean anything.
                    Poll::Ready(Some(Ok(None))) => {}
                    Poll::Ready(None) => {
                        self.request_done = true;
                        self.inputs.push(RequestInput::End);
                    }
                    Poll::Ready(Some(Err(code))) => {
                        self.request_done = true;
                        self.inputs.push(RequestInput::Reset(code));
                    }
                }
            }
            let exchanged = self
                .stream
                .exchange(cx, &mut self.inputs, SEND_ROOM, &mut self.out);
            if !self.out.is_empty() || exchanged.finished {
                continue;
            }
            let more_room = starved && self.stream.request_room() > 0;
            if (exchanged.again || more_room) && idle < IDLE_EXCHANGES {
                idle += 1;
                continue;
            }
            if exchanged.again || more_room {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
    }
}

/// The answer's head: ready once the endpoint decided it (at once for a
/// refused call, at the first response for a pipeline).
pub struct ResponseFuture {
    pump: Option<Box<Pump>>,
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<RaftBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(pump) = self.pump.as_mut() else {
            return Poll::Pending;
        };
        loop {
            match pump.poll_transmit(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(ServerTransmit::Head {
                    head,
                    end_of_stream,
                })) => {
                    let pump = self.pump.take().filter(|_| !end_of_stream);
                    return Poll::Ready(Ok(head.map(|()| RaftBody { pump })));
                }
                // The endpoint puts the head first; nothing else comes
                // before it.
                Poll::Ready(Some(_)) => continue,
                // Reset by the peer before any answer: the stack drops
                // what this returns; it still gets a well-formed one.
                Poll::Ready(None) => {
                    self.pump = None;
                    let status = Status::new(Code::Cancelled, "the stream was reset");
                    return Poll::Ready(Ok(trailers_only(&status)));
                }
            }
        }
    }
}

/// A Trailers-Only answer with `status`.
fn trailers_only(status: &Status) -> http::Response<RaftBody> {
    let mut response = http::Response::new(RaftBody { pump: None });
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        http::HeaderValue::from(status.code().as_i32()),
    );
    response
}

/// The answer's body: the response messages as DATA, then the trailers.
pub struct RaftBody {
    /// `None`: a Trailers-Only answer, whose head said it all.
    pump: Option<Box<Pump>>,
}

impl std::fmt::Debug for RaftBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftBody")
            .field("trailers_only", &self.pump.is_none())
            .finish()
    }
}

impl Body for RaftBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(pump) = self.pump.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            return match pump.poll_transmit(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(ServerTransmit::Data(data))) => {
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Poll::Ready(Some(ServerTransmit::Trailers(trailers))) => {
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                // Sent already, by the response future.
                Poll::Ready(Some(ServerTransmit::Head { .. })) => continue,
                Poll::Ready(None) => {
                    self.pump = None;
                    Poll::Ready(None)
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pump
            .as_ref()
            .is_none_or(|p| p.out.is_empty() && p.stream.is_finished())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.pump {
            None => SizeHint::with_exact(0),
            Some(_) => SizeHint::default(),
        }
    }
}
