//! quickcheck properties of the codec: for every message type, arbitrary
//! messages framed by `MessageEncoder`, concatenated into one stream, cut at
//! arbitrary points and fed to `MessageDecoder` come back identical; our
//! hand-written protobuf encoder agrees byte for byte with prost's; and
//! payloads decoded from one buffer are slices of it. Under the v0.1 wire
//! profile, every message comes back as v0.1 carries it (without the fields
//! it lacks), with the length the encoder announced.

use std::fmt::Debug;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use raft_grpc_transport::WireProfile;
use raft_grpc_transport::framing::{MessageDecoder, MessageEncoder};
use raft_grpc_transport::message::*;

/// Wrapper to give foreign types an `Arbitrary` implementation.
#[derive(Clone, Debug)]
struct Arb<T>(T);

fn bytes(g: &mut Gen) -> Bytes {
    // Mostly small and random, sometimes large enough to take the zero-copy
    // path (a random head on a repeated fill, to keep generation fast).
    match u8::arbitrary(g) % 8 {
        0 => Bytes::new(),
        1 => {
            let len = usize::arbitrary(g) % 70_000;
            let mut data = vec![u8::arbitrary(g); len];
            for byte in data.iter_mut().take(16) {
                *byte = u8::arbitrary(g);
            }
            data.into()
        }
        _ => {
            let len = usize::arbitrary(g) % 64;
            (0..len)
                .map(|_| u8::arbitrary(g))
                .collect::<Vec<u8>>()
                .into()
        }
    }
}

fn header(g: &mut Gen) -> RpcHeader {
    RpcHeader {
        protocol_version: i64::arbitrary(g),
        id: bytes(g),
        addr: bytes(g),
    }
}

fn log(g: &mut Gen) -> Log {
    Log {
        index: u64::arbitrary(g),
        term: u64::arbitrary(g),
        log_type: LogType::from(u32::arbitrary(g) % 12),
        data: bytes(g),
        extensions: bytes(g),
        appended_at: bool::arbitrary(g).then(|| {
            let nanos = i64::arbitrary(g);
            let magnitude = Duration::from_nanos(nanos.unsigned_abs());
            if nanos >= 0 {
                UNIX_EPOCH + magnitude
            } else {
                UNIX_EPOCH - magnitude
            }
        }),
    }
}

macro_rules! arbitrary_message {
    ($ty:ty, |$g:ident| $body:expr) => {
        impl Arbitrary for Arb<$ty> {
            fn arbitrary($g: &mut Gen) -> Self {
                Arb($body)
            }
        }
    };
}

arbitrary_message!(AppendEntriesRequest, |g| AppendEntriesRequest {
    header: header(g),
    term: u64::arbitrary(g),
    prev_log_entry: u64::arbitrary(g),
    prev_log_term: u64::arbitrary(g),
    entries: (0..usize::arbitrary(g) % 6).map(|_| log(g)).collect(),
    leader_commit_index: u64::arbitrary(g),
    leader: bytes(g),
});
arbitrary_message!(AppendEntriesResponse, |g| AppendEntriesResponse {
    header: header(g),
    term: u64::arbitrary(g),
    last_log: u64::arbitrary(g),
    success: bool::arbitrary(g),
    no_retry_backoff: bool::arbitrary(g),
});
arbitrary_message!(RequestVoteRequest, |g| RequestVoteRequest {
    header: header(g),
    term: u64::arbitrary(g),
    last_log_index: u64::arbitrary(g),
    last_log_term: u64::arbitrary(g),
    leadership_transfer: bool::arbitrary(g),
    candidate: bytes(g),
});
arbitrary_message!(RequestVoteResponse, |g| RequestVoteResponse {
    header: header(g),
    term: u64::arbitrary(g),
    peers: bytes(g),
    granted: bool::arbitrary(g),
});
arbitrary_message!(RequestPreVoteRequest, |g| RequestPreVoteRequest {
    header: header(g),
    term: u64::arbitrary(g),
    last_log_index: u64::arbitrary(g),
    last_log_term: u64::arbitrary(g),
});
arbitrary_message!(RequestPreVoteResponse, |g| RequestPreVoteResponse {
    header: header(g),
    term: u64::arbitrary(g),
    granted: bool::arbitrary(g),
});
arbitrary_message!(InstallSnapshotRequest, |g| InstallSnapshotRequest {
    header: header(g),
    snapshot_version: i64::arbitrary(g),
    term: u64::arbitrary(g),
    leader: bytes(g),
    last_log_index: u64::arbitrary(g),
    last_log_term: u64::arbitrary(g),
    peers: bytes(g),
    configuration: bytes(g),
    configuration_index: u64::arbitrary(g),
    size: u64::arbitrary(g) >> 1,
});
arbitrary_message!(SnapshotChunk, |g| SnapshotChunk {
    data: bytes(g),
    data_crc32c: Option::<u32>::arbitrary(g),
});
arbitrary_message!(InstallSnapshotResponse, |g| InstallSnapshotResponse {
    header: header(g),
    term: u64::arbitrary(g),
    success: bool::arbitrary(g),
});
arbitrary_message!(TimeoutNowRequest, |g| TimeoutNowRequest {
    header: header(g)
});
arbitrary_message!(TimeoutNowResponse, |g| TimeoutNowResponse {
    header: header(g)
});

/// Frames `messages` into one stream, cuts it at `cuts`, decodes it again,
/// and checks that the same messages come back, in order.
fn framed_stream_survives_any_split<M: RaftMessage>(
    messages: Vec<Arb<M>>,
    cuts: Vec<usize>,
    zero_copy_min: u16,
) -> TestResult {
    let encoder = MessageEncoder::new(usize::MAX, usize::from(zero_copy_min));
    let mut stream = Vec::new();
    for Arb(message) in &messages {
        let encoded = encoder.encode(message).expect("no limit");
        assert_eq!(encoded.len(), 5 + message.encoded_len());
        for chunk in encoded.chunks() {
            stream.extend_from_slice(chunk);
        }
    }
    let stream = Bytes::from(stream);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();

    let mut decoder = MessageDecoder::new(usize::MAX);
    let mut decoded = Vec::new();
    for pair in points.windows(2) {
        decoder.push(stream.slice(pair[0]..pair[1]));
        while let Some(body) = decoder.next_message().expect("valid framing") {
            decoded.push(M::decode(body).expect("valid protobuf"));
        }
    }
    if let Err(e) = decoder.finish() {
        return TestResult::error(e.to_string());
    }
    let originals: Vec<M> = messages.into_iter().map(|Arb(m)| m).collect();
    TestResult::from_bool(decoded == originals)
}

/// Our hand-written encoder produces exactly prost's bytes.
fn encoding_matches_prost<M: RaftMessage>(Arb(message): Arb<M>) -> bool {
    message.encode_to_bytes()[..] == message.to_wire().encode_to_vec()[..]
}

/// What of a message the v0.1 wire profile carries.
trait V0_1View: Sized {
    /// The message without the fields v0.1 lacks (identity for those it
    /// carries whole).
    fn v0_1_view(self) -> Self {
        self
    }
}

impl V0_1View for AppendEntriesRequest {
    fn v0_1_view(mut self) -> Self {
        self.leader = Bytes::new();
        for entry in &mut self.entries {
            entry.appended_at = None;
        }
        self
    }
}

impl V0_1View for InstallSnapshotRequest {
    fn v0_1_view(mut self) -> Self {
        self.snapshot_version = 0;
        self.leader = Bytes::new();
        self
    }
}

impl V0_1View for SnapshotChunk {
    fn v0_1_view(mut self) -> Self {
        self.data_crc32c = None;
        self
    }
}

impl V0_1View for AppendEntriesResponse {}
impl V0_1View for RequestVoteRequest {}
impl V0_1View for RequestVoteResponse {}
impl V0_1View for RequestPreVoteRequest {}
impl V0_1View for RequestPreVoteResponse {}
impl V0_1View for InstallSnapshotResponse {}
impl V0_1View for TimeoutNowRequest {}
impl V0_1View for TimeoutNowResponse {}

/// Under the v0.1 profile a message frames to the announced length and
/// decodes (from a stream cut anywhere) to what v0.1 carries of it.
fn v0_1_round_trip<M: RaftMessage + V0_1View>(
    messages: Vec<Arb<M>>,
    cuts: Vec<usize>,
    zero_copy_min: u16,
) -> TestResult {
    let profile = WireProfile::V0_1;
    let encoder = MessageEncoder::new(usize::MAX, usize::from(zero_copy_min)).with_profile(profile);
    let mut stream = Vec::new();
    for Arb(message) in &messages {
        let encoded = encoder.encode(message).expect("no limit");
        assert_eq!(encoded.len(), 5 + message.encoded_len_with(profile));
        assert_eq!(
            encoded.to_bytes().slice(5..),
            message.encode_to_bytes_with(profile)
        );
        stream.extend_from_slice(&encoded.to_bytes());
    }
    let stream = Bytes::from(stream);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.extend([0, stream.len()]);
    points.sort_unstable();
    let mut decoder = MessageDecoder::new(usize::MAX);
    let mut decoded = Vec::new();
    for pair in points.windows(2) {
        decoder.push(stream.slice(pair[0]..pair[1]));
        while let Some(body) = decoder.next_message().expect("valid framing") {
            decoded.push(M::decode_with(profile, body).expect("valid protobuf"));
        }
    }
    let expected: Vec<M> = messages.into_iter().map(|Arb(m)| m.v0_1_view()).collect();
    TestResult::from_bool(decoded == expected)
}

fn check<M>()
where
    M: RaftMessage + V0_1View + 'static,
    Arb<M>: Arbitrary,
{
    QuickCheck::new()
        .tests(200)
        .quickcheck(v0_1_round_trip::<M> as fn(Vec<Arb<M>>, Vec<usize>, u16) -> TestResult);
    QuickCheck::new().tests(200).quickcheck(
        framed_stream_survives_any_split::<M> as fn(Vec<Arb<M>>, Vec<usize>, u16) -> TestResult,
    );
    QuickCheck::new()
        .tests(200)
        .quickcheck(encoding_matches_prost::<M> as fn(Arb<M>) -> bool);
}

#[test]
fn append_entries_request() {
    check::<AppendEntriesRequest>();
}

#[test]
fn append_entries_response() {
    check::<AppendEntriesResponse>();
}

#[test]
fn request_vote_request() {
    check::<RequestVoteRequest>();
}

#[test]
fn request_vote_response() {
    check::<RequestVoteResponse>();
}

#[test]
fn request_pre_vote_request() {
    check::<RequestPreVoteRequest>();
}

#[test]
fn request_pre_vote_response() {
    check::<RequestPreVoteResponse>();
}

#[test]
fn install_snapshot_request() {
    check::<InstallSnapshotRequest>();
}

#[test]
fn snapshot_chunk() {
    check::<SnapshotChunk>();
}

#[test]
fn install_snapshot_response() {
    check::<InstallSnapshotResponse>();
}

#[test]
fn timeout_now_request() {
    check::<TimeoutNowRequest>();
}

#[test]
fn timeout_now_response() {
    check::<TimeoutNowResponse>();
}

/// The pipeline's wire types carry the same bytes as AppendEntries.
#[test]
fn pipeline_messages_are_append_entries_on_the_wire() {
    fn prop(
        Arb(request): Arb<AppendEntriesRequest>,
        Arb(response): Arb<AppendEntriesResponse>,
    ) -> bool {
        let pipeline_request =
            raft_grpc_transport::wire::AppendEntriesPipelineRequest::from(&request);
        let pipeline_response =
            raft_grpc_transport::wire::AppendEntriesPipelineResponse::from(&response);
        pipeline_request.encode_to_vec()[..] == request.encode_to_bytes()[..]
            && pipeline_response.encode_to_vec()[..] == response.encode_to_bytes()[..]
            && AppendEntriesRequest::from(pipeline_request) == request
            && AppendEntriesResponse::from(pipeline_response) == response
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(Arb<AppendEntriesRequest>, Arb<AppendEntriesResponse>) -> bool);
}

/// Entry data and snapshot chunks decoded from a message that arrived in
/// one piece point into the received buffer.
#[test]
fn decoded_payloads_point_into_the_received_buffer() {
    fn prop(Arb(request): Arb<AppendEntriesRequest>, Arb(chunk): Arb<SnapshotChunk>) -> bool {
        let encoder = MessageEncoder::new(usize::MAX, 1);
        let mut ok = true;

        let received = encoder.encode(&request).unwrap().to_bytes();
        let range = received.as_ptr_range();
        let mut decoder = MessageDecoder::new(usize::MAX);
        decoder.push(received.clone());
        let body = decoder.next_message().unwrap().unwrap();
        let decoded = AppendEntriesRequest::decode(body).unwrap();
        for entry in &decoded.entries {
            for payload in [&entry.data, &entry.extensions] {
                ok &= payload.is_empty() || range.contains(&payload.as_ptr());
            }
        }

        let received = encoder.encode(&chunk).unwrap().to_bytes();
        let range = received.as_ptr_range();
        let mut decoder = MessageDecoder::new(usize::MAX);
        decoder.push(received.clone());
        let decoded = SnapshotChunk::decode(decoder.next_message().unwrap().unwrap()).unwrap();
        ok && (decoded.data.is_empty() || range.contains(&decoded.data.as_ptr()))
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(Arb<AppendEntriesRequest>, Arb<SnapshotChunk>) -> bool);
}

/// A stream cut short anywhere inside a message is reported as truncated
/// (INTERNAL), never as a message.
#[test]
fn truncated_streams_are_reported() {
    fn prop(Arb(request): Arb<AppendEntriesRequest>, cut: usize) -> bool {
        let framed = MessageEncoder::new(usize::MAX, 16)
            .encode(&request)
            .unwrap()
            .to_bytes();
        let cut = 1 + cut % (framed.len() - 1);
        let mut decoder = MessageDecoder::new(usize::MAX);
        decoder.push(framed.slice(..cut));
        matches!(decoder.next_message(), Ok(None))
            && decoder.finish().map_err(|e| e.code()) == Err(raft_grpc_transport::Code::Internal)
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Arb<AppendEntriesRequest>, usize) -> bool);
}
