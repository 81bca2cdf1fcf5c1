//! The server side of one gRPC call.
//!
//! [`ServerCall`] owns one incoming call: it validates the request head
//! (refusing it with the right HTTP or gRPC status), decodes requests as
//! data arrives, turns them into [`RaftRequest`]s for the application
//! (an InstallSnapshot's data as it arrives, counted and checksummed by a
//! [`SnapshotReceiver`]), takes the application's responses, and emits the
//! response head, messages and trailers, or a Trailers-Only answer. It
//! enforces the deadline from `grpc-timeout` and, for snapshots, a stall
//! detector. Where requests go (consumer queue or heartbeat handler) is the
//! caller's business.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response};

use super::SendQueue;
use crate::framing::{MessageBody, MessageDecoder, MessageEncoder};
use crate::head::{RequestRejection, RpcMethod, response_head, trailers_only, validate_request};
use crate::message::{
    InstallSnapshotRequest, RaftMessage, RaftRequest, RaftResponse, SnapshotChunk,
};
use crate::profile::WireProfile;
use crate::snapshot::{SnapshotReceiver, StallDetector};
use crate::status::{Code, Status};

/// Limits of a server call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCallConfig {
    /// Largest request message accepted (default 4 MiB, as grpc-go).
    pub max_request_len: usize,
    /// Largest response message sent (default 4 MiB).
    pub max_response_len: usize,
    /// An InstallSnapshot stream that delivers no data for this long, while
    /// the application waits for data, fails with `DEADLINE_EXCEEDED`
    /// (default 60 s; `None` disables it).
    pub snapshot_stall_timeout: Option<Duration>,
    /// Bytes of answers waiting for the client's receive window beyond
    /// which the call takes no more request data (default 64 KiB): a
    /// client that does not read its answers is held back by HTTP/2 flow
    /// control instead of making the server queue them without bound.
    pub max_unsent_response: usize,
    /// The numbering requests arrive in (default [`WireProfile::V0_2`]).
    /// Responses are numbered alike under every profile; RequestPreVote,
    /// which v0.1 lacks, is served under both.
    pub wire_profile: WireProfile,
}

crate::config::setters!(ServerCallConfig {
    with_max_request_len => max_request_len: usize,
    with_max_response_len => max_response_len: usize,
    with_snapshot_stall_timeout => snapshot_stall_timeout: Option<Duration>,
    with_max_unsent_response => max_unsent_response: usize,
    with_wire_profile => wire_profile: WireProfile,
});

impl Default for ServerCallConfig {
    fn default() -> Self {
        crate::config::Config::default().server().call
    }
}

/// What happened on a server call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A request to answer with [`ServerCall::respond`] (a pipeline answers
    /// its requests in order). An InstallSnapshot request's data follows as
    /// [`ServerEvent::SnapshotData`] and [`ServerEvent::SnapshotEnd`].
    Request(RaftRequest),
    /// The next bytes of the snapshot being installed.
    SnapshotData(Bytes),
    /// Every declared snapshot byte arrived (verified) and the client
    /// finished sending.
    SnapshotEnd,
    /// The call ended before it was answered: the client reset it, the
    /// connection went away, the deadline passed, or the client sent
    /// something invalid. Responses are no longer accepted.
    Failed(Status),
}

/// Why [`ServerCall::respond`] refused a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// The response is not of the method's type.
    #[error("a {0:?} response does not answer {1}")]
    WrongType(&'static str, &'static str),
    /// No request is waiting for an answer.
    #[error("no request is waiting for a response")]
    NothingToAnswer,
    /// This request was answered already.
    #[error("the request was answered already")]
    AlreadyAnswered,
    /// The call is already over.
    #[error("the call is over: {0}")]
    Finished(Status),
    /// The response is over the send limit; the client gets
    /// `RESOURCE_EXHAUSTED`.
    #[error("{0}")]
    TooLarge(Status),
}

/// What to put on the call's HTTP/2 stream.
#[derive(Debug)]
pub enum ServerTransmit {
    /// Send the response head; `end_of_stream` makes it a Trailers-Only
    /// answer that ends the call.
    Head {
        /// The head.
        head: Response<()>,
        /// Whether the HEADERS frame ends the stream.
        end_of_stream: bool,
    },
    /// Send these bytes as DATA (never more than the capacity offered).
    Data(Bytes),
    /// Send the trailers; they end the stream.
    Trailers(HeaderMap),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The call is open.
    Open,
    /// The status is decided and queued; nothing more is accepted.
    Done,
}

/// The server side of one gRPC call.
///
/// ```
/// use std::time::Instant;
/// use http::uri::Authority;
/// use raft_grpc_transport::call::{ServerCall, ServerCallConfig, ServerEvent, ServerTransmit};
/// use raft_grpc_transport::framing::MessageEncoder;
/// use raft_grpc_transport::head::{RequestHead, RpcMethod};
/// use raft_grpc_transport::message::{RaftRequest, RaftResponse, RequestVoteRequest, RequestVoteResponse};
///
/// let now = Instant::now();
/// let head = RequestHead::new(RpcMethod::RequestVote, Authority::from_static("me"), None);
/// let (parts, ()) = head.to_request().into_parts();
/// let mut call = ServerCall::new(&parts, ServerCallConfig::default(), now).unwrap();
/// let request = RequestVoteRequest { term: 3, ..Default::default() };
/// call.handle_data(MessageEncoder::default().encode(&request).unwrap().to_bytes(), now);
/// call.handle_end_of_stream(now);
/// assert_eq!(call.poll_event(), Some(ServerEvent::Request(RaftRequest::RequestVote(request))));
///
/// call.respond(RaftResponse::RequestVote(RequestVoteResponse { term: 3, granted: true, ..Default::default() })).unwrap();
/// assert!(matches!(call.poll_transmit(65_535), Some(ServerTransmit::Head { end_of_stream: false, .. })));
/// assert!(matches!(call.poll_transmit(65_535), Some(ServerTransmit::Data(_))));
/// assert!(matches!(call.poll_transmit(65_535), Some(ServerTransmit::Trailers(_))));
/// assert!(call.is_finished());
/// ```
#[derive(Debug)]
pub struct ServerCall {
    /// `None` for a call refused at its head.
    method: Option<RpcMethod>,
    deadline: Option<Instant>,
    decoder: MessageDecoder,
    encoder: MessageEncoder,
    /// See [`ServerCallConfig::max_unsent_response`].
    max_unsent: usize,
    phase: Phase,
    /// Requests received (for a snapshot: the metadata message counts).
    received: usize,
    /// Requests answered.
    answered: usize,
    /// The client half-closed.
    request_ended: bool,
    snapshot: Option<SnapshotReceiver>,
    stall: Option<StallDetector>,
    events: VecDeque<ServerEvent>,
    head_queued: bool,
    head: Option<ServerTransmit>,
    data: SendQueue,
    trailers: Option<HeaderMap>,
    transmit_done: bool,
    final_status: Option<Status>,
}

impl ServerCall {
    /// Accepts a request head received at `now`, or says how to refuse it
    /// (send [`RequestRejection::to_response`] with END_STREAM).
    pub fn new(
        head: &http::request::Parts,
        config: ServerCallConfig,
        now: Instant,
    ) -> Result<ServerCall, RequestRejection> {
        let accepted = validate_request(head)?;
        let stall = match (accepted.method, config.snapshot_stall_timeout) {
            (RpcMethod::InstallSnapshot, Some(timeout)) => Some(StallDetector::new(timeout, now)),
            _ => None,
        };
        let mut call = ServerCall {
            method: Some(accepted.method),
            deadline: accepted.timeout.and_then(|t| now.checked_add(t)),
            decoder: MessageDecoder::new(config.max_request_len),
            encoder: MessageEncoder::new(config.max_response_len, usize::MAX)
                .with_profile(config.wire_profile),
            max_unsent: config.max_unsent_response.max(1),
            phase: Phase::Open,
            received: 0,
            answered: 0,
            request_ended: false,
            snapshot: None,
            stall,
            events: VecDeque::new(),
            head_queued: false,
            head: None,
            data: SendQueue::default(),
            trailers: None,
            transmit_done: false,
            final_status: None,
        };
        // A pipeline's response head goes out at once, before any answer:
        // a bidirectional stream's client may wait for the head before it
        // sends its first request (tonic's generated client returns from
        // opening the stream only once the head arrived).
        if accepted.method == RpcMethod::AppendEntriesPipeline {
            call.queue_head();
        }
        Ok(call)
    }

    /// A call refused at its head: it sends `head` (a refusal from
    /// [`RequestRejection::to_response`], or a Trailers-Only answer) with
    /// END_STREAM, and nothing else.
    pub fn rejected(head: Response<()>) -> ServerCall {
        let status = Status::from_headers(head.headers())
            .unwrap_or_else(|| Status::new(Code::Unknown, "request refused"));
        ServerCall {
            method: None,
            deadline: None,
            decoder: MessageDecoder::new(0),
            encoder: MessageEncoder::new(0, usize::MAX),
            max_unsent: 1,
            phase: Phase::Done,
            received: 0,
            answered: 0,
            request_ended: false,
            snapshot: None,
            stall: None,
            events: VecDeque::new(),
            head_queued: true,
            head: Some(ServerTransmit::Head {
                head,
                end_of_stream: true,
            }),
            data: SendQueue::default(),
            trailers: None,
            transmit_done: false,
            final_status: Some(status),
        }
    }

    /// The method called (`None` for a call refused at its head).
    pub fn method(&self) -> Option<RpcMethod> {
        self.method
    }

    /// The deadline from the client's `grpc-timeout`, if it sent one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How far an InstallSnapshot stream got (`None` for other methods, or
    /// before its metadata arrived).
    pub fn snapshot_progress(&self, now: Instant) -> Option<crate::snapshot::SnapshotProgress> {
        self.snapshot.as_ref().map(|r| r.progress(now))
    }

    /// Whether the call accepts more request data now: false once it is
    /// over, while the application has not taken what already arrived, or
    /// while more than [`ServerCallConfig::max_unsent_response`] bytes of
    /// answers wait for the client's receive window.
    pub fn wants_data(&self) -> bool {
        self.phase == Phase::Open
            && !self.request_ended
            && self.events.is_empty()
            && self.data.len() < self.max_unsent
    }

    /// Whether the call is waiting for request data the client owes it: a
    /// unary or InstallSnapshot call before its first message, or any call
    /// in the middle of a message. A pipeline between appends owes nothing
    /// (it may idle as long as the leader has nothing to replicate), nor
    /// does a call that takes no data now ([`wants_data`](Self::wants_data)).
    pub fn awaits_request_data(&self) -> bool {
        self.wants_data()
            && (self.decoder.buffered_len() > 0
                || (self.received == 0 && self.method != Some(RpcMethod::AppendEntriesPipeline)))
    }

    /// Bytes of request data the call holds in a message not yet complete.
    pub fn partial_request_len(&self) -> usize {
        self.decoder.buffered_len()
    }

    /// The server gives up on the call for a limit of its own (no request
    /// data for too long, a memory budget): the client gets `status`, the
    /// application a [`ServerEvent::Failed`]. Does nothing once the call's
    /// status is decided.
    pub fn abandon(&mut self, status: Status) {
        self.fail(status);
    }

    /// Whether everything has been transmitted: the call is over.
    pub fn is_finished(&self) -> bool {
        self.transmit_done
    }

    /// Whether something waits to be transmitted (the head, data or the
    /// trailers); data only counts with capacity to send it.
    pub fn has_transmit(&self) -> bool {
        !self.transmit_done
            && (self.head.is_some() || !self.data.is_empty() || self.trailers.is_some())
    }

    /// Whether the call's status is decided (it may still be transmitting).
    pub fn is_answered(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The application holds snapshot data it has not read yet (buffered
    /// outside this call): the stream is not stalled, whatever the time.
    pub fn hold_stall(&mut self, now: Instant) {
        if let Some(stall) = &mut self.stall {
            stall.progress(now);
        }
    }

    /// Request DATA arrived.
    pub fn handle_data(&mut self, data: Bytes, now: Instant) {
        if self.phase != Phase::Open || self.request_ended {
            return;
        }
        if let Some(stall) = &mut self.stall {
            stall.progress(now);
        }
        self.decoder.push(data);
        loop {
            match self.decoder.next_message() {
                Ok(Some(body)) => {
                    if let Err(status) = self.handle_message(body, now) {
                        return self.fail(status);
                    }
                }
                Ok(None) => return,
                Err(e) => return self.fail(e.status()),
            }
        }
    }

    fn handle_message(&mut self, body: MessageBody, now: Instant) -> Result<(), Status> {
        self.received += 1;
        let unary_again = || {
            Status::new(
                Code::Internal,
                "the client sent more than one request message on a unary call",
            )
        };
        let Some(method) = self.method else {
            return Ok(());
        };
        // The profile numbers the request messages (see crate::profile).
        let profile = self.encoder.profile();
        let event = match method {
            RpcMethod::AppendEntries
            | RpcMethod::RequestVote
            | RpcMethod::RequestPreVote
            | RpcMethod::TimeoutNow
                if self.received > 1 =>
            {
                return Err(unary_again());
            }
            RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline => {
                RaftRequest::AppendEntries(decode(profile, body)?)
            }
            RpcMethod::RequestVote => RaftRequest::RequestVote(decode(profile, body)?),
            RpcMethod::RequestPreVote => RaftRequest::RequestPreVote(decode(profile, body)?),
            RpcMethod::TimeoutNow => RaftRequest::TimeoutNow(decode(profile, body)?),
            RpcMethod::InstallSnapshot => return self.handle_snapshot_message(body, now),
        };
        self.events.push_back(ServerEvent::Request(event));
        Ok(())
    }

    fn handle_snapshot_message(&mut self, body: MessageBody, now: Instant) -> Result<(), Status> {
        // The profile numbers the request messages (see crate::profile).
        let profile = self.encoder.profile();
        let chunk = match &mut self.snapshot {
            None => {
                let (meta, chunk) = InstallSnapshotRequest::decode_first_message(profile, body)
                    .map_err(|e| e.status())?;
                self.snapshot = Some(SnapshotReceiver::new(meta.size, now));
                self.events
                    .push_back(ServerEvent::Request(RaftRequest::InstallSnapshot(meta)));
                chunk
            }
            Some(_) => decode::<SnapshotChunk>(profile, body)?,
        };
        let Some(receiver) = &mut self.snapshot else {
            return Ok(());
        };
        let data = receiver.receive(chunk, now).map_err(|e| e.status())?;
        if !data.is_empty() {
            self.events.push_back(ServerEvent::SnapshotData(data));
        }
        Ok(())
    }

    /// The client finished sending (END_STREAM).
    pub fn handle_end_of_stream(&mut self, now: Instant) {
        let _ = now;
        if self.phase != Phase::Open || self.request_ended {
            return;
        }
        self.request_ended = true;
        self.stall = None;
        if let Err(e) = self.decoder.finish() {
            return self.fail(e.status());
        }
        match self.method.unwrap_or(RpcMethod::AppendEntries) {
            RpcMethod::AppendEntriesPipeline if self.answered == self.received => {
                self.end(Status::ok());
            }
            RpcMethod::AppendEntriesPipeline => {}
            RpcMethod::InstallSnapshot => match &self.snapshot {
                None => self.fail(Status::new(
                    Code::Internal,
                    "InstallSnapshot stream ended without its metadata message",
                )),
                Some(receiver) => match receiver.finish() {
                    Ok(()) => self.events.push_back(ServerEvent::SnapshotEnd),
                    Err(e) => self.fail(e.status()),
                },
            },
            _ if self.received == 0 => self.fail(Status::new(
                Code::Internal,
                "the client sent no request message on a unary call",
            )),
            _ => {}
        }
    }

    /// The client reset the stream with this HTTP/2 error code.
    pub fn handle_reset(&mut self, error_code: u32, now: Instant) {
        let _ = now;
        self.abort(Status::from_rst_stream(error_code));
    }

    /// The connection is gone.
    pub fn handle_connection_lost(&mut self, status: Status) {
        self.abort(status);
    }

    /// Time passed: fails the call when its deadline passes, or when a
    /// snapshot stalls. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Open {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return self.fail(Status::new(Code::DeadlineExceeded, "deadline exceeded"));
        }
        if let Some(stall) = &mut self.stall {
            if !self.events.is_empty() {
                // The application has data it has not taken: not a stall.
                stall.progress(now);
            } else if let Err(e) = stall.check(now) {
                self.fail(e.status());
            }
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Open {
            return None;
        }
        let stall = self.stall.as_ref().map(StallDetector::deadline);
        match (self.deadline, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, without taking it (an adapter that feeds snapshot
    /// data only as fast as the application reads it looks before it
    /// takes).
    pub fn peek_event(&self) -> Option<&ServerEvent> {
        self.events.front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Answers the oldest unanswered request. A unary or InstallSnapshot
    /// call ends with `OK` after it; a pipeline ends once the client has
    /// finished sending and every request is answered.
    pub fn respond(&mut self, response: RaftResponse) -> Result<(), RespondError> {
        if self.phase != Phase::Open {
            return Err(RespondError::Finished(self.final_status_or_ok()));
        }
        let Some(method) = self.method else {
            return Err(RespondError::NothingToAnswer);
        };
        if !response.answers(method) {
            return Err(RespondError::WrongType(
                response.proto_name(),
                method.name(),
            ));
        }
        if self.answered >= self.received {
            return Err(RespondError::NothingToAnswer);
        }
        let encoded = response.encode(&self.encoder);
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                let status = e.status();
                self.fail(status.clone());
                return Err(RespondError::TooLarge(status));
            }
        };
        self.queue_head();
        self.data.push(encoded);
        self.answered += 1;
        let done = match method {
            RpcMethod::AppendEntriesPipeline => {
                self.request_ended && self.answered == self.received
            }
            _ => true,
        };
        if done {
            self.end(Status::ok());
        }
        Ok(())
    }

    /// Ends the call with an error status (an error from the application's
    /// handler, for instance); its message reaches the client as text.
    pub fn respond_error(&mut self, status: Status) -> Result<(), RespondError> {
        if self.phase != Phase::Open {
            return Err(RespondError::Finished(self.final_status_or_ok()));
        }
        self.end(status);
        Ok(())
    }

    /// The next thing to put on the stream, using at most `capacity` bytes
    /// of send window for data.
    pub fn poll_transmit(&mut self, capacity: usize) -> Option<ServerTransmit> {
        if self.transmit_done {
            return None;
        }
        if let Some(head) = self.head.take() {
            if let ServerTransmit::Head {
                end_of_stream: true,
                ..
            } = head
            {
                self.transmit_done = true;
            }
            return Some(head);
        }
        if let Some(data) = self.data.pop(capacity) {
            return Some(ServerTransmit::Data(data));
        }
        if self.data.is_empty() {
            if let Some(trailers) = self.trailers.take() {
                self.transmit_done = true;
                return Some(ServerTransmit::Trailers(trailers));
            }
        }
        None
    }

    /// Bytes of response data waiting for send capacity.
    pub fn send_wanted(&self) -> usize {
        self.data.len()
    }

    fn queue_head(&mut self) {
        if !self.head_queued {
            self.head_queued = true;
            self.head = Some(ServerTransmit::Head {
                head: response_head(),
                end_of_stream: false,
            });
        }
    }

    /// Decides the call's status and queues it: trailers after the head,
    /// or Trailers-Only when nothing was sent yet.
    fn end(&mut self, status: Status) {
        self.phase = Phase::Done;
        self.stall = None;
        if self.head_queued {
            self.trailers = Some(status.to_trailers());
        } else {
            self.head_queued = true;
            self.head = Some(ServerTransmit::Head {
                head: trailers_only(&status),
                end_of_stream: true,
            });
        }
        self.final_status = Some(status);
    }

    /// A failure the client caused or the clock decided: the client gets
    /// the status, the application a `Failed` event.
    fn fail(&mut self, status: Status) {
        if self.phase != Phase::Open {
            return;
        }
        self.data.clear();
        self.end(status.clone());
        self.events.push_back(ServerEvent::Failed(status));
    }

    /// The stream is gone: nothing can be sent.
    fn abort(&mut self, status: Status) {
        if self.transmit_done {
            return;
        }
        self.transmit_done = true;
        self.head = None;
        self.data.clear();
        self.trailers = None;
        if self.phase == Phase::Open {
            self.phase = Phase::Done;
            self.final_status = Some(status.clone());
            self.events.push_back(ServerEvent::Failed(status));
        }
    }

    fn final_status_or_ok(&self) -> Status {
        self.final_status.clone().unwrap_or_else(Status::ok)
    }

    /// The call's status, once it is decided.
    pub fn final_status(&self) -> Option<Status> {
        self.final_status.clone()
    }

    /// The code of the call's status, once it is decided.
    pub fn final_code(&self) -> Option<Code> {
        self.final_status.as_ref().map(Status::code)
    }

    /// Request messages received so far (for InstallSnapshot, the metadata
    /// message and every chunk; one that fails to decode counts, and fails
    /// the call).
    pub fn messages_received(&self) -> u64 {
        self.received as u64
    }

    /// Response messages queued so far.
    pub fn messages_sent(&self) -> u64 {
        self.answered as u64
    }
}

fn decode<M: RaftMessage>(profile: WireProfile, body: MessageBody) -> Result<M, Status> {
    M::decode_with(profile, body).map_err(|e| e.status())
}

#[cfg(test)]
mod tests {
    use http::uri::Authority;

    use prost::Message as _;

    use super::*;
    use crate::head::RequestHead;
    use crate::message::*;
    use crate::snapshot::SnapshotSender;
    use crate::wire;

    fn call(method: RpcMethod, timeout: Option<Duration>, now: Instant) -> ServerCall {
        let head = RequestHead {
            method,
            authority: Authority::from_static("me"),
            timeout,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        let (parts, ()) = head.to_request().into_parts();
        ServerCall::new(&parts, ServerCallConfig::default(), now).unwrap()
    }

    fn framed<M: RaftMessage>(message: &M) -> Bytes {
        MessageEncoder::new(usize::MAX, usize::MAX)
            .encode(message)
            .unwrap()
            .to_bytes()
    }

    /// Drains transmits: (head end_of_stream flags, data bytes, status).
    fn drain(call: &mut ServerCall) -> (Vec<bool>, Vec<u8>, Option<Status>) {
        let (mut heads, mut data, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(t) = call.poll_transmit(usize::MAX) {
            match t {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => {
                    heads.push(end_of_stream);
                    if end_of_stream {
                        status = Status::from_headers(head.headers());
                    }
                }
                ServerTransmit::Data(d) => data.extend_from_slice(&d),
                ServerTransmit::Trailers(t) => status = Some(Status::from_trailers(&t)),
            }
        }
        (heads, data, status)
    }

    fn events(call: &mut ServerCall) -> Vec<ServerEvent> {
        std::iter::from_fn(|| call.poll_event()).collect()
    }

    #[test]
    fn rejected_heads_say_how() {
        let now = Instant::now();
        let (parts, ()) = http::Request::builder()
            .method("GET")
            .uri("http://me/proto.raft.v1.RaftTransportService/AppendEntries")
            .body(())
            .unwrap()
            .into_parts();
        let err = ServerCall::new(&parts, ServerCallConfig::default(), now).unwrap_err();
        assert!(matches!(err, RequestRejection::MethodNotAllowed(_)));
    }

    #[test]
    fn unary_append_entries() {
        let now = Instant::now();
        let mut c = call(RpcMethod::AppendEntries, None, now);
        let request = AppendEntriesRequest {
            header: RpcHeader::new(3, "a", "b"),
            term: 2,
            entries: vec![Log::command(1, 2, Bytes::from_static(b"x"))],
            ..Default::default()
        };
        let bytes = framed(&request);
        for b in bytes.iter() {
            c.handle_data(Bytes::copy_from_slice(&[*b]), now);
        }
        assert_eq!(
            events(&mut c),
            vec![ServerEvent::Request(RaftRequest::AppendEntries(request))]
        );
        assert_eq!(
            c.respond(RaftResponse::RequestVote(RequestVoteResponse::default())),
            Err(RespondError::WrongType(
                "RequestVoteResponse",
                "AppendEntries"
            ))
        );
        let response = AppendEntriesResponse {
            term: 2,
            success: true,
            ..Default::default()
        };
        c.respond(RaftResponse::AppendEntries(response.clone()))
            .unwrap();
        let (heads, data, status) = drain(&mut c);
        assert_eq!(heads, vec![false]);
        assert_eq!(&data[5..], &response.encode_to_bytes()[..]);
        assert_eq!(status, Some(Status::ok()));
        assert!(c.is_finished());
        assert!(matches!(
            c.respond(RaftResponse::AppendEntries(response)),
            Err(RespondError::Finished(_))
        ));
    }

    #[test]
    fn handler_error_is_trailers_only() {
        let now = Instant::now();
        let mut c = call(RpcMethod::RequestVote, None, now);
        c.handle_data(framed(&RequestVoteRequest::default()), now);
        let _ = events(&mut c);
        c.respond_error(Status::new(Code::Unknown, "raft: shutting down"))
            .unwrap();
        let (heads, data, status) = drain(&mut c);
        assert_eq!(heads, vec![true]);
        assert!(data.is_empty());
        assert_eq!(status.unwrap().message(), "raft: shutting down");
    }

    #[test]
    fn two_requests_on_a_unary_call_are_internal() {
        let now = Instant::now();
        let mut c = call(RpcMethod::TimeoutNow, None, now);
        let mut two = framed(&TimeoutNowRequest::default()).to_vec();
        two.extend_from_slice(&framed(&TimeoutNowRequest::default()));
        c.handle_data(two.into(), now);
        let ev = events(&mut c);
        assert!(matches!(&ev[1], ServerEvent::Failed(s) if s.code() == Code::Internal));
        assert_eq!(drain(&mut c).2.unwrap().code(), Code::Internal);
    }

    #[test]
    fn no_request_on_a_unary_call_is_internal() {
        let now = Instant::now();
        let mut c = call(RpcMethod::RequestPreVote, None, now);
        c.handle_end_of_stream(now);
        assert_eq!(drain(&mut c).2.unwrap().code(), Code::Internal);
    }

    #[test]
    fn oversized_request_is_resource_exhausted() {
        let now = Instant::now();
        let head = RequestHead {
            method: RpcMethod::AppendEntries,
            authority: Authority::from_static("me"),
            timeout: None,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        let (parts, ()) = head.to_request().into_parts();
        let config = ServerCallConfig {
            max_request_len: 10,
            ..ServerCallConfig::default()
        };
        let mut c = ServerCall::new(&parts, config, now).unwrap();
        c.handle_data(Bytes::from_static(&[0, 0, 0, 1, 0]), now);
        assert_eq!(drain(&mut c).2.unwrap().code(), Code::ResourceExhausted);
        assert!(matches!(&events(&mut c)[0], ServerEvent::Failed(_)));
    }

    #[test]
    fn deadline_fails_the_call_for_both_sides() {
        let now = Instant::now();
        let mut c = call(
            RpcMethod::RequestVote,
            Some(Duration::from_millis(100)),
            now,
        );
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_millis(100)));
        c.handle_timeout(now + Duration::from_millis(100));
        assert!(
            matches!(&events(&mut c)[0], ServerEvent::Failed(s) if s.code() == Code::DeadlineExceeded)
        );
        assert_eq!(drain(&mut c).2.unwrap().code(), Code::DeadlineExceeded);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn client_reset_aborts_without_transmitting() {
        let now = Instant::now();
        let mut c = call(RpcMethod::RequestVote, None, now);
        c.handle_data(framed(&RequestVoteRequest::default()), now);
        c.handle_reset(0x8, now);
        let ev = events(&mut c);
        assert!(matches!(&ev[1], ServerEvent::Failed(s) if s.code() == Code::Cancelled));
        assert!(c.poll_transmit(100).is_none());
        assert!(
            c.respond(RaftResponse::RequestVote(RequestVoteResponse::default()))
                .is_err()
        );
    }

    #[test]
    fn pipeline_answers_in_order_and_ends_after_the_client() {
        let now = Instant::now();
        let mut c = call(RpcMethod::AppendEntriesPipeline, None, now);
        for i in 1..=3u64 {
            c.handle_data(
                framed(&AppendEntriesRequest {
                    term: i,
                    ..Default::default()
                }),
                now,
            );
        }
        assert_eq!(events(&mut c).len(), 3);
        for i in 1..=2u64 {
            c.respond(RaftResponse::AppendEntries(AppendEntriesResponse {
                term: i,
                ..Default::default()
            }))
            .unwrap();
        }
        c.handle_end_of_stream(now);
        let (heads, _, status) = drain(&mut c);
        assert_eq!(heads, vec![false]);
        assert_eq!(status, None, "one request still unanswered");
        c.respond(RaftResponse::AppendEntries(AppendEntriesResponse {
            term: 3,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(drain(&mut c).2, Some(Status::ok()));
        assert_eq!(
            c.respond(RaftResponse::AppendEntries(AppendEntriesResponse::default())),
            Err(RespondError::Finished(Status::ok()))
        );
    }

    fn snapshot_stream(
        data: &[u8],
        chunk: usize,
        now: Instant,
    ) -> (InstallSnapshotRequest, Vec<Bytes>) {
        let meta = InstallSnapshotRequest {
            term: 4,
            size: data.len() as u64,
            ..Default::default()
        };
        let mut sender = SnapshotSender::new(meta.clone(), chunk, now);
        let mut messages = vec![framed(&meta)];
        for c in sender.push(Bytes::copy_from_slice(data), now).unwrap() {
            messages.push(framed(&c));
        }
        (meta, messages)
    }

    #[test]
    fn snapshot_install() {
        let now = Instant::now();
        let mut c = call(
            RpcMethod::InstallSnapshot,
            Some(Duration::from_secs(10)),
            now,
        );
        let (meta, messages) = snapshot_stream(b"0123456789", 3, now);
        let mut received = Vec::new();
        for m in messages {
            c.handle_data(m, now);
            while let Some(ev) = c.poll_event() {
                match ev {
                    ServerEvent::Request(RaftRequest::InstallSnapshot(m)) => {
                        assert_eq!(m, meta)
                    }
                    ServerEvent::SnapshotData(d) => received.extend_from_slice(&d),
                    other => panic!("{other:?}"),
                }
            }
        }
        c.handle_end_of_stream(now);
        assert_eq!(events(&mut c), vec![ServerEvent::SnapshotEnd]);
        assert_eq!(received, b"0123456789");
        let progress = c.snapshot_progress(now).unwrap();
        assert_eq!((progress.bytes, progress.total), (10, 10));
        c.respond(RaftResponse::InstallSnapshot(InstallSnapshotResponse {
            term: 4,
            success: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(drain(&mut c).2, Some(Status::ok()));
    }

    #[test]
    fn snapshot_short_stream_is_data_loss() {
        let now = Instant::now();
        let mut c = call(RpcMethod::InstallSnapshot, None, now);
        let (_, messages) = snapshot_stream(b"0123456789", 3, now);
        for m in &messages[..3] {
            c.handle_data(m.clone(), now);
        }
        c.handle_end_of_stream(now);
        let ev = events(&mut c);
        assert!(matches!(ev.last(), Some(ServerEvent::Failed(s)) if s.code() == Code::DataLoss));
        assert_eq!(drain(&mut c).2.unwrap().code(), Code::DataLoss);
    }

    #[test]
    fn snapshot_data_in_first_message_and_empty_chunks_are_accepted() {
        let now = Instant::now();
        let mut c = call(RpcMethod::InstallSnapshot, None, now);
        let first = wire::InstallSnapshotRequest {
            size: 5,
            data: Bytes::from_static(b"abc"),
            ..Default::default()
        };
        let mut first_framed = vec![0u8];
        let body = first.encode_to_vec();
        first_framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        first_framed.extend_from_slice(&body);
        c.handle_data(first_framed.into(), now);
        c.handle_data(framed(&SnapshotChunk::default()), now);
        c.handle_data(
            framed(&SnapshotChunk {
                data: Bytes::from_static(b"de"),
                data_crc32c: None,
            }),
            now,
        );
        c.handle_end_of_stream(now);
        let ev = events(&mut c);
        assert_eq!(ev[1], ServerEvent::SnapshotData(Bytes::from_static(b"abc")));
        assert_eq!(ev[2], ServerEvent::SnapshotData(Bytes::from_static(b"de")));
        assert_eq!(ev[3], ServerEvent::SnapshotEnd);
    }

    #[test]
    fn v0_1_snapshot_stream_is_read_in_v0_1_numbering() {
        let now = Instant::now();
        let head = RequestHead {
            method: RpcMethod::InstallSnapshot,
            authority: Authority::from_static("me"),
            timeout: None,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        let (parts, ()) = head.to_request().into_parts();
        let config = ServerCallConfig::default().with_wire_profile(WireProfile::V0_1);
        let mut c = ServerCall::new(&parts, config, now).unwrap();
        let encoder = MessageEncoder::new(usize::MAX, usize::MAX).with_profile(WireProfile::V0_1);
        let meta = InstallSnapshotRequest {
            term: 9,
            last_log_index: 40,
            last_log_term: 8,
            peers: Bytes::from_static(b"p"),
            configuration: Bytes::from_static(b"c"),
            configuration_index: 39,
            size: 5,
            ..Default::default()
        };
        c.handle_data(encoder.encode(&meta).unwrap().to_bytes(), now);
        for data in [&b"abc"[..], &b"de"[..]] {
            let chunk = SnapshotChunk {
                data: Bytes::copy_from_slice(data),
                data_crc32c: Some(1),
            };
            c.handle_data(encoder.encode(&chunk).unwrap().to_bytes(), now);
        }
        c.handle_end_of_stream(now);
        let ev = events(&mut c);
        assert_eq!(
            ev[..4],
            [
                ServerEvent::Request(RaftRequest::InstallSnapshot(meta)),
                ServerEvent::SnapshotData(Bytes::from_static(b"abc")),
                ServerEvent::SnapshotData(Bytes::from_static(b"de")),
                ServerEvent::SnapshotEnd,
            ]
        );
    }

    #[test]
    fn snapshot_stall_counts_only_while_the_application_waits() {
        let now = Instant::now();
        let mut c = call(RpcMethod::InstallSnapshot, None, now);
        let (_, messages) = snapshot_stream(b"0123456789", 3, now);
        c.handle_data(messages[0].clone(), now);
        c.handle_data(messages[1].clone(), now);
        // The application holds undelivered data for 2 minutes: no stall.
        c.handle_timeout(now + Duration::from_secs(120));
        assert_eq!(events(&mut c).len(), 2);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(180)));
        // Now it waits for data that does not come.
        c.handle_timeout(now + Duration::from_secs(180));
        assert!(
            matches!(&events(&mut c)[0], ServerEvent::Failed(s) if s.code() == Code::DeadlineExceeded)
        );
    }
}
