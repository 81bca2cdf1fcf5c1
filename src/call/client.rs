//! The client side of one gRPC call.
//!
//! [`ClientCall`] owns one call from its request head to its status: it
//! queues encoded request messages and hands them out under HTTP/2 flow
//! control, reads the response head (a Trailers-Only answer included),
//! decodes response messages as data arrives, reads the trailers, and turns
//! a reset, a lost connection, a cancel or the deadline into a status. It
//! reports [`ClientEvent::Finished`] exactly once. Response messages come
//! out as protobuf bodies: what they mean (one response for a unary call,
//! ordered ones for a pipeline) and their decoding is the caller's
//! business ([`crate::client::ClientEndpoint`] does both).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request};

use super::SendQueue;
use crate::framing::{EncodedMessage, MessageBody, MessageDecoder};
use crate::head::{RequestHead, ResponseStart, classify_response};
use crate::http2::{CANCEL, NO_ERROR};
use crate::status::{Code, Status};

/// What happened on a client call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response message arrived: its protobuf body, as the pieces of
    /// DATA it arrived in (decode it with
    /// [`RaftMessage::decode`](crate::message::RaftMessage::decode), which
    /// slices its payloads out of them).
    Message(MessageBody),
    /// The call is over, with this status (`OK` on success). Reported
    /// exactly once, and last.
    Finished(Status),
}

/// What to put on the call's HTTP/2 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Send these bytes as DATA; `end_of_stream` half-closes the stream.
    /// May be empty when it only carries `end_of_stream`.
    Data {
        /// The bytes (never more than the capacity offered).
        data: Bytes,
        /// Whether this DATA frame ends the request.
        end_of_stream: bool,
    },
    /// Reset the stream with this HTTP/2 error code; nothing follows.
    Reset(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    /// Waiting for the response head.
    Head,
    /// Reading response messages.
    Messages,
    /// The call is over.
    Done,
}

/// The client side of one gRPC call.
///
/// ```
/// use std::time::{Duration, Instant};
/// use http::uri::Authority;
/// use raft_grpc_transport::call::{ClientCall, ClientEvent, ClientTransmit};
/// use raft_grpc_transport::framing::MessageEncoder;
/// use raft_grpc_transport::head::{response_head, RequestHead, RpcMethod};
/// use raft_grpc_transport::message::{RaftMessage, TimeoutNowRequest, TimeoutNowResponse};
/// use raft_grpc_transport::Status;
///
/// let now = Instant::now();
/// let head = RequestHead::new(
///     RpcMethod::TimeoutNow,
///     Authority::from_static("10.0.0.2:7000"),
///     Some(Duration::from_secs(10)),
/// );
/// let mut call = ClientCall::new(head, 4 << 20, now);
/// let _request = call.request(now); // send this head with h2
/// call.send(MessageEncoder::default().encode(&TimeoutNowRequest::default()).unwrap());
/// call.finish_sending();
/// let Some(ClientTransmit::Data { end_of_stream: true, .. }) = call.poll_transmit(65_535) else {
///     panic!("the whole request fits in the window");
/// };
///
/// let (parts, ()) = response_head().into_parts();
/// call.handle_response_head(&parts, false, now);
/// call.handle_data(MessageEncoder::default().encode(&TimeoutNowResponse::default()).unwrap().to_bytes(), now);
/// call.handle_trailers(&Status::ok().to_trailers(), now);
/// let Some(ClientEvent::Message(body)) = call.poll_event() else { panic!() };
/// assert_eq!(TimeoutNowResponse::decode(body).unwrap(), TimeoutNowResponse::default());
/// assert_eq!(call.poll_event(), Some(ClientEvent::Finished(Status::ok())));
/// ```
#[derive(Debug)]
pub struct ClientCall {
    head: RequestHead,
    deadline: Option<Instant>,
    send: SendQueue,
    /// `finish_sending` was called: half-close once the queue is empty.
    closing: bool,
    /// END_STREAM (or a reset) went out: nothing more to send.
    send_closed: bool,
    receive: Receive,
    decoder: MessageDecoder,
    events: VecDeque<ClientEvent>,
    reset: Option<u32>,
}

impl ClientCall {
    /// A call with this head, refusing response messages over
    /// `max_response_len` bytes, started at `now` (its deadline is
    /// `now + head.timeout`).
    pub fn new(head: RequestHead, max_response_len: usize, now: Instant) -> Self {
        ClientCall {
            deadline: head.timeout.and_then(|t| now.checked_add(t)),
            head,
            send: SendQueue::default(),
            closing: false,
            send_closed: false,
            receive: Receive::Head,
            decoder: MessageDecoder::new(max_response_len),
            events: VecDeque::new(),
            reset: None,
        }
    }

    /// The request head to send now: its `grpc-timeout` is what remains of
    /// the deadline at `now`.
    pub fn request(&self, now: Instant) -> Request<()> {
        let mut head = self.head.clone();
        if let Some(deadline) = self.deadline {
            head.timeout = Some(deadline.saturating_duration_since(now));
        }
        head.to_request()
    }

    /// The call's deadline, if it has a timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Queues a request message. Ignored once the sending side is closed.
    pub fn send(&mut self, message: EncodedMessage) {
        if !self.closing && !self.send_closed {
            self.send.push(message);
        }
    }

    /// From now on, runs of small request messages go out joined in one
    /// piece of at most 64 KiB (a pipeline's appends), not one DATA frame
    /// each.
    pub fn join_small_pieces(&mut self) {
        self.send.join_small_pieces();
    }

    /// Half-closes the request once everything queued has been sent.
    pub fn finish_sending(&mut self) {
        self.closing = true;
    }

    /// Bytes waiting to be sent: how much capacity to reserve.
    pub fn send_wanted(&self) -> usize {
        self.send.len()
    }

    /// Whether the call still accepts response data: false once it is over
    /// or holds an undelivered message.
    pub fn wants_data(&self) -> bool {
        self.receive != Receive::Done && self.events.is_empty()
    }

    /// Whether something waits to be transmitted (data, the half-close, or
    /// a reset).
    pub fn has_transmit(&self) -> bool {
        self.reset.is_some() || (!self.send_closed && (!self.send.is_empty() || self.closing))
    }

    /// Whether the call is over (its `Finished` event may still be waiting
    /// in `poll_event`).
    pub fn is_finished(&self) -> bool {
        self.receive == Receive::Done
    }

    /// The next thing to put on the stream, using at most `capacity` bytes
    /// of send window.
    pub fn poll_transmit(&mut self, capacity: usize) -> Option<ClientTransmit> {
        if let Some(code) = self.reset.take() {
            self.send_closed = true;
            self.send.clear();
            return Some(ClientTransmit::Reset(code));
        }
        if self.send_closed {
            return None;
        }
        if let Some(data) = self.send.pop(capacity) {
            let end_of_stream = self.closing && self.send.is_empty();
            self.send_closed = end_of_stream;
            return Some(ClientTransmit::Data {
                data,
                end_of_stream,
            });
        }
        if self.closing && self.send.is_empty() {
            self.send_closed = true;
            return Some(ClientTransmit::Data {
                data: Bytes::new(),
                end_of_stream: true,
            });
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.receive == Receive::Done {
            None
        } else {
            self.deadline
        }
    }

    /// The response head arrived; `end_of_stream` if its HEADERS frame ended
    /// the stream.
    pub fn handle_response_head(
        &mut self,
        head: &http::response::Parts,
        end_of_stream: bool,
        now: Instant,
    ) {
        let _ = now;
        if self.receive != Receive::Head {
            if self.receive == Receive::Messages {
                self.fail(Status::new(
                    Code::Internal,
                    "the peer sent a second response head",
                ));
            }
            return;
        }
        match classify_response(head, end_of_stream) {
            Ok(ResponseStart::Messages) => self.receive = Receive::Messages,
            Ok(ResponseStart::TrailersOnly(status)) => {
                if end_of_stream {
                    self.finish_remote(status);
                } else {
                    // A head with grpc-status that does not end the stream
                    // is malformed; the status is still the best we know.
                    self.fail(status);
                }
            }
            Err(status) => {
                if end_of_stream {
                    self.finish_remote(status);
                } else {
                    self.fail(status);
                }
            }
        }
    }

    /// Response DATA arrived.
    pub fn handle_data(&mut self, data: Bytes, now: Instant) {
        let _ = now;
        match self.receive {
            Receive::Messages => {}
            Receive::Head => {
                self.fail(Status::new(
                    Code::Internal,
                    "the peer sent data before a response head",
                ));
                return;
            }
            Receive::Done => return,
        }
        self.decoder.push(data);
        loop {
            match self.decoder.next_message() {
                Ok(Some(body)) => self.events.push_back(ClientEvent::Message(body)),
                Ok(None) => return,
                Err(e) => return self.fail(e.status()),
            }
        }
    }

    /// The trailers arrived (they end the stream).
    pub fn handle_trailers(&mut self, trailers: &HeaderMap, now: Instant) {
        let _ = now;
        match self.receive {
            Receive::Messages => {}
            Receive::Head => {
                return self.finish_remote(Status::new(
                    Code::Internal,
                    "the peer sent trailers without a response head",
                ));
            }
            Receive::Done => return,
        }
        let status = match self.decoder.finish() {
            Err(e) => e.status(),
            Ok(()) => Status::from_trailers(trailers),
        };
        self.finish_remote(status);
    }

    /// The response ended (END_STREAM on DATA) without trailers.
    pub fn handle_end_of_stream(&mut self, now: Instant) {
        let _ = now;
        if self.receive != Receive::Done {
            self.finish_remote(Status::new(
                Code::Unknown,
                "the peer ended the response without trailers",
            ));
        }
    }

    /// The peer reset the stream with this HTTP/2 error code.
    pub fn handle_reset(&mut self, error_code: u32, now: Instant) {
        let _ = now;
        if self.receive != Receive::Done {
            self.send_closed = true;
            self.finish_remote(Status::from_rst_stream(error_code));
        }
    }

    /// The connection carrying the stream is gone (closed, broken, or the
    /// stream was refused by GOAWAY); `status` says how (usually
    /// `UNAVAILABLE`).
    pub fn handle_connection_lost(&mut self, status: Status) {
        if self.receive != Receive::Done {
            self.send_closed = true;
            self.finish_remote(status);
        }
    }

    /// Time passed: fails the call with `DEADLINE_EXCEEDED` once its
    /// deadline is reached, resetting the stream. Spurious calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) && self.receive != Receive::Done {
            self.fail(Status::new(Code::DeadlineExceeded, "deadline exceeded"));
        }
    }

    /// Ends the call locally: it finishes with `status` (for instance
    /// `CANCELLED`, or `UNAVAILABLE` on shutdown) and the stream is reset.
    pub fn cancel(&mut self, status: Status) {
        if self.receive != Receive::Done {
            self.fail(status);
        }
    }

    /// A local failure: finish with `status` and reset the stream with
    /// CANCEL, unless it is already closed both ways.
    fn fail(&mut self, status: Status) {
        if self.receive == Receive::Done {
            return;
        }
        self.reset = Some(CANCEL);
        self.finish(status);
    }

    /// The peer ended the call. If our side is still open, close it: a
    /// server may answer before the request is complete.
    fn finish_remote(&mut self, status: Status) {
        if !self.send_closed {
            self.reset = Some(NO_ERROR);
        }
        self.finish(status);
    }

    fn finish(&mut self, status: Status) {
        self.receive = Receive::Done;
        self.send.clear();
        self.events.push_back(ClientEvent::Finished(status));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::uri::Authority;

    use super::*;
    use crate::framing::MessageEncoder;
    use crate::head::{RpcMethod, response_head, trailers_only};
    use crate::http2::INTERNAL_ERROR;
    use crate::message::{AppendEntriesRequest, AppendEntriesResponse, Log};

    fn call(timeout: Option<Duration>, now: Instant) -> ClientCall {
        let head = RequestHead {
            method: RpcMethod::AppendEntries,
            authority: Authority::from_static("peer:1"),
            timeout,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        ClientCall::new(head, 1 << 20, now)
    }

    fn ok_head() -> http::response::Parts {
        response_head().into_parts().0
    }

    fn response(term: u64) -> Bytes {
        MessageEncoder::default()
            .encode(&AppendEntriesResponse {
                term,
                success: true,
                ..Default::default()
            })
            .unwrap()
            .to_bytes()
    }

    fn finished(call: &mut ClientCall) -> Vec<Status> {
        let mut out = Vec::new();
        while let Some(event) = call.poll_event() {
            if let ClientEvent::Finished(status) = event {
                out.push(status);
            }
        }
        out
    }

    #[test]
    fn request_is_sent_within_capacity_then_half_closed() {
        let now = Instant::now();
        let mut c = call(None, now);
        let request = AppendEntriesRequest {
            entries: vec![Log::command(1, 1, vec![0u8; 100_000])],
            ..Default::default()
        };
        let encoded = MessageEncoder::default().encode(&request).unwrap();
        let total = encoded.len();
        c.send(encoded);
        c.finish_sending();
        assert_eq!(c.send_wanted(), total);
        assert_eq!(c.poll_transmit(0), None);
        let mut sent = 0;
        let mut ended = false;
        while let Some(t) = c.poll_transmit(16_384) {
            let ClientTransmit::Data {
                data,
                end_of_stream,
            } = t
            else {
                panic!("unexpected {t:?}");
            };
            assert!(data.len() <= 16_384);
            sent += data.len();
            ended = end_of_stream;
        }
        assert_eq!(sent, total);
        assert!(ended);
        assert_eq!(c.poll_transmit(16_384), None);
    }

    #[test]
    fn grpc_timeout_is_what_remains() {
        let now = Instant::now();
        let c = call(Some(Duration::from_secs(10)), now);
        let request = c.request(now + Duration::from_secs(4));
        assert_eq!(request.headers()["grpc-timeout"], "6000000u");
    }

    #[test]
    fn unary_success() {
        let now = Instant::now();
        let mut c = call(Some(Duration::from_secs(1)), now);
        c.handle_response_head(&ok_head(), false, now);
        let bytes = response(7);
        let (a, b) = bytes.split_at(3);
        c.handle_data(Bytes::copy_from_slice(a), now);
        assert!(c.wants_data());
        c.handle_data(Bytes::copy_from_slice(b), now);
        assert!(!c.wants_data(), "holds an undelivered message");
        c.handle_trailers(&Status::ok().to_trailers(), now);
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Message(bytes.slice(5..).into()))
        );
        assert_eq!(c.poll_event(), Some(ClientEvent::Finished(Status::ok())));
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn trailers_only_error() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.finish_sending();
        let _ = c.poll_transmit(100);
        let status = Status::new(Code::Unimplemented, "nope");
        let (parts, ()) = trailers_only(&status).into_parts();
        c.handle_response_head(&parts, true, now);
        assert_eq!(finished(&mut c), vec![status]);
        assert_eq!(c.poll_transmit(100), None, "both sides closed: no reset");
    }

    #[test]
    fn deadline_resets_the_stream_once() {
        let now = Instant::now();
        let mut c = call(Some(Duration::from_millis(50)), now);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_millis(50)));
        c.handle_timeout(now + Duration::from_millis(49));
        assert!(finished(&mut c).is_empty());
        c.handle_timeout(now + Duration::from_millis(50));
        assert_eq!(c.poll_transmit(100), Some(ClientTransmit::Reset(CANCEL)));
        assert_eq!(finished(&mut c)[0].code(), Code::DeadlineExceeded);
        // Everything after is ignored.
        c.handle_trailers(&Status::ok().to_trailers(), now);
        c.handle_reset(INTERNAL_ERROR, now);
        c.handle_connection_lost(Status::new(Code::Unavailable, "gone"));
        assert!(finished(&mut c).is_empty());
        assert_eq!(c.poll_transmit(100), None);
    }

    #[test]
    fn reset_by_peer_maps_the_code() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.handle_reset(0x7, now);
        assert_eq!(finished(&mut c)[0].code(), Code::Unavailable);
        assert_eq!(c.poll_transmit(100), None, "no reset in answer to a reset");
    }

    #[test]
    fn oversized_response_is_resource_exhausted() {
        let now = Instant::now();
        let head = RequestHead {
            method: RpcMethod::AppendEntries,
            authority: Authority::from_static("peer:1"),
            timeout: None,
            https: false,
            metadata: http::HeaderMap::new(),
        };
        let mut c = ClientCall::new(head, 4, now);
        c.handle_response_head(&ok_head(), false, now);
        c.handle_data(response(7), now);
        assert_eq!(finished(&mut c)[0].code(), Code::ResourceExhausted);
        assert_eq!(c.poll_transmit(10), Some(ClientTransmit::Reset(CANCEL)));
    }

    #[test]
    fn bad_framing_is_internal() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.handle_response_head(&ok_head(), false, now);
        c.handle_data(Bytes::from_static(&[7, 0, 0, 0, 2, 0x0a, 0x05]), now);
        assert_eq!(finished(&mut c)[0].code(), Code::Internal);
    }

    #[test]
    fn truncated_message_before_trailers_is_internal() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.handle_response_head(&ok_head(), false, now);
        c.handle_data(response(1).slice(..4), now);
        c.handle_trailers(&Status::ok().to_trailers(), now);
        assert_eq!(finished(&mut c)[0].code(), Code::Internal);
    }

    #[test]
    fn missing_trailers_is_unknown() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.handle_response_head(&ok_head(), false, now);
        c.handle_end_of_stream(now);
        assert_eq!(finished(&mut c)[0].code(), Code::Unknown);
    }

    #[test]
    fn early_answer_closes_our_side() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.send(
            MessageEncoder::default()
                .encode(&AppendEntriesRequest::default())
                .unwrap(),
        );
        c.handle_response_head(&ok_head(), false, now);
        c.handle_trailers(&Status::new(Code::Aborted, "no").to_trailers(), now);
        assert_eq!(c.poll_transmit(100), Some(ClientTransmit::Reset(NO_ERROR)));
        assert_eq!(finished(&mut c)[0].code(), Code::Aborted);
    }

    #[test]
    fn cancel_and_connection_loss() {
        let now = Instant::now();
        let mut c = call(None, now);
        c.cancel(Status::new(Code::Cancelled, "caller gave up"));
        assert_eq!(c.poll_transmit(0), Some(ClientTransmit::Reset(CANCEL)));
        assert_eq!(finished(&mut c)[0].code(), Code::Cancelled);

        let mut c = call(None, now);
        c.handle_connection_lost(Status::new(Code::Unavailable, "connection closed"));
        assert_eq!(c.poll_transmit(0), None);
        assert_eq!(finished(&mut c)[0].code(), Code::Unavailable);
    }
}
