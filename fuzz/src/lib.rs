//! Fuzz harnesses for the sans-IO core.
//!
//! Each function takes the fuzzer's bytes, drives one part of the core with
//! them, and panics only when an invariant breaks (a panic inside the core
//! is a finding too). The cargo-fuzz targets in `fuzz_targets/` call these;
//! the root crate's `tests/fuzz_corpus.rs` compiles this file as a module and
//! replays `corpus/<target>/` and `regressions/<target>/` on stable, so
//! every `cargo test` exercises the corpus without nightly or libFuzzer.
//!
//! [`seeds`] builds the seed corpus from real encodings, so the fuzzer starts
//! from valid messages and heads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use raft_grpc_transport::WireProfile;
use raft_grpc_transport::call::{
    ClientCall, ClientEvent, ClientTransmit, ServerCall, ServerCallConfig, ServerEvent,
    ServerTransmit,
};
use raft_grpc_transport::framing::{FrameError, MessageDecoder, MessageEncoder};
use raft_grpc_transport::head::{
    RequestHead, ResponseStart, RpcMethod, classify_response, trailers_only, validate_request,
};
use raft_grpc_transport::message::*;
use raft_grpc_transport::metadata::{decode_binary_value, encode_binary_value};
use raft_grpc_transport::pipeline::{PipelineError, PipelineWindow};
use raft_grpc_transport::pool::{
    Backoff, ConnId, Lane, PeerPool, Pick, PoolConfig, PoolEvent, SlotState,
};
use raft_grpc_transport::snapshot::{SnapshotError, SnapshotReceiver, SnapshotSender};
use raft_grpc_transport::status::{Code, Status, decode_grpc_message, encode_grpc_message};
use raft_grpc_transport::timeout::{decode_grpc_timeout, encode_grpc_timeout};

/// A harness: runs one input, panics on a broken invariant.
pub type Harness = fn(&[u8]);

/// The fuzz targets, by name.
pub const TARGETS: [(&str, Harness); 12] = [
    ("frame_decoder", frame_decoder),
    ("message_decode", message_decode),
    ("request_head", request_head),
    ("response_head", response_head),
    ("grpc_timeout", grpc_timeout),
    ("server_call", server_call),
    ("client_call", client_call),
    ("server_endpoint", server_endpoint),
    ("client_endpoint", client_endpoint),
    ("peer_pool", peer_pool),
    ("pipeline_window", pipeline_window),
    ("snapshot_stream", snapshot_stream),
];

/// Everything the decoder yields for `stream`, pushed as the given pieces:
/// the bodies, then the error or end-of-stream verdict.
fn decode_pieces(limit: usize, pieces: &[&[u8]]) -> (Vec<Bytes>, Result<(), FrameError>) {
    let mut decoder = MessageDecoder::new(limit);
    let mut bodies = Vec::new();
    for piece in pieces {
        decoder.push(Bytes::copy_from_slice(piece));
        loop {
            match decoder.next_message() {
                Ok(Some(body)) => {
                    assert!(body.len() <= limit, "body over the limit");
                    bodies.push(body.into_bytes());
                }
                Ok(None) => break,
                Err(e) => return (bodies, Err(e)),
            }
        }
    }
    let verdict = decoder.finish();
    (bodies, verdict)
}

/// The frame decoder under arbitrary chunking. The first two bytes choose
/// the receive limit and the chunk sizes; the rest is the stream. Decoding
/// the stream in chunks must give exactly what decoding it whole gives:
/// the same bodies and the same error.
pub fn frame_decoder(data: &[u8]) {
    let [limit_byte, split_seed, stream @ ..] = data else {
        return;
    };
    let limit = match limit_byte % 4 {
        0 => 0,
        1 => usize::from(*limit_byte),
        2 => 4096,
        _ => usize::MAX,
    };
    let whole = decode_pieces(limit, &[stream]);

    let mut pieces = Vec::new();
    let mut rest = stream;
    let mut seed = u32::from(*split_seed) + 1;
    while !rest.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (seed >> 16) as usize % 17).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
    }
    let chunked = decode_pieces(limit, &pieces);
    assert_eq!(whole, chunked, "chunking changed the result");

    if let Err(e) = &whole.1 {
        let code = e.code();
        assert!(code == Code::Internal || code == Code::ResourceExhausted);
    }
}

/// `body` framed and pushed into a [`MessageDecoder`] in pieces cut by
/// `seed`: the body as the transport decodes it off the wire (a chain of
/// received pieces, not one buffer).
fn split_body(body: &[u8], seed: u8) -> raft_grpc_transport::framing::MessageBody {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(body);
    let mut decoder = MessageDecoder::new(usize::MAX);
    let mut rest = &framed[..];
    let mut state = u32::from(seed) + 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 13).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        decoder.push(Bytes::copy_from_slice(piece));
        rest = tail;
    }
    decoder
        .next_message()
        .expect("a well-framed message")
        .expect("the whole message was pushed")
}

/// Decodes `body` as `M`, whole and as pieces split by `seed`: both decode
/// to the same message or both fail. What decodes must re-encode to
/// something that decodes to the same message, with our encoder and
/// prost's agreeing.
fn round_trip<M: RaftMessage>(body: &[u8], seed: u8) {
    let whole = M::decode(Bytes::copy_from_slice(body));
    let split = M::decode(split_body(body, seed));
    assert_eq!(
        whole.is_ok(),
        split.is_ok(),
        "a split body decodes differently: {whole:?} / {split:?}"
    );
    let Ok(message) = whole else {
        return;
    };
    assert_eq!(
        split.as_ref(),
        Ok(&message),
        "a split body decodes differently"
    );
    let ours = message.encode_to_bytes();
    assert_eq!(ours.len(), message.encoded_len());
    assert_eq!(
        &ours[..],
        &prost::Message::encode_to_vec(&message.to_wire())[..]
    );
    let again = M::decode(ours).expect("our own encoding decodes");
    assert_eq!(again, message);
    let framed = MessageEncoder::new(usize::MAX, 8)
        .encode(&message)
        .expect("no limit");
    assert_eq!(framed.len(), 5 + message.encoded_len());
}

/// As [`round_trip`], under the v0.1 wire profile: whole and split decodes
/// agree, and what decodes re-encodes (to the length announced) into
/// something that decodes to the same message.
fn round_trip_v0_1<M: RaftMessage>(body: &[u8], seed: u8) {
    let profile = WireProfile::V0_1;
    let whole = M::decode_with(profile, Bytes::copy_from_slice(body));
    let split = M::decode_with(profile, split_body(body, seed));
    assert_eq!(whole, split, "a split body decodes differently under v0.1");
    let Ok(message) = whole else {
        return;
    };
    let ours = message.encode_to_bytes_with(profile);
    assert_eq!(ours.len(), message.encoded_len_with(profile));
    let again = M::decode_with(profile, ours).expect("our own v0.1 encoding decodes");
    assert_eq!(again, message);
    let framed = MessageEncoder::new(usize::MAX, 8)
        .with_profile(profile)
        .encode(&message)
        .expect("no limit");
    assert_eq!(framed.len(), 5 + message.encoded_len_with(profile));
}

/// Each message decoder. The first byte picks the message type (its
/// remainder by 11) and how the body is split for the piecewise decode
/// (the rest of it); the rest is the protobuf body. The requests the v0.1
/// wire profile numbers differently are decoded under both profiles.
pub fn message_decode(data: &[u8]) {
    let [kind, body @ ..] = data else {
        return;
    };
    let seed = kind / 11;
    match kind % 11 {
        0 => {
            round_trip::<AppendEntriesRequest>(body, seed);
            round_trip_v0_1::<AppendEntriesRequest>(body, seed);
        }
        1 => round_trip::<AppendEntriesResponse>(body, seed),
        2 => {
            round_trip::<RequestVoteRequest>(body, seed);
            round_trip_v0_1::<RequestVoteRequest>(body, seed);
        }
        3 => round_trip::<RequestVoteResponse>(body, seed),
        4 => round_trip::<RequestPreVoteRequest>(body, seed),
        5 => round_trip::<RequestPreVoteResponse>(body, seed),
        6 => {
            round_trip::<InstallSnapshotRequest>(body, seed);
            round_trip_v0_1::<InstallSnapshotRequest>(body, seed);
            if let Ok(wire) =
                <raft_grpc_transport::wire::InstallSnapshotRequest as prost::Message>::decode(body)
            {
                let data = wire.data.clone();
                if let Ok((_, chunk)) = InstallSnapshotRequest::from_first_message(wire) {
                    assert_eq!(chunk.data, data);
                }
            }
        }
        7 => {
            round_trip::<SnapshotChunk>(body, seed);
            round_trip_v0_1::<SnapshotChunk>(body, seed);
        }
        8 => round_trip::<InstallSnapshotResponse>(body, seed),
        9 => round_trip::<TimeoutNowRequest>(body, seed),
        _ => round_trip::<TimeoutNowResponse>(body, seed),
    }
}

/// Splits fuzz input into a first line and `name: value` header lines;
/// lines that are not valid header names or values are skipped.
fn parse_head(data: &[u8]) -> (&[u8], HeaderMap) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    (first, headers)
}

/// Request-head validation on the server. The first line is
/// `METHOD PATH`, the following lines are headers.
pub fn request_head(data: &[u8]) {
    let (first, headers) = parse_head(data);
    let mut words = first.splitn(2, |&b| b == b' ');
    let method = words.next().unwrap_or_default();
    let path = words.next().unwrap_or(b"/");
    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    let Ok(path) = http::uri::PathAndQuery::try_from(path) else {
        return;
    };
    let Ok(mut request) = http::Request::builder()
        .method(method)
        .uri(format!("http://peer{path}"))
        .body(())
    else {
        return;
    };
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    match validate_request(&parts) {
        Ok(accepted) => {
            assert_eq!(accepted.method.path(), parts.uri.path());
            // What we would send for this call validates the same way.
            let ours = RequestHead::new(
                accepted.method,
                http::uri::Authority::from_static("peer"),
                accepted.timeout,
            )
            .to_request();
            let (ours, ()) = ours.into_parts();
            let again = validate_request(&ours).expect("our own request head validates");
            assert_eq!(again.method, accepted.method);
            assert!(again.timeout >= accepted.timeout);
        }
        Err(rejection) => {
            let response = rejection.to_response();
            assert_ne!(rejection.status().code(), Code::Ok);
            if response.status() == http::StatusCode::OK {
                let status =
                    Status::from_headers(response.headers()).expect("Trailers-Only has a status");
                assert_eq!(status.code(), rejection.status().code());
            }
        }
    }
}

/// Response heads and trailers on the client. The first line is the HTTP
/// status (digits; a trailing `!` means the HEADERS frame ended the stream),
/// the following lines are headers, read both as a response head and as
/// trailers.
pub fn response_head(data: &[u8]) {
    let (first, headers) = parse_head(data);
    let end_of_stream = first.ends_with(b"!");
    let digits = first.strip_suffix(b"!").unwrap_or(first);
    let Ok(status) = http::StatusCode::from_bytes(digits) else {
        return;
    };
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers.clone();
    let (parts, ()) = response.into_parts();
    match classify_response(&parts, end_of_stream) {
        Ok(ResponseStart::Messages) => assert!(!end_of_stream),
        Ok(ResponseStart::TrailersOnly(status)) => roundtrip_status(&status),
        Err(status) => assert_ne!(status.code(), Code::Ok),
    }
    roundtrip_status(&Status::from_trailers(&headers));
}

/// A status read from the wire, written and read again, stays the same.
fn roundtrip_status(status: &Status) {
    let trailers = status.to_trailers();
    assert_eq!(&Status::from_trailers(&trailers), status);
    let (head, ()) = trailers_only(status).into_parts();
    assert_eq!(
        classify_response(&head, true),
        Ok(ResponseStart::TrailersOnly(status.clone()))
    );
}

/// `grpc-timeout`, `grpc-message` and `-bin` value parsing of the same
/// bytes.
pub fn grpc_timeout(data: &[u8]) {
    if let Ok(timeout) = decode_grpc_timeout(data) {
        let again = decode_grpc_timeout(encode_grpc_timeout(timeout).as_bytes())
            .expect("our own grpc-timeout decodes");
        assert!(again >= timeout);
    }
    let message = decode_grpc_message(data);
    assert_eq!(
        decode_grpc_message(encode_grpc_message(&message).as_bytes()),
        message
    );
    if let Ok(value) = HeaderValue::from_bytes(data) {
        if let Ok(binary) = decode_binary_value(&value) {
            let again =
                decode_binary_value(&encode_binary_value(&binary)).expect("our own base64 decodes");
            assert_eq!(again, binary);
        }
    }
}

/// Reads fuzz input as a sequence of operations.
struct Ops<'a> {
    data: &'a [u8],
}

impl<'a> Ops<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// A length byte, then that many bytes.
    fn chunk(&mut self) -> Bytes {
        let len = usize::from(self.byte().unwrap_or(0)).min(self.data.len());
        let (chunk, rest) = self.data.split_at(len);
        self.data = rest;
        Bytes::copy_from_slice(chunk)
    }
}

/// Checks the order of what a server call transmits: one head; data only
/// after a head that does not end the stream; trailers last; nothing after
/// the end.
#[derive(Default)]
struct ServerStreamCheck {
    head: Option<bool>,
    ended: bool,
    /// The stream was reset or its connection lost: it may end silently.
    aborted: bool,
}

impl ServerStreamCheck {
    fn drain(&mut self, call: &mut ServerCall, capacity: usize) {
        let taken = std::iter::from_fn(|| call.poll_transmit(capacity)).collect();
        self.record(taken, capacity);
        if self.ended {
            assert!(call.is_finished());
        } else {
            assert!(
                !call.is_finished() || self.aborted,
                "finished without ending the stream"
            );
        }
    }

    /// Checks what a stream transmitted, within `capacity`.
    fn record(&mut self, transmits: Vec<ServerTransmit>, capacity: usize) {
        for t in transmits {
            assert!(!self.ended, "transmit after the end of the stream");
            match t {
                ServerTransmit::Head {
                    head,
                    end_of_stream,
                } => {
                    assert!(self.head.is_none(), "two response heads");
                    if end_of_stream {
                        assert!(
                            Status::from_headers(head.headers()).is_some(),
                            "Trailers-Only without grpc-status"
                        );
                        self.ended = true;
                    }
                    self.head = Some(end_of_stream);
                }
                ServerTransmit::Data(data) => {
                    assert_eq!(self.head, Some(false), "data without a response head");
                    assert!(
                        !data.is_empty() && data.len() <= capacity,
                        "data beyond capacity"
                    );
                }
                ServerTransmit::Trailers(trailers) => {
                    assert_eq!(self.head, Some(false), "trailers without a response head");
                    assert!(trailers.contains_key("grpc-status"));
                    self.ended = true;
                }
            }
        }
    }
}

/// What a contiguous decode of the request bytes `fed` gives for `method`
/// (with the call's limit): the requests, and for InstallSnapshot every
/// chunk's data, up to the first message that does not decode (where the
/// call must fail) or, for a unary method, the first message.
fn expected_requests(method: RpcMethod, fed: &[u8], limit: usize) -> (Vec<RaftRequest>, Vec<u8>) {
    let (bodies, _) = decode_pieces(limit, &[fed]);
    let mut requests = Vec::new();
    let mut data = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let request = match method {
            RpcMethod::InstallSnapshot if i == 0 => {
                let wire =
                    <raft_grpc_transport::wire::InstallSnapshotRequest as prost::Message>::decode(
                        body,
                    );
                let Ok((meta, chunk)) = wire
                    .map_err(|_| ())
                    .and_then(|w| InstallSnapshotRequest::from_first_message(w).map_err(|_| ()))
                else {
                    break;
                };
                data.extend_from_slice(&chunk.data);
                RaftRequest::InstallSnapshot(meta)
            }
            RpcMethod::InstallSnapshot => {
                let Ok(chunk) = SnapshotChunk::decode(body) else {
                    break;
                };
                data.extend_from_slice(&chunk.data);
                continue;
            }
            RpcMethod::AppendEntriesPipeline => match AppendEntriesRequest::decode(body) {
                Ok(r) => RaftRequest::AppendEntries(r),
                Err(_) => break,
            },
            _ if i > 0 => break,
            RpcMethod::AppendEntries => match AppendEntriesRequest::decode(body) {
                Ok(r) => RaftRequest::AppendEntries(r),
                Err(_) => break,
            },
            RpcMethod::RequestVote => match RequestVoteRequest::decode(body) {
                Ok(r) => RaftRequest::RequestVote(r),
                Err(_) => break,
            },
            RpcMethod::RequestPreVote => match RequestPreVoteRequest::decode(body) {
                Ok(r) => RaftRequest::RequestPreVote(r),
                Err(_) => break,
            },
            RpcMethod::TimeoutNow => match TimeoutNowRequest::decode(body) {
                Ok(r) => RaftRequest::TimeoutNow(r),
                Err(_) => break,
            },
        };
        requests.push(request);
    }
    (requests, data)
}

/// A server call fed an arbitrary sequence of inputs. The first byte picks
/// the method; then each byte is an operation (data, end of stream, reset,
/// lost connection, time, a response of the right or wrong type, an error,
/// transmit, events). Besides the order of what it transmits and the
/// exactly-once rules, what it decoded from the pieces it was fed must be
/// what a contiguous decode of the same bytes gives (all of it while the
/// call did not fail, a prefix when it did), and a snapshot that ends must
/// have delivered exactly its declared size.
pub fn server_call(data: &[u8]) {
    let mut ops = Ops { data };
    let Some(pick) = ops.byte() else { return };
    let method = RpcMethod::ALL[usize::from(pick) % RpcMethod::ALL.len()];
    let head = RequestHead::new(
        method,
        http::uri::Authority::from_static("peer"),
        (pick & 0x80 != 0).then(|| Duration::from_millis(50)),
    );
    let (parts, ()) = head.to_request().into_parts();
    let start = Instant::now();
    let mut now = start;
    let config = ServerCallConfig::default()
        .with_max_request_len(1 << 16)
        .with_max_response_len(1 << 16)
        .with_snapshot_stall_timeout(Some(Duration::from_millis(80)));
    let mut call = ServerCall::new(&parts, config, now).expect("our own head is valid");
    let mut check = ServerStreamCheck::default();
    let mut failed = false;
    let mut requests = 0usize;
    // The request bytes the call took, what it decoded from them, and
    // whether the client finished sending.
    let (mut fed, mut seen, mut snapshot_data, mut ended) =
        (Vec::new(), Vec::new(), Vec::new(), false);
    while let Some(op) = ops.byte() {
        match op % 12 {
            0 | 1 => {
                let chunk = ops.chunk();
                if !call.is_answered() && !ended {
                    fed.extend_from_slice(&chunk);
                }
                call.handle_data(chunk, now);
            }
            2 => {
                ended = true;
                call.handle_end_of_stream(now);
            }
            3 => {
                check.aborted = true;
                call.handle_reset(u32::from(ops.byte().unwrap_or(8)), now);
            }
            4 => {
                check.aborted = true;
                call.handle_connection_lost(Status::new(Code::Unavailable, "gone"));
            }
            5 => {
                now += Duration::from_millis(u64::from(ops.byte().unwrap_or(10)));
                call.handle_timeout(now);
            }
            6 | 7 => {
                let response = match method {
                    RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline => {
                        RaftResponse::AppendEntries(AppendEntriesResponse {
                            term: 1,
                            success: true,
                            ..Default::default()
                        })
                    }
                    RpcMethod::RequestVote => {
                        RaftResponse::RequestVote(RequestVoteResponse::default())
                    }
                    RpcMethod::RequestPreVote => {
                        RaftResponse::RequestPreVote(RequestPreVoteResponse::default())
                    }
                    RpcMethod::TimeoutNow => {
                        RaftResponse::TimeoutNow(TimeoutNowResponse::default())
                    }
                    RpcMethod::InstallSnapshot => {
                        RaftResponse::InstallSnapshot(InstallSnapshotResponse::default())
                    }
                };
                let result = call.respond(response);
                if failed {
                    assert!(result.is_err(), "a failed call accepted a response");
                }
                if result.is_ok() {
                    assert!(requests > 0, "answered a request that never arrived");
                }
            }
            8 => {
                let wrong = match method {
                    RpcMethod::RequestVote => {
                        RaftResponse::TimeoutNow(TimeoutNowResponse::default())
                    }
                    _ => RaftResponse::RequestVote(RequestVoteResponse::default()),
                };
                assert!(
                    call.respond(wrong).is_err(),
                    "a response of the wrong type was taken"
                );
            }
            9 => {
                let _ = call.respond_error(Status::new(Code::Unknown, "handler error"));
            }
            10 => check.drain(&mut call, usize::from(ops.byte().unwrap_or(255)) * 64 + 1),
            _ => {}
        }
        while let Some(event) = call.poll_event() {
            assert!(!failed, "event after Failed");
            match event {
                ServerEvent::Request(request) => {
                    requests += 1;
                    seen.push(request);
                }
                ServerEvent::Failed(status) => {
                    assert_ne!(status.code(), Code::Ok);
                    failed = true;
                }
                ServerEvent::SnapshotData(d) => {
                    assert!(!d.is_empty());
                    snapshot_data.extend_from_slice(&d);
                }
                ServerEvent::SnapshotEnd => {
                    let Some(RaftRequest::InstallSnapshot(meta)) = seen.first() else {
                        panic!("a snapshot ended before its metadata");
                    };
                    assert_eq!(snapshot_data.len() as u64, meta.size, "bytes do not add up");
                }
            }
        }
        if let Some(deadline) = call.poll_timeout() {
            assert!(deadline >= start);
        }
    }
    check.drain(&mut call, usize::MAX);
    let (expected, expected_data) = expected_requests(method, &fed, 1 << 16);
    if failed {
        assert!(
            seen.len() <= expected.len(),
            "decoded more than the bytes hold"
        );
        assert_eq!(seen[..], expected[..seen.len()], "decoded differently");
        assert!(
            expected_data.starts_with(&snapshot_data),
            "snapshot data differs"
        );
    } else {
        assert_eq!(
            seen, expected,
            "decoded differently from a contiguous decode"
        );
        assert_eq!(snapshot_data, expected_data, "snapshot data differs");
    }
}

/// A client call fed an arbitrary sequence of inputs: response heads of
/// every kind, data, trailers, resets, lost connections, time, cancels and
/// sends, with transmits under arbitrary capacities. It must finish exactly
/// once, and transmit within capacity: no data after END_STREAM (a reset
/// may still follow it, to abort the call), nothing after a reset.
pub fn client_call(data: &[u8]) {
    let mut ops = Ops { data };
    let Some(pick) = ops.byte() else { return };
    let method = RpcMethod::ALL[usize::from(pick) % RpcMethod::ALL.len()];
    let head = RequestHead::new(
        method,
        http::uri::Authority::from_static("peer"),
        (pick & 0x80 != 0).then(|| Duration::from_millis(50)),
    );
    let start = Instant::now();
    let mut now = start;
    let deadline = (pick & 0x80 != 0).then(|| start + Duration::from_millis(50));
    let mut call = ClientCall::new(head, 1 << 16, now);
    assert_eq!(call.deadline(), deadline);
    assert_eq!(call.poll_timeout(), deadline);
    let mut finished = 0;
    let mut data_ended = false;
    let mut reset = false;
    while let Some(op) = ops.byte() {
        match op % 14 {
            0 => {
                let (parts, ()) = raft_grpc_transport::head::response_head().into_parts();
                call.handle_response_head(&parts, ops.byte().unwrap_or(0) & 1 == 1, now);
            }
            1 => {
                let status =
                    Status::new(Code::from_i32(i32::from(ops.byte().unwrap_or(0) % 17)), "x");
                let (parts, ()) = trailers_only(&status).into_parts();
                call.handle_response_head(&parts, ops.byte().unwrap_or(1) & 1 == 1, now);
            }
            2 => {
                let mut response = http::Response::new(());
                *response.status_mut() =
                    http::StatusCode::from_u16(200 + u16::from(ops.byte().unwrap_or(0)) * 2)
                        .unwrap_or(http::StatusCode::BAD_GATEWAY);
                let (parts, ()) = response.into_parts();
                call.handle_response_head(&parts, true, now);
            }
            3 | 4 => call.handle_data(ops.chunk(), now),
            5 => {
                let status =
                    Status::new(Code::from_i32(i32::from(ops.byte().unwrap_or(0) % 17)), "t");
                call.handle_trailers(&status.to_trailers(), now);
            }
            6 => call.handle_end_of_stream(now),
            7 => call.handle_reset(u32::from(ops.byte().unwrap_or(0)), now),
            8 => call.handle_connection_lost(Status::new(Code::Unavailable, "gone")),
            9 => {
                now += Duration::from_millis(u64::from(ops.byte().unwrap_or(10)));
                call.handle_timeout(now);
            }
            // Time goes to the moment the call asked for, as a driver's
            // timer would take it: a call past its deadline is over.
            13 => {
                if let Some(at) = call.poll_timeout() {
                    assert_eq!(Some(at), deadline, "a timer other than the deadline");
                    now = now.max(at);
                    call.handle_timeout(now);
                    assert!(call.is_finished(), "not over at its deadline");
                    assert_eq!(call.poll_timeout(), None);
                }
            }
            10 => call.cancel(Status::new(Code::Cancelled, "cancelled")),
            11 => {
                let message = MessageEncoder::new(usize::MAX, 32)
                    .encode(&SnapshotChunk {
                        data: ops.chunk(),
                        data_crc32c: None,
                    })
                    .expect("no limit");
                call.send(message);
                if ops.byte().unwrap_or(0) & 1 == 1 {
                    call.finish_sending();
                }
            }
            _ => {
                let capacity = usize::from(ops.byte().unwrap_or(0)) * 7;
                while let Some(t) = call.poll_transmit(capacity) {
                    assert!(!reset, "transmit after a reset");
                    match t {
                        ClientTransmit::Data {
                            data,
                            end_of_stream,
                        } => {
                            assert!(!data_ended, "data after END_STREAM");
                            assert!(data.len() <= capacity);
                            assert!(
                                !data.is_empty() || end_of_stream,
                                "empty data without end of stream"
                            );
                            data_ended |= end_of_stream;
                        }
                        ClientTransmit::Reset(_) => reset = true,
                    }
                }
            }
        }
        while let Some(event) = call.poll_event() {
            assert_eq!(finished, 0, "event after Finished");
            if let ClientEvent::Finished(_) = event {
                finished += 1;
            }
        }
        assert_eq!(call.is_finished(), finished == 1);
        if deadline.is_some_and(|d| now >= d) && op % 14 == 9 {
            assert!(call.is_finished(), "a call past its deadline is not over");
        }
    }
}

/// The client's per-peer pool fed arbitrary picks (three peers, every
/// lane), connect outcomes, streams opening and closing, GOAWAYs, lost
/// connections, peer removals and time. Invariants: a connection handed
/// out is one the pool asked to connect, of that peer and a slot of that
/// lane, never one that failed, went away or was lost; `Ready` only once
/// connected; an error only when every slot of the lane backs off; a failed
/// connect backs off within the configured bounds; stream counts are the
/// caller's; `Close` comes once per connection that went away, after its
/// last stream; `AbandonConnect` only for a connect past its timeout.
pub fn peer_pool(data: &[u8]) {
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Known {
        Connecting(Instant),
        Ready,
        /// GOAWAY: open streams drain, then Close.
        Draining,
        Gone,
    }

    let mut ops = Ops { data };
    let Some(setup) = ops.byte() else { return };
    let backoff = Backoff::default()
        .with_initial(Duration::from_millis(u64::from(setup & 0x0f) * 10))
        .with_max(Duration::from_millis(500))
        .with_jitter(f64::from(setup >> 4) / 15.0);
    let config = PoolConfig::default()
        .with_slots_per_peer(usize::from(setup % 5) + 1)
        .with_backoff(backoff)
        .with_connect_timeout(Duration::from_millis(200))
        .with_seed(u64::from(setup));
    let slots = config.slots_per_peer;
    let mut pool = PeerPool::new(config);
    let peers = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"];
    let lanes = [Lane::Control, Lane::Replication, Lane::Snapshot];
    let lane_range = |lane: Lane| match (slots, lane) {
        (1, _) | (_, Lane::Control) => 0..1,
        (2, _) => 1..2,
        (n, Lane::Replication) => 1..n - 1,
        (n, Lane::Snapshot) => n - 1..n,
    };
    let mut now = Instant::now();
    let mut known: BTreeMap<ConnId, (usize, Known)> = BTreeMap::new();
    let mut streams: BTreeMap<ConnId, usize> = BTreeMap::new();
    let mut closed: Vec<ConnId> = Vec::new();
    let pick_conn = |ops: &mut Ops, known: &BTreeMap<ConnId, (usize, Known)>| {
        let ids: Vec<ConnId> = known.keys().copied().collect();
        let i = usize::from(ops.byte().unwrap_or(0));
        (!ids.is_empty()).then(|| ids[i % ids.len()])
    };
    while let Some(op) = ops.byte() {
        match op % 10 {
            0..=2 => {
                let peer = usize::from(ops.byte().unwrap_or(0)) % peers.len();
                let lane = lanes[usize::from(op / 10) % lanes.len()];
                match pool.pick(peers[peer], lane, now) {
                    Ok(Pick::Connect(conn)) => {
                        assert!(!known.contains_key(&conn), "a connection id reused");
                        let (p, slot) = pool.slot_of(conn).expect("a slot for it");
                        assert_eq!(p, peers[peer]);
                        assert!(lane_range(lane).contains(&slot), "a slot of another lane");
                        known.insert(conn, (peer, Known::Connecting(now)));
                    }
                    Ok(Pick::Ready(conn)) => {
                        assert_eq!(known.get(&conn), Some(&(peer, Known::Ready)), "{conn:?}");
                        let (_, slot) = pool.slot_of(conn).expect("a slot for it");
                        assert!(lane_range(lane).contains(&slot), "a slot of another lane");
                        if op & 0x80 != 0 {
                            pool.stream_opened(conn);
                            *streams.entry(conn).or_default() += 1;
                        }
                    }
                    Ok(Pick::Wait(conn)) => {
                        let state = known.get(&conn).map(|k| k.1);
                        assert!(
                            matches!(state, Some(Known::Connecting(_) | Known::Ready)),
                            "waiting on {conn:?} in {state:?}"
                        );
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable);
                        for slot in lane_range(lane) {
                            assert!(
                                matches!(
                                    pool.slot_state(peers[peer], slot),
                                    Some(SlotState::Failed { .. })
                                ),
                                "refused while slot {slot} can serve"
                            );
                        }
                    }
                }
            }
            3 => {
                let Some(conn) = pick_conn(&mut ops, &known) else {
                    continue;
                };
                if let Some((_, Known::Connecting(_))) = known.get(&conn) {
                    let limit = ops.byte().map(|b| u32::from(b % 4) + 1);
                    pool.connected(conn, limit, now);
                    known.get_mut(&conn).unwrap().1 = Known::Ready;
                }
            }
            4 => {
                let Some(conn) = pick_conn(&mut ops, &known) else {
                    continue;
                };
                if let Some(&(peer, Known::Connecting(_))) = known.get(&conn) {
                    let (_, slot) = pool.slot_of(conn).expect("a slot for it");
                    pool.connect_failed(conn, Status::new(Code::Unavailable, "refused"), now);
                    known.get_mut(&conn).unwrap().1 = Known::Gone;
                    let Some(SlotState::Failed { retry_at }) = pool.slot_state(peers[peer], slot)
                    else {
                        panic!("a failed connect does not back off");
                    };
                    let most = backoff.max.mul_f64(1.0 + backoff.jitter) + Duration::from_millis(1);
                    assert!(
                        retry_at >= now && retry_at <= now + most,
                        "backoff out of bounds"
                    );
                }
            }
            5 => {
                let Some(conn) = pick_conn(&mut ops, &known) else {
                    continue;
                };
                let (_, state) = known[&conn];
                if state != Known::Gone {
                    pool.connection_lost(conn, now);
                    known.get_mut(&conn).unwrap().1 = Known::Gone;
                    streams.remove(&conn);
                }
            }
            6 => {
                let Some(conn) = pick_conn(&mut ops, &known) else {
                    continue;
                };
                if known[&conn].1 == Known::Ready {
                    pool.goaway(conn);
                    known.get_mut(&conn).unwrap().1 = Known::Draining;
                }
            }
            7 => {
                let Some(conn) = pick_conn(&mut ops, &known) else {
                    continue;
                };
                if let Some(n) = streams.get_mut(&conn).filter(|n| **n > 0) {
                    *n -= 1;
                    pool.stream_closed(conn);
                }
            }
            8 => {
                now += Duration::from_millis(u64::from(ops.byte().unwrap_or(0)) * 4);
                pool.handle_timeout(now);
            }
            _ if op & 0x40 != 0 => {
                // Retired: open connections drain (closed once their
                // streams are done), connecting ones close now.
                let peer = usize::from(ops.byte().unwrap_or(0)) % peers.len();
                pool.retire_peer(peers[peer]);
                for (conn, (p, state)) in known.iter_mut() {
                    if *p != peer {
                        continue;
                    }
                    match *state {
                        Known::Ready => *state = Known::Draining,
                        Known::Connecting(_) => {
                            *state = Known::Gone;
                            streams.remove(conn);
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                let peer = usize::from(ops.byte().unwrap_or(0)) % peers.len();
                pool.remove_peer(peers[peer]);
                for (conn, (p, state)) in known.iter_mut() {
                    if *p == peer && *state != Known::Gone {
                        *state = Known::Gone;
                        streams.remove(conn);
                    }
                }
            }
        }
        while let Some(event) = pool.poll_event() {
            match event {
                PoolEvent::Close(conn) => {
                    assert!(!closed.contains(&conn), "closed twice");
                    closed.push(conn);
                    let state = known.get(&conn).map(|k| k.1);
                    assert!(
                        matches!(state, Some(Known::Draining | Known::Gone)),
                        "closed {conn:?} in {state:?}"
                    );
                    if state == Some(Known::Draining) {
                        assert_eq!(
                            streams.get(&conn).copied().unwrap_or(0),
                            0,
                            "closed with streams"
                        );
                    }
                    known.get_mut(&conn).unwrap().1 = Known::Gone;
                    streams.remove(&conn);
                }
                PoolEvent::AbandonConnect(conn) => {
                    let Some((_, Known::Connecting(since))) = known.get(&conn).copied() else {
                        panic!("abandoned {conn:?}, which is not connecting");
                    };
                    assert!(now >= since + Duration::from_millis(200), "abandoned early");
                    known.get_mut(&conn).unwrap().1 = Known::Gone;
                }
            }
        }
        for (conn, n) in &streams {
            if known[conn].1 == Known::Ready {
                assert_eq!(pool.open_streams(*conn), *n, "stream count of {conn:?}");
            }
        }
        if let Some(at) = pool.poll_timeout() {
            assert!(at + Duration::from_secs(1) >= now, "a timer long past");
        }
    }
}

/// A pipeline window fed arbitrary pushes, completions, failures and
/// closes. It must behave as a bounded FIFO: a push fails with `Full` only
/// at the bound and with `Closed` only once closed (giving the tag back
/// either way); completions come in push order, each tag exactly once
/// (completed, failed or closed); a completion with nothing in flight
/// closes it with `INTERNAL`.
pub fn pipeline_window(data: &[u8]) {
    use std::collections::VecDeque;

    let mut ops = Ops { data };
    let Some(bound) = ops.byte() else { return };
    let max = usize::from(bound % 9);
    let mut window = PipelineWindow::new(max);
    let max = max.max(1);
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut closed = false;
    let mut next = 0u32;
    let mut done: Vec<u32> = Vec::new();
    while let Some(op) = ops.byte() {
        match op % 4 {
            0 | 1 => {
                let tag = next;
                next += 1;
                match window.push(tag) {
                    Ok(()) => {
                        assert!(
                            !closed && model.len() < max,
                            "pushed past the bound or when closed"
                        );
                        model.push_back(tag);
                    }
                    Err(PipelineError::Full(t)) => {
                        assert_eq!(t, tag);
                        assert!(!closed && model.len() == max, "full below the bound");
                    }
                    Err(PipelineError::Closed(status, t)) => {
                        assert_eq!(t, tag);
                        assert!(closed, "refused while open");
                        assert_ne!(status.code(), Code::Ok);
                    }
                    Err(_) => panic!("an unknown refusal"),
                }
            }
            2 => match window.complete() {
                Ok(tag) => {
                    assert_eq!(Some(tag), model.pop_front(), "completed out of order");
                    done.push(tag);
                }
                Err(status) => {
                    if !closed {
                        assert!(
                            model.is_empty(),
                            "refused a completion with requests in flight"
                        );
                        assert_eq!(status.code(), Code::Internal);
                        closed = true;
                    }
                }
            },
            _ => {
                let tags = if op & 0x80 != 0 {
                    window.close()
                } else {
                    window.fail(Status::new(Code::Unavailable, "stream failed"))
                };
                assert_eq!(
                    tags,
                    model.drain(..).collect::<Vec<_>>(),
                    "failed out of order"
                );
                done.extend(tags);
                closed = true;
            }
        }
        assert_eq!(window.in_flight(), model.len());
        assert_eq!(window.has_room(), !closed && model.len() < max);
        assert_eq!(window.closed().is_some(), closed);
    }
    let mut all = done.clone();
    all.extend(model.iter().copied());
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "a tag came back twice");
}

/// An InstallSnapshot stream end to end without a network: a declared
/// size, data pushed into a [`SnapshotSender`] in arbitrary pieces, the
/// chunks framed, the frames split arbitrarily into a [`MessageDecoder`],
/// decoded and fed to a [`SnapshotReceiver`], with an optional corrupted
/// byte. Invariants: chunks are never empty nor over the chunk size and
/// hold exactly the data pushed, in order; pushing past the declared size
/// fails without changing anything; the receiver gives back what was sent
/// and detects a corrupted byte (checksum) or a count that does not add
/// up; both sides finish cleanly exactly when the declared size went
/// through; progress counts the bytes.
pub fn snapshot_stream(data: &[u8]) {
    let mut ops = Ops { data };
    let (Some(size), Some(chunk_size), Some(split)) = (ops.byte(), ops.byte(), ops.byte()) else {
        return;
    };
    let size = u64::from(size) * 3;
    let chunk_size = usize::from(chunk_size % 32);
    let now = Instant::now();
    let meta = InstallSnapshotRequest {
        size,
        ..Default::default()
    };
    let mut sender = SnapshotSender::new(meta, chunk_size, now);
    let chunk_size = chunk_size.max(1);
    let mut pushed: Vec<u8> = Vec::new();
    let mut chunks: Vec<SnapshotChunk> = Vec::new();
    let mut corrupt: Option<usize> = None;
    while let Some(op) = ops.byte() {
        match op % 3 {
            0 | 1 => {
                let piece = ops.chunk();
                let before = sender.remaining();
                match sender.push(piece.clone(), now) {
                    Ok(out) => {
                        let joined: Vec<u8> = out.iter().flat_map(|c| c.data.to_vec()).collect();
                        assert_eq!(joined, piece.to_vec(), "chunks lose or change data");
                        for c in &out {
                            assert!(!c.data.is_empty() && c.data.len() <= chunk_size);
                            assert!(c.data_crc32c.is_some());
                        }
                        pushed.extend_from_slice(&piece);
                        chunks.extend(out);
                    }
                    Err(e) => {
                        assert!(matches!(e, SnapshotError::TooLong { .. }), "{e:?}");
                        assert!(piece.len() as u64 > before);
                        assert_eq!(
                            sender.remaining(),
                            before,
                            "a refused push changed the count"
                        );
                    }
                }
            }
            _ => corrupt = Some(usize::from(ops.byte().unwrap_or(0))),
        }
        assert_eq!(sender.progress(now).bytes, pushed.len() as u64);
        assert_eq!(sender.remaining(), size - pushed.len() as u64);
    }
    assert_eq!(sender.finish().is_ok(), pushed.len() as u64 == size);

    // The wire: every chunk framed, one byte maybe flipped in a chunk's
    // data, the stream split into pieces.
    let encoder = MessageEncoder::new(usize::MAX, 8);
    let mut wire_chunks = chunks.clone();
    let corrupted = corrupt.filter(|_| !pushed.is_empty()).map(|at| {
        let at = at % pushed.len();
        let mut offset = 0;
        for c in &mut wire_chunks {
            if at < offset + c.data.len() {
                let mut bytes = c.data.to_vec();
                bytes[at - offset] ^= 0x01;
                c.data = Bytes::from(bytes);
                break;
            }
            offset += c.data.len();
        }
        at
    });
    let mut stream = Vec::new();
    for c in &wire_chunks {
        stream.extend_from_slice(&encoder.encode(c).expect("no limit").to_bytes());
    }
    let mut decoder = MessageDecoder::new(usize::MAX);
    let mut state = u32::from(split) + 1;
    let mut rest = &stream[..];
    let mut bodies = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 23).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        decoder.push(Bytes::copy_from_slice(piece));
        while let Some(body) = decoder.next_message().expect("our own framing") {
            bodies.push(body);
        }
        rest = tail;
    }
    decoder.finish().expect("whole messages");
    assert_eq!(bodies.len(), wire_chunks.len());

    let mut receiver = SnapshotReceiver::new(size, now);
    let mut received = Vec::new();
    let mut failure = None;
    for body in bodies {
        let chunk = SnapshotChunk::decode(body).expect("our own encoding");
        match receiver.receive(chunk, now) {
            Ok(data) => received.extend_from_slice(&data),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match (corrupted, failure) {
        (Some(at), Some(SnapshotError::ChecksumMismatch { offset, .. })) => {
            // Detected at the end of the chunk holding the flipped byte.
            assert!(
                offset > at as u64,
                "the mismatch is reported before the bad byte"
            );
            assert_eq!(&received[..], &pushed[..received.len()]);
        }
        (Some(_), other) => panic!("a corrupted byte went through: {other:?}"),
        (None, Some(e)) => panic!("a clean stream failed: {e:?}"),
        (None, None) => {
            assert_eq!(received, pushed, "the receiver's bytes differ");
            assert_eq!(receiver.progress(now).bytes, pushed.len() as u64);
            assert_eq!(receiver.finish().is_ok(), pushed.len() as u64 == size);
        }
    }
}

/// A valid request of `method`, framed, chosen by `kind`.
fn framed_request(method: RpcMethod, kind: u8) -> Bytes {
    let encoder = MessageEncoder::new(usize::MAX, 64);
    let encoded = match method {
        RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline => {
            let request = if kind & 1 == 0 {
                // A heartbeat.
                AppendEntriesRequest {
                    header: sample_header(),
                    term: 2,
                    ..Default::default()
                }
            } else {
                AppendEntriesRequest {
                    header: sample_header(),
                    term: 2,
                    prev_log_entry: u64::from(kind),
                    entries: vec![Log::command(u64::from(kind) + 1, 2, vec![kind; 10])],
                    ..Default::default()
                }
            };
            encoder.encode(&request)
        }
        RpcMethod::RequestVote => encoder.encode(&RequestVoteRequest::default()),
        RpcMethod::RequestPreVote => encoder.encode(&RequestPreVoteRequest::default()),
        RpcMethod::TimeoutNow => encoder.encode(&TimeoutNowRequest::default()),
        RpcMethod::InstallSnapshot => {
            if kind & 1 == 0 {
                encoder.encode(&InstallSnapshotRequest {
                    size: u64::from(kind % 8) * 3,
                    ..Default::default()
                })
            } else {
                encoder.encode(&SnapshotChunk {
                    data: Bytes::from(vec![kind; 3]),
                    data_crc32c: None,
                })
            }
        }
    };
    encoded.expect("no limit").to_bytes()
}

/// The right response for `method`.
fn response_for(method: RpcMethod) -> RaftResponse {
    match method {
        RpcMethod::AppendEntries | RpcMethod::AppendEntriesPipeline => {
            RaftResponse::AppendEntries(AppendEntriesResponse::default())
        }
        RpcMethod::RequestVote => RaftResponse::RequestVote(RequestVoteResponse::default()),
        RpcMethod::RequestPreVote => {
            RaftResponse::RequestPreVote(RequestPreVoteResponse::default())
        }
        RpcMethod::TimeoutNow => RaftResponse::TimeoutNow(TimeoutNowResponse::default()),
        RpcMethod::InstallSnapshot => {
            RaftResponse::InstallSnapshot(InstallSnapshotResponse::default())
        }
    }
}

/// A server endpoint fed an arbitrary sequence of driver inputs and
/// application commands over up to two connections and eight streams:
/// heads of every method, valid and garbage data, ends, resets, lost
/// connections, time, the consumer taking requests, answers (right,
/// wrong, errors, twice), snapshot reads, pipelines apart and dropped, and
/// close. Invariants: no request is delivered twice, an answer is taken at
/// most once per request, a stream never releases more capacity than it
/// was given, the consumer queue stays within its bound, each stream
/// transmits one head, data after it and one status last; and after close
/// and time, every stream is over.
pub fn server_endpoint(data: &[u8]) {
    use raft_grpc_transport::pool::ConnId;
    use raft_grpc_transport::server::{
        AuthorizationRequest, PeerInfo, PipelineRead, RequestId, ServerConfig, ServerEndpoint,
        ServerEvent, ServerOutput, SnapshotRead, StreamId,
    };
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::sync::Arc;

    let mut ops = Ops { data };
    let Some(setup) = ops.byte() else { return };
    let config = ServerConfig::default()
        .with_call(
            ServerCallConfig::default()
                .with_max_request_len(1 << 12)
                .with_max_response_len(1 << 12)
                .with_snapshot_stall_timeout(Some(Duration::from_millis(80)))
                .with_max_unsent_response(256),
        )
        // Limits small enough for short inputs to reach.
        .with_request_data_timeout(Some(Duration::from_millis(60)))
        .with_idle_timeout(Some(Duration::from_millis(150)))
        .with_max_buffered_per_connection(1 << 13)
        .with_consumer_queue(usize::from(setup % 3) + 1)
        .with_snapshot_buffer(usize::from((setup >> 2) % 2) + 1)
        .with_handshake_timeout(Duration::from_millis(100))
        .with_heartbeat_fast_path(setup & 0x10 != 0)
        .with_pipelines_apart(setup & 0x20 != 0)
        .with_windows(
            raft_grpc_transport::server::WindowConfig::default()
                .with_initial_stream(256)
                .with_initial_connection(1024)
                .with_max_stream(if setup & 0x40 != 0 { 1 << 16 } else { 256 }),
        );
    let start = Instant::now();
    let mut now = start;
    let mut server = ServerEndpoint::new(config);
    // The second connection's peer is known: an address, then (as after a
    // TLS handshake) a certificate chain.
    let addr: std::net::SocketAddr = "10.0.0.2:51234".parse().unwrap();
    let conns = [
        server.handle_connection(now),
        server.handle_peer_connection(PeerInfo::new(Some(addr)), now),
    ];
    server.handle_handshake_done(conns[0], now);
    server.handle_handshake_done(conns[1], now);
    let chain = vec![Bytes::from_static(b"leaf certificate")];
    server.handle_peer_identity(
        conns[1],
        PeerInfo::new(Some(addr)).with_certificates(chain.clone()),
    );
    // A stream opened on a connection already lost is refused (it reaches
    // nobody); the peer of the others is their connection's.
    let expected_peer = |(conn, opened_after_loss): (ConnId, bool)| {
        assert!(
            !opened_after_loss,
            "a request of a stream opened on a lost connection was delivered"
        );
        if conn == conns[1] {
            PeerInfo::new(Some(addr)).with_certificates(chain.clone())
        } else {
            PeerInfo::default()
        }
    };
    // With an authorizer, TimeoutNow is refused (PERMISSION_DENIED) and so
    // is RequestPreVote (by an OK status, which must still refuse).
    let authorizing = setup & 0x80 != 0;
    let refused = move |method: RpcMethod| {
        authorizing && matches!(method, RpcMethod::TimeoutNow | RpcMethod::RequestPreVote)
    };
    if authorizing {
        server.set_authorizer(Some(Arc::new(
            |request: &AuthorizationRequest<'_>| match request.method {
                RpcMethod::TimeoutNow => Err(Status::new(Code::PermissionDenied, "refused")),
                RpcMethod::RequestPreVote => Err(Status::ok()),
                _ => Ok(()),
            },
        )));
    }
    let mut stream_conn: HashMap<StreamId, (ConnId, bool)> = HashMap::new();
    let mut lost: HashSet<ConnId> = HashSet::new();
    let mut streams: Vec<(StreamId, RpcMethod)> = Vec::new();
    let mut given: HashMap<StreamId, usize> = HashMap::new();
    let mut released: HashMap<StreamId, usize> = HashMap::new();
    let mut checks: BTreeMap<StreamId, ServerStreamCheck> = BTreeMap::new();
    let mut delivered: HashSet<RequestId> = HashSet::new();
    let mut to_answer: Vec<(RequestId, RpcMethod)> = Vec::new();
    let mut answered: HashSet<RequestId> = HashSet::new();
    let mut pipelines: Vec<StreamId> = Vec::new();
    let method_of = |streams: &[(StreamId, RpcMethod)], id: StreamId| {
        streams.iter().find(|(s, _)| *s == id).map(|(_, m)| *m)
    };
    let mut deliver =
        |id: RequestId, method: RpcMethod, to_answer: &mut Vec<(RequestId, RpcMethod)>| {
            assert!(delivered.insert(id), "request {id:?} delivered twice");
            assert!(
                !refused(method),
                "a refused {method:?} reached the application"
            );
            to_answer.push((id, method));
        };
    let mut pinged: Vec<ConnId> = Vec::new();
    let mut closed = false;
    loop {
        let op = ops.byte();
        if let Some(op) = op {
            let pick = |ops: &mut Ops<'_>, streams: &[(StreamId, RpcMethod)]| {
                let i = usize::from(ops.byte().unwrap_or(0));
                (!streams.is_empty()).then(|| streams[i % streams.len()])
            };
            match op % 16 {
                0 | 1 if streams.len() < 8 => {
                    let b = ops.byte().unwrap_or(0);
                    let method = RpcMethod::ALL[usize::from(b) % RpcMethod::ALL.len()];
                    let conn = conns[usize::from(b >> 7)];
                    let head = RequestHead::new(
                        method,
                        http::uri::Authority::from_static("me"),
                        (b & 0x40 != 0).then(|| Duration::from_millis(50)),
                    );
                    let (parts, ()) = head.to_request().into_parts();
                    let id = server.handle_request_head(conn, &parts, now);
                    streams.push((id, method));
                    stream_conn.insert(id, (conn, lost.contains(&conn)));
                    checks.entry(id).or_default();
                    if lost.contains(&conn) {
                        checks.entry(id).or_default().aborted = true;
                    }
                }
                2 | 3 => {
                    if let Some((id, method)) = pick(&mut ops, &streams) {
                        let chunk = if op & 0x10 != 0 {
                            ops.chunk()
                        } else {
                            framed_request(method, ops.byte().unwrap_or(0))
                        };
                        *given.entry(id).or_default() += chunk.len();
                        server.handle_data(id, chunk, now);
                    }
                }
                4 => {
                    if let Some((id, _)) = pick(&mut ops, &streams) {
                        server.handle_end_of_stream(id, now);
                    }
                }
                5 => {
                    if let Some((id, _)) = pick(&mut ops, &streams) {
                        checks.entry(id).or_default().aborted = true;
                        server.handle_reset(id, u32::from(ops.byte().unwrap_or(8)), now);
                    }
                }
                6 => {
                    let conn = conns[usize::from(ops.byte().unwrap_or(0) & 1)];
                    lost.insert(conn);
                    // Its PING is gone with it; a stream opened on it later
                    // meets a connection the endpoint starts afresh.
                    pinged.retain(|&c| c != conn);
                    for (id, _) in &streams {
                        // Which streams are on it is the endpoint's business:
                        // any of them may now end silently.
                        checks.entry(*id).or_default().aborted = true;
                    }
                    server.handle_connection_lost(conn, "gone", now);
                }
                7 => {
                    now += Duration::from_millis(u64::from(ops.byte().unwrap_or(10)));
                    for conn in pinged.drain(..) {
                        server.handle_ping_ack(conn, now);
                    }
                    server.handle_timeout(now);
                }
                8 | 9 => {
                    if let Some(rpc) = server.poll_rpc(now) {
                        let method = method_of(&streams, rpc.id.stream).expect("a known stream");
                        assert_eq!(*rpc.peer, expected_peer(stream_conn[&rpc.id.stream]));
                        deliver(rpc.id, method, &mut to_answer);
                    }
                }
                10 | 11 => {
                    if !to_answer.is_empty() {
                        let i = usize::from(ops.byte().unwrap_or(0)) % to_answer.len();
                        let (id, method) = to_answer[i];
                        let result = match ops.byte().unwrap_or(0) % 4 {
                            0 => Err(Status::new(Code::Unknown, "handler error")),
                            1 => Ok(RaftResponse::TimeoutNow(TimeoutNowResponse::default())),
                            _ => Ok(response_for(method)),
                        };
                        if server.respond(id, result, now).is_ok() {
                            assert!(answered.insert(id), "request {id:?} answered twice");
                            to_answer.remove(i);
                        }
                    }
                }
                12 => {
                    if let Some((id, _)) = to_answer
                        .iter()
                        .find(|(_, m)| *m == RpcMethod::InstallSnapshot)
                        .copied()
                    {
                        match server.read_snapshot(id, now) {
                            SnapshotRead::Data(d) => assert!(!d.is_empty()),
                            SnapshotRead::End | SnapshotRead::Failed(_) | SnapshotRead::Pending => {
                            }
                        }
                    }
                }
                13 => {
                    for &p in &pipelines {
                        if let PipelineRead::Rpc(rpc) = server.poll_pipeline_rpc(p, now) {
                            assert_eq!(rpc.id.stream, p);
                            deliver(rpc.id, RpcMethod::AppendEntriesPipeline, &mut to_answer);
                        }
                    }
                }
                14 => {
                    if let Some(p) = pipelines.pop() {
                        checks.entry(p).or_default().aborted = true;
                        server.drop_pipeline(p, now);
                    }
                }
                _ => {
                    if ops.byte().unwrap_or(0) == 0x5a {
                        closed = true;
                        server.close(now);
                    }
                }
            }
        } else if closed {
            break;
        } else {
            // The end of the input: close, and let time run out every call.
            closed = true;
            server.close(now);
        }
        // The driver's part, and the application's.
        while let Some(output) = server.poll_output() {
            match output {
                ServerOutput::Transmit { stream, .. } => {
                    let capacity = usize::from(ops.byte().unwrap_or(255)) * 64 + 1;
                    if let Some(check) = checks.get_mut(&stream) {
                        let mut taken = Vec::new();
                        while let Some(t) = server.poll_transmit(stream, capacity, now) {
                            taken.push(t);
                        }
                        check.record(taken, capacity);
                    }
                }
                ServerOutput::ReleaseCapacity { stream, bytes, .. } => {
                    let total = released.entry(stream).or_default();
                    *total += bytes;
                    assert!(
                        *total <= given.get(&stream).copied().unwrap_or(0),
                        "released more than was received on {stream:?}"
                    );
                }
                ServerOutput::Close { conn } => {
                    // Idle after its GOAWAY: the endpoint forgot it, and
                    // any of its streams may end silently.
                    assert!(conns.contains(&conn));
                    lost.insert(conn);
                    pinged.retain(|&c| c != conn);
                    for (id, _) in &streams {
                        if stream_conn[id].0 == conn {
                            checks.entry(*id).or_default().aborted = true;
                        }
                    }
                }
                ServerOutput::GoAway { conn } | ServerOutput::Refuse { conn, .. } => {
                    assert!(conns.contains(&conn));
                }
                ServerOutput::Ping { conn } => {
                    assert!(!pinged.contains(&conn), "a second PING in flight");
                    pinged.push(conn);
                }
                ServerOutput::SetWindows {
                    stream_window,
                    connection_window,
                    ..
                } => {
                    assert!(stream_window <= config.windows.max_stream);
                    assert!(connection_window >= stream_window);
                }
            }
        }
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::Heartbeat { id, peer, .. } => {
                    assert!(config.heartbeat_fast_path);
                    assert_eq!(*peer, expected_peer(stream_conn[&id.stream]));
                    deliver(id, RpcMethod::AppendEntries, &mut to_answer);
                }
                ServerEvent::PipelineOpened { pipeline } => {
                    assert!(config.pipelines_apart);
                    pipelines.push(pipeline);
                }
                ServerEvent::RpcQueued
                | ServerEvent::PipelineReady { .. }
                | ServerEvent::SnapshotReady { .. } => {}
            }
        }
        assert!(server.queued_rpcs() <= config.consumer_queue);
        if let Some(deadline) = server.poll_timeout() {
            assert!(deadline >= start);
        }
        if op.is_none() {
            now += Duration::from_secs(1);
            server.handle_timeout(now);
        }
    }
    // Everything transmitted: after close, no stream is left open on the
    // wire, and the endpoint's queues are empty.
    for (id, _) in &streams {
        let mut taken = Vec::new();
        while let Some(t) = server.poll_transmit(*id, usize::MAX, now) {
            taken.push(t);
        }
        checks.entry(*id).or_default().record(taken, usize::MAX);
        assert!(
            server.stream_finished(*id),
            "stream {id:?} still open after close"
        );
    }
    assert_eq!(server.poll_rpc(now), None);
}

/// A client endpoint fed an arbitrary sequence of application commands
/// (calls, snapshots, pipelines, appends, cancels, close) and driver
/// inputs (connects that succeed or fail, PING answers, stream limits,
/// GOAWAY, lost connections, response heads, data, trailers, resets,
/// refusals, time). Invariants: outcomes are reported at most once per
/// call and append, appends complete in send order, outputs name only
/// connections and calls the endpoint made; and after close, every call
/// and append has completed exactly once.
pub fn client_endpoint(data: &[u8]) {
    use raft_grpc_transport::client::{
        CallId, ClientConfig, ClientEndpoint, ClientEvent as Event, ClientOutput, KeepaliveConfig,
        OutgoingRpc,
    };
    use raft_grpc_transport::pool::ConnId;
    use std::collections::{HashMap, HashSet};

    let mut ops = Ops { data };
    let config = ClientConfig::default()
        .with_rpc_timeout(Duration::from_millis(200))
        .with_pipeline_window(3)
        .with_snapshot_chunk_size(8)
        .with_max_send_message_len(1 << 12)
        .with_max_recv_message_len(1 << 12)
        .with_keepalive(
            KeepaliveConfig::default()
                .with_interval(Some(Duration::from_millis(30)))
                .with_timeout(Duration::from_millis(20)),
        );
    let mut now = Instant::now();
    let mut client = ClientEndpoint::new(config);
    let peers = ["10.0.0.1:7000", "10.0.0.2:7000"];
    let mut conns: Vec<ConnId> = Vec::new();
    let mut streams: Vec<(CallId, RpcMethod)> = Vec::new();
    let mut unary: HashSet<CallId> = HashSet::new();
    let mut snapshots: Vec<CallId> = Vec::new();
    let mut pipelines: Vec<CallId> = Vec::new();
    let mut appends: HashMap<CallId, u64> = HashMap::new();
    let mut completed: HashSet<CallId> = HashSet::new();
    let mut appended: HashMap<CallId, Vec<u64>> = HashMap::new();
    let mut pipeline_closed: HashSet<CallId> = HashSet::new();
    let mut closing = false;
    loop {
        let op = ops.byte();
        match op {
            None if closing => break,
            None => {
                closing = true;
                client.close(now);
            }
            Some(op) => {
                let b = ops.byte().unwrap_or(0);
                let peer = peers[usize::from(b & 1)];
                match op % 20 {
                    0 | 1 => {
                        let rpc = match b % 4 {
                            0 => OutgoingRpc::AppendEntries(AppendEntriesRequest {
                                header: sample_header(),
                                term: 1,
                                ..Default::default()
                            }),
                            1 => OutgoingRpc::RequestVote(RequestVoteRequest::default()),
                            2 => OutgoingRpc::TimeoutNow(TimeoutNowRequest::default()),
                            _ => OutgoingRpc::AppendEntries(AppendEntriesRequest {
                                entries: vec![Log::command(1, 1, vec![0; usize::from(b) * 20])],
                                ..Default::default()
                            }),
                        };
                        unary.insert(client.start_rpc(peer, rpc, now));
                    }
                    2 => {
                        let meta = InstallSnapshotRequest {
                            size: u64::from(b % 32),
                            ..Default::default()
                        };
                        let call = client.start_snapshot(peer, meta, now);
                        unary.insert(call);
                        snapshots.push(call);
                    }
                    3 => {
                        if let Some(&call) = snapshots.get(usize::from(b) % snapshots.len().max(1))
                        {
                            if b & 0x80 != 0 {
                                client.finish_snapshot(call, now);
                            } else {
                                let _ = client.push_snapshot_data(call, ops.chunk(), now);
                            }
                        }
                    }
                    4 => pipelines.push(client.open_pipeline(peer, now)),
                    5 | 6 => {
                        if let Some(&p) = pipelines.get(usize::from(b) % pipelines.len().max(1)) {
                            let request = AppendEntriesRequest {
                                term: 1,
                                entries: vec![Log::command(1, 1, vec![1; 5])],
                                ..Default::default()
                            };
                            if let Ok(seq) = client.append(p, &request, now) {
                                let next = appends.entry(p).or_default();
                                assert_eq!(seq, *next, "sequence numbers count up");
                                *next += 1;
                            }
                        }
                    }
                    7 => {
                        if let Some(&p) = pipelines.get(usize::from(b) % pipelines.len().max(1)) {
                            client.close_pipeline(p, now);
                        }
                    }
                    8 => {
                        if let Some(&(call, _)) = streams.get(usize::from(b) % streams.len().max(1))
                        {
                            client.cancel(call, Status::new(Code::Cancelled, "gave up"), now);
                        }
                    }
                    9 => {
                        if let Some(&conn) = conns.get(usize::from(b) % conns.len().max(1)) {
                            match ops.byte().unwrap_or(0) % 6 {
                                0 => client.handle_connected(conn, now),
                                1 => client.handle_connect_failed(conn, "refused", now),
                                2 => client.handle_ping_ack(conn, now),
                                3 => client.handle_max_streams(conn, Some(u32::from(b % 3)), now),
                                4 => client.handle_goaway(conn, u32::from(b % 12), now),
                                _ => client.handle_connection_lost(conn, "gone", now),
                            }
                        }
                    }
                    10..=14 => {
                        if let Some(&(call, method)) =
                            streams.get(usize::from(b) % streams.len().max(1))
                        {
                            match op % 20 {
                                10 => {
                                    let (parts, ()) =
                                        raft_grpc_transport::head::response_head().into_parts();
                                    client.handle_response_head(call, &parts, b & 0x80 != 0, now);
                                }
                                11 => {
                                    let chunk = if b & 0x40 != 0 {
                                        ops.chunk()
                                    } else {
                                        Bytes::from(framed(&response_for_body(method)))
                                    };
                                    client.handle_response_data(call, chunk, now);
                                }
                                12 => {
                                    let code = Code::from_i32(i32::from(b % 17));
                                    client.handle_response_trailers(
                                        call,
                                        &Status::new(code, "t").to_trailers(),
                                        now,
                                    );
                                }
                                13 => client.handle_stream_reset(call, u32::from(b % 14), now),
                                _ => client.handle_stream_refused(call, now),
                            }
                        }
                    }
                    15 | 16 => {
                        now += Duration::from_millis(u64::from(b));
                        client.handle_timeout(now);
                    }
                    17 => {
                        let capacity = usize::from(b) * 3;
                        for &(call, _) in &streams {
                            while let Some(t) = client.poll_transmit(call, capacity, now) {
                                if let ClientTransmit::Data { data, .. } = t {
                                    assert!(data.len() <= capacity);
                                }
                            }
                        }
                    }
                    18 if b == 0x5a => {
                        closing = true;
                        client.close(now);
                    }
                    _ => client.remove_peer(peer, now),
                }
            }
        }
        while let Some(output) = client.poll_output() {
            match output {
                ClientOutput::Connect { conn, peer } => {
                    assert!(peers.contains(&peer.as_str()));
                    assert!(!conns.contains(&conn), "a connection id used twice");
                    conns.push(conn);
                }
                ClientOutput::Close { conn } | ClientOutput::Ping { conn } => {
                    assert!(conns.contains(&conn), "an unknown connection");
                }
                ClientOutput::OpenStream {
                    conn,
                    call,
                    method,
                    send_now,
                    ..
                } => {
                    assert!(conns.contains(&conn));
                    assert!(unary.contains(&call) || pipelines.contains(&call));
                    if method == RpcMethod::AppendEntriesPipeline {
                        assert_eq!(send_now, 0);
                    }
                    streams.push((call, method));
                }
                ClientOutput::Transmit { conn, call }
                | ClientOutput::ReleaseCapacity { conn, call, .. } => {
                    assert!(conns.contains(&conn));
                    assert!(
                        streams.iter().any(|(c, _)| *c == call),
                        "an unopened stream"
                    );
                }
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Completed { call, .. } => {
                    assert!(unary.contains(&call));
                    assert!(completed.insert(call), "call {call:?} completed twice");
                }
                Event::Appended { pipeline, seq, .. } => {
                    let seqs = appended.entry(pipeline).or_default();
                    assert_eq!(seq, seqs.len() as u64, "appends complete in send order");
                    seqs.push(seq);
                }
                Event::PipelineClosed { pipeline, .. } => {
                    assert!(pipeline_closed.insert(pipeline), "a pipeline closed twice");
                }
                Event::PipelineOpened { pipeline } | Event::PipelineReady { pipeline } => {
                    assert!(pipelines.contains(&pipeline));
                }
                Event::SnapshotWantsData { call } | Event::SnapshotProgress { call, .. } => {
                    assert!(snapshots.contains(&call));
                }
            }
        }
        if closing {
            // Time runs out whatever is left.
            now += Duration::from_secs(1);
            client.handle_timeout(now);
        }
    }
    // Close completes everything, exactly once.
    assert_eq!(completed, unary, "every call completes once after close");
    for (pipeline, sent) in &appends {
        let done = appended.get(pipeline).map_or(0, Vec::len) as u64;
        assert_eq!(done, *sent, "every append of {pipeline:?} completes once");
    }
    for pipeline in &pipelines {
        assert!(
            pipeline_closed.contains(pipeline),
            "{pipeline:?} never closed"
        );
    }
}

/// A response body for a call of `method`.
fn response_for_body(method: RpcMethod) -> AppendEntriesResponse {
    let _ = method;
    AppendEntriesResponse {
        term: 1,
        success: true,
        ..Default::default()
    }
}

fn sample_header() -> RpcHeader {
    RpcHeader::new(3, "node-1", "127.0.0.1:7000")
}

fn crc32c_of(data: &[u8]) -> u32 {
    let mut sender = raft_grpc_transport::snapshot::SnapshotSender::new(
        InstallSnapshotRequest {
            size: data.len() as u64,
            ..Default::default()
        },
        usize::MAX,
        Instant::now(),
    );
    sender
        .push(Bytes::copy_from_slice(data), Instant::now())
        .expect("fits")[0]
        .data_crc32c
        .unwrap_or(0)
}

fn framed<M: RaftMessage>(message: &M) -> Vec<u8> {
    MessageEncoder::new(usize::MAX, 16)
        .encode(message)
        .expect("no limit")
        .to_bytes()
        .to_vec()
}

fn with_kind<M: RaftMessage>(kind: u8, message: &M) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&message.encode_to_bytes());
    out
}

/// The seed corpus of a target: valid inputs built with the core itself.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let append = AppendEntriesRequest {
        header: sample_header(),
        term: 7,
        prev_log_entry: 41,
        prev_log_term: 6,
        entries: vec![
            Log::command(42, 7, Bytes::from_static(b"set x=1")),
            Log {
                index: 43,
                term: 7,
                log_type: LogType::Configuration,
                data: Bytes::from(vec![5u8; 40]),
                extensions: Bytes::from_static(b"ext"),
                appended_at: Some(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                ),
            },
        ],
        leader_commit_index: 40,
        leader: Bytes::from_static(b"127.0.0.1:7000"),
    };
    let snapshot = InstallSnapshotRequest {
        header: sample_header(),
        snapshot_version: 1,
        term: 7,
        last_log_index: 100,
        last_log_term: 6,
        configuration: Bytes::from_static(b"config"),
        configuration_index: 90,
        size: 3,
        ..Default::default()
    };
    let chunk = SnapshotChunk {
        data: Bytes::from_static(b"abc"),
        data_crc32c: Some(0x364b_3fb7),
    };
    match target {
        "frame_decoder" => {
            let mut stream = vec![2, 7];
            stream.extend(framed(&append));
            stream.extend(framed(&TimeoutNowRequest::default()));
            let mut compressed = vec![3, 1, 1, 0, 0, 0, 1, 0];
            compressed.extend(framed(&chunk));
            vec![stream, compressed, vec![1, 0, 0, 0, 0, 0, 200]]
        }
        "message_decode" => vec![
            with_kind(0, &append),
            with_kind(
                1,
                &AppendEntriesResponse {
                    header: sample_header(),
                    term: 7,
                    last_log: 43,
                    success: true,
                    no_retry_backoff: false,
                },
            ),
            with_kind(
                2,
                &RequestVoteRequest {
                    header: sample_header(),
                    term: 8,
                    last_log_index: 43,
                    last_log_term: 7,
                    leadership_transfer: true,
                    candidate: Bytes::new(),
                },
            ),
            with_kind(
                3,
                &RequestVoteResponse {
                    header: sample_header(),
                    term: 8,
                    peers: Bytes::new(),
                    granted: true,
                },
            ),
            with_kind(
                4,
                &RequestPreVoteRequest {
                    header: sample_header(),
                    term: 8,
                    last_log_index: 43,
                    last_log_term: 7,
                },
            ),
            with_kind(
                5,
                &RequestPreVoteResponse {
                    header: sample_header(),
                    term: 8,
                    granted: false,
                },
            ),
            with_kind(6, &snapshot),
            with_kind(7, &chunk),
            with_kind(
                8,
                &InstallSnapshotResponse {
                    header: sample_header(),
                    term: 7,
                    success: true,
                },
            ),
            with_kind(
                9,
                &TimeoutNowRequest {
                    header: sample_header(),
                },
            ),
            with_kind(
                10,
                &TimeoutNowResponse {
                    header: sample_header(),
                },
            ),
        ],
        "request_head" => {
            let mut out = Vec::new();
            for method in RpcMethod::ALL {
                let request = RequestHead::new(
                    method,
                    http::uri::Authority::from_static("peer"),
                    Some(std::time::Duration::from_millis(1500)),
                )
                .to_request();
                let mut text = format!("POST {}\n", method.path()).into_bytes();
                for (name, value) in request.headers() {
                    text.extend_from_slice(name.as_str().as_bytes());
                    text.extend_from_slice(b": ");
                    text.extend_from_slice(value.as_bytes());
                    text.push(b'\n');
                }
                out.push(text);
            }
            out.push(b"GET /proto.raft.v1.RaftTransportService/AppendEntries\ncontent-type: application/grpc\n".to_vec());
            out.push(b"POST /proto.raft.v1.RaftTransportService/Nope\ncontent-type: application/grpc+proto\ngrpc-encoding: gzip\n".to_vec());
            out
        }
        "response_head" => {
            let mut out = Vec::new();
            let head = raft_grpc_transport::head::response_head();
            let status = Status::new(Code::Unavailable, "peer shutting down: 100% ünï")
                .with_details(vec![1, 2, 3]);
            let mut text = b"200!\n".to_vec();
            for (name, value) in head.headers().iter().chain(status.to_trailers().iter()) {
                text.extend_from_slice(name.as_str().as_bytes());
                text.extend_from_slice(b": ");
                text.extend_from_slice(value.as_bytes());
                text.push(b'\n');
            }
            out.push(text);
            out.push(b"200\ncontent-type: application/grpc\n".to_vec());
            out.push(b"503\ncontent-type: text/html\n".to_vec());
            out.push(b"200\ngrpc-status: 99\ngrpc-message: %zz\n".to_vec());
            out
        }
        "server_call" => {
            let ops = |method: u8, messages: &[Vec<u8>]| {
                let mut out = vec![method];
                for m in messages {
                    for piece in m.chunks(200) {
                        out.push(0);
                        out.push(piece.len() as u8);
                        out.extend_from_slice(piece);
                    }
                }
                out.extend([2, 6, 10, 255, 5, 100, 10, 255]);
                out
            };
            let meta = InstallSnapshotRequest {
                size: 6,
                ..snapshot.clone()
            };
            let chunk = SnapshotChunk {
                data: Bytes::from_static(b"abcdef"),
                data_crc32c: Some(crc32c_of(b"abcdef")),
            };
            vec![
                ops(1, &[framed(&append)]),
                ops(0, &[framed(&append), framed(&append)]),
                ops(2, &[framed(&RequestVoteRequest::default())]),
                ops(3 | 0x80, &[framed(&meta), framed(&chunk)]),
                ops(4, &[framed(&TimeoutNowRequest::default())]),
                ops(5, &[framed(&RequestPreVoteRequest::default())]),
            ]
        }
        "client_call" => {
            let response = framed(&AppendEntriesResponse {
                term: 3,
                success: true,
                ..Default::default()
            });
            let mut ok = vec![1, 11, 3, 1, 2, 3, 1, 12, 100, 0, 0];
            ok.push(3);
            ok.push(response.len() as u8);
            ok.extend_from_slice(&response);
            ok.extend([5, 0]);
            vec![
                ok,
                vec![0x81, 9, 60, 12, 10],
                vec![2, 1, 14, 1],
                vec![3, 2, 3],
            ]
        }
        // Ops: 0 open (method, conn, deadline), 2 data (stream, kind),
        // 4 end, 5 reset, 6 connection lost, 7 time, 8 take, 10 answer,
        // 12 read a snapshot, 13 take pipelined, 14 drop a pipeline, 15 close.
        "server_endpoint" => vec![
            // A vote with a deadline, taken and answered.
            vec![0x00, 0, 0x42, 2, 0, 0, 4, 0, 8, 10, 0, 2],
            // A heartbeat on the fast path, an append to the consumer.
            vec![
                0x10, 0, 0x01, 2, 0, 0, 4, 0, 0, 0x01, 2, 1, 1, 4, 1, 8, 10, 0, 3,
            ],
            // A pipeline apart, three appends, taken, one answered, dropped.
            vec![
                0x21, 0, 0x00, 2, 0, 1, 2, 0, 3, 2, 0, 5, 13, 13, 10, 0, 2, 14,
            ],
            // A snapshot of 6 bytes in two chunks, read, answered.
            vec![
                0x04, 0, 0x03, 2, 0, 4, 2, 0, 1, 2, 0, 3, 4, 0, 8, 12, 12, 12, 10, 0, 2,
            ],
            // Queued requests, a reset, a lost connection, time, close.
            vec![
                0x00, 0, 0x42, 2, 0, 0, 0, 0x84, 2, 1, 0, 5, 0, 8, 6, 1, 7, 200, 15, 0x5a,
            ],
        ],
        // Ops: 0 call (peer, kind), 2 snapshot (size), 3 feed or finish it,
        // 4 pipeline, 5 append, 7 close it, 8 cancel, 9 a connection input,
        // 10 head, 11 data, 12 trailers, 13 reset, 14 refused, 15 time,
        // 17 transmit, 18 close, 19 remove a peer.
        "client_endpoint" => vec![
            // A vote: connect, handshake, PING answer, response, trailers.
            vec![0, 1, 9, 0, 0, 9, 0, 2, 17, 200, 10, 0, 11, 0, 12, 0],
            // A pipeline with appends, then its connection is lost.
            vec![
                4, 0, 9, 0, 0, 9, 0, 2, 5, 0, 5, 0, 5, 0, 17, 100, 10, 0, 11, 0, 9, 0, 5,
            ],
            // A snapshot of 4 bytes fed and finished, then time runs out.
            vec![
                2, 4, 9, 0, 0, 9, 0, 2, 3, 0, 4, 1, 2, 3, 4, 3, 0x80, 17, 50, 15, 250,
            ],
            // Refused connects, GOAWAY, a refused stream, close.
            vec![
                0, 0, 0, 1, 9, 0, 1, 9, 1, 0, 9, 1, 2, 9, 1, 4, 14, 0, 18, 0x5a,
            ],
        ],
        // Ops: 0-2 pick (peer; lane by op / 10; 0x80 opens a stream),
        // 3 connected, 4 connect failed, 5 lost, 6 GOAWAY, 7 stream closed,
        // 8 time, 9 remove a peer.
        "peer_pool" => vec![
            // Connect, ready, streams, GOAWAY, drain.
            vec![3, 0, 0, 3, 0, 1, 0x80, 0, 0x80, 0, 6, 0, 7, 0, 7, 0],
            // Refused connects, backoff, time, a retry.
            vec![0x4a, 10, 1, 4, 0, 10, 1, 8, 200, 10, 1, 3, 0, 2],
            // A slow connect abandoned, a peer removed.
            vec![1, 20, 2, 8, 60, 0, 0, 9, 0, 0, 1, 5, 1],
        ],
        // Ops: 0-1 push, 2 complete, 3 fail (0x80: close).
        "pipeline_window" => vec![
            vec![3, 0, 0, 0, 0, 2, 0, 2, 2, 2, 2, 0],
            vec![1, 0, 1, 2, 0, 3, 0, 2],
            vec![0, 2, 0, 0x83, 0],
        ],
        // Size / 3, chunk size, split seed; ops: 0-1 push a piece, 2 flip a
        // byte.
        "snapshot_stream" => vec![
            vec![2, 4, 7, 0, 3, 1, 2, 3, 1, 3, 4, 5, 6],
            vec![1, 2, 1, 0, 3, 9, 9, 9, 2, 1],
            vec![1, 0, 3, 0, 4, 1, 2, 3, 4],
        ],
        "grpc_timeout" => vec![
            b"10S".to_vec(),
            b"99999999H".to_vec(),
            b"1500000u".to_vec(),
            b"hello%20world%".to_vec(),
            b"AAEC/w==".to_vec(),
        ],
        _ => Vec::new(),
    }
}
