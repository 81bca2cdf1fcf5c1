//! Golden byte vectors: the crate's hand-written protobuf encoder against
//! bytes produced independently, by Python's official protobuf runtime from
//! `proto/raft/v1/raft.proto`.
//!
//! The fixtures `tests/golden/*.bin` are raw protobuf bodies (no gRPC
//! prefix) written by `tests/golden/generate.py`; see
//! `tests/golden/README.md` for how to regenerate them. Every value built
//! here mirrors a constant of that script exactly: when you change one side,
//! change the other, then regenerate.
//!
//! For each fixture this test checks that
//! (a) `RaftMessage::encode_to_bytes` produces exactly the fixture bytes;
//! (b) `MessageEncoder::encode` produces the 5-byte gRPC prefix and then the
//!     fixture bytes;
//! (c) `RaftMessage::decode` of the fixture gives back the value;
//! (d) prost decodes the fixture into the wire type, re-encodes it to the
//!     same bytes, and our `to_wire` gives the same wire value.
//!
//! The fixtures are compiled in with `include_bytes!`: running this test
//! needs no Python.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    Log, LogType, RaftMessage, RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest,
    RequestVoteResponse, SnapshotChunk, TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::{MessageEncoder, wire};

mod golden_values;
use golden_values::{LARGE_LEN, header_a, header_big, header_neg, hex, pattern};

/// The bytes of `tests/golden/<name>.bin`.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("golden/", $name, ".bin")).as_slice()
    };
}

/// Every fixture this test checks; `every_fixture_is_checked` fails when a
/// `.bin` file in `tests/golden` is missing from this list.
const CHECKED: &[&str] = &[
    "append_entries_request_full",
    "append_entries_request_header_only",
    "append_entries_request_large_entry",
    "append_entries_response_full",
    "append_entries_response_no_retry_backoff",
    "append_entries_response_header_only",
    "append_entries_pipeline_request_full",
    "append_entries_pipeline_request_header_only",
    "append_entries_pipeline_response_full",
    "append_entries_pipeline_response_header_only",
    "request_vote_request_full",
    "request_vote_request_header_only",
    "request_vote_response_full",
    "request_vote_response_header_only",
    "request_pre_vote_request_full",
    "request_pre_vote_request_header_only",
    "request_pre_vote_response_full",
    "request_pre_vote_response_header_only",
    "install_snapshot_request_first",
    "install_snapshot_request_header_only",
    "install_snapshot_request_first_with_data",
    "install_snapshot_request_chunk",
    "install_snapshot_request_chunk_crc_zero",
    "install_snapshot_request_chunk_no_crc",
    "install_snapshot_request_chunk_large",
    "install_snapshot_response_full",
    "install_snapshot_response_header_only",
    "timeout_now_request_header_only",
    "timeout_now_response_header_only",
    "timeout_now_response_empty_header",
];

// --- Constants mirrored from tests/golden/generate.py ----------------------

/// `CHUNK_DATA` in generate.py.
const CHUNK_DATA: &[u8] = b"\x00\x01\x02snap\xff\xfe\xfd\xc3\xa9";
/// `CHUNK_CRC` in generate.py: CRC-32C of `CHUNK_DATA`.
const CHUNK_CRC: u32 = 0x9BE3_EA15;
/// `LARGE_CHUNK_CRC` in generate.py: CRC-32C of `pattern(LARGE_LEN)`.
const LARGE_CHUNK_CRC: u32 = 0xB97C_E0C1;

/// `appended_at_unix_nanos` as the `SystemTime` our `Log` carries.
fn unix_nanos(nanos: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    Some(if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    })
}

// --- Checks -----------------------------------------------------------------

/// The framed message MessageEncoder must produce for `body`.
fn framed(body: &[u8]) -> String {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    hex(&out)
}

/// Checks (a) to (d) for a message that travels as its own `RaftMessage`.
fn check<M>(fixture: &'static [u8], value: &M)
where
    M: RaftMessage,
    M::Wire: PartialEq + Debug,
{
    // (a) Our encoder produces exactly the bytes of the reference runtime.
    assert_eq!(
        hex(&value.encode_to_bytes()),
        hex(fixture),
        "encode_to_bytes of {value:?}"
    );
    assert_eq!(value.encoded_len(), fixture.len(), "encoded_len");

    // (b) The framed message is the gRPC prefix and the same bytes.
    let encoded = MessageEncoder::default()
        .encode(value)
        .expect("message within the default send limit");
    assert_eq!(encoded.len(), 5 + fixture.len());
    assert_eq!(hex(&encoded.to_bytes()), framed(fixture), "MessageEncoder");

    // (c) Our decoder reads the reference bytes back to the value.
    let decoded = M::decode(Bytes::from_static(fixture)).expect("fixture decodes");
    assert_eq!(&decoded, value, "decode");

    // (d) prost agrees: it reads the fixture and writes it back unchanged,
    // and our conversion to the wire type gives what prost read.
    let wire = M::Wire::decode(Bytes::from_static(fixture)).expect("prost decodes");
    assert_eq!(hex(&wire.encode_to_vec()), hex(fixture), "prost re-encode");
    assert_eq!(value.to_wire(), wire, "to_wire");
}

/// Checks (a) to (d) for an AppendEntriesPipeline request, which travels as
/// `wire::AppendEntriesPipelineRequest` but is an `AppendEntriesRequest`.
fn check_pipeline_request(fixture: &'static [u8], value: &AppendEntriesRequest) {
    assert_eq!(
        hex(&value.encode_to_bytes()),
        hex(fixture),
        "encode_to_bytes"
    );
    assert_eq!(value.encoded_len(), fixture.len(), "encoded_len");
    let encoded = MessageEncoder::default().encode(value).unwrap();
    assert_eq!(hex(&encoded.to_bytes()), framed(fixture), "MessageEncoder");

    let wire = wire::AppendEntriesPipelineRequest::decode(Bytes::from_static(fixture))
        .expect("prost decodes");
    assert_eq!(hex(&wire.encode_to_vec()), hex(fixture), "prost re-encode");
    assert_eq!(wire::AppendEntriesPipelineRequest::from(value), wire);
    assert_eq!(&AppendEntriesRequest::from(wire), value, "decode");
}

/// As [`check_pipeline_request`], for an AppendEntriesPipeline response.
fn check_pipeline_response(fixture: &'static [u8], value: &AppendEntriesResponse) {
    assert_eq!(
        hex(&value.encode_to_bytes()),
        hex(fixture),
        "encode_to_bytes"
    );
    assert_eq!(value.encoded_len(), fixture.len(), "encoded_len");
    let encoded = MessageEncoder::default().encode(value).unwrap();
    assert_eq!(hex(&encoded.to_bytes()), framed(fixture), "MessageEncoder");

    let wire = wire::AppendEntriesPipelineResponse::decode(Bytes::from_static(fixture))
        .expect("prost decodes");
    assert_eq!(hex(&wire.encode_to_vec()), hex(fixture), "prost re-encode");
    assert_eq!(wire::AppendEntriesPipelineResponse::from(value), wire);
    assert_eq!(&AppendEntriesResponse::from(wire), value, "decode");
}

/// Checks the first message of an InstallSnapshot stream, which carries
/// metadata and, from some senders, data: `from_first_message` splits it.
fn check_first_snapshot_message(
    fixture: &'static [u8],
    meta: &InstallSnapshotRequest,
    chunk: &SnapshotChunk,
) {
    let wire =
        wire::InstallSnapshotRequest::decode(Bytes::from_static(fixture)).expect("prost decodes");
    assert_eq!(hex(&wire.encode_to_vec()), hex(fixture), "prost re-encode");
    let (got_meta, got_chunk) =
        InstallSnapshotRequest::from_first_message(wire).expect("valid first message");
    assert_eq!(&got_meta, meta, "metadata");
    assert_eq!(&got_chunk, chunk, "data");
}

// --- One test per fixture ---------------------------------------------------

#[test]
fn append_entries_request_full() {
    check(
        fixture!("append_entries_request_full"),
        &AppendEntriesRequest {
            header: header_a(),
            term: 5_000_000_001,
            prev_log_entry: 6_000_000_002,
            prev_log_term: 4_999_999_999,
            entries: vec![
                Log {
                    index: 6_000_000_003,
                    term: 5_000_000_001,
                    log_type: LogType::Configuration,
                    data: Bytes::from_static(b"\x00\x01conf\xff\xfe"),
                    extensions: Bytes::from_static(b"\x80ext\x7f"),
                    appended_at: unix_nanos(1_700_000_000_123_456_789),
                },
                Log {
                    index: 6_000_000_004,
                    term: 5_000_000_001,
                    log_type: LogType::Unknown(9),
                    data: Bytes::from_static(b"\xc3\xa9t\xc3\xa9"),
                    extensions: Bytes::new(),
                    appended_at: unix_nanos(-1_234_567_890_123_456_789),
                },
                Log {
                    index: 6_000_000_005,
                    term: 5_000_000_001,
                    log_type: LogType::Noop,
                    ..Default::default()
                },
                Log {
                    index: 6_000_000_006,
                    term: 5_000_000_001,
                    log_type: LogType::Command,
                    data: Bytes::from_static(b"set x=\x01"),
                    extensions: Bytes::from_static(b"\x00"),
                    appended_at: unix_nanos(0),
                },
            ],
            leader_commit_index: 6_000_000_000,
            leader: Bytes::from_static(b"ldr\xe2\x82\xac:7000"),
        },
    );
}

#[test]
fn append_entries_request_header_only() {
    check(
        fixture!("append_entries_request_header_only"),
        &AppendEntriesRequest {
            header: header_big(),
            ..Default::default()
        },
    );
}

#[test]
fn append_entries_request_large_entry() {
    let value = AppendEntriesRequest {
        header: header_neg(),
        term: 11,
        prev_log_entry: 12,
        prev_log_term: 10,
        entries: vec![
            Log {
                index: 13,
                term: 11,
                data: pattern(LARGE_LEN),
                ..Default::default()
            },
            Log {
                index: 14,
                term: 11,
                log_type: LogType::Barrier,
                appended_at: unix_nanos(15),
                ..Default::default()
            },
        ],
        leader_commit_index: 9,
        leader: Bytes::new(),
    };
    check(fixture!("append_entries_request_large_entry"), &value);
    // The large entry went through MessageEncoder's zero-copy path.
    let encoded = MessageEncoder::default().encode(&value).unwrap();
    assert!(
        encoded.chunks().len() > 1,
        "{} chunks",
        encoded.chunks().len()
    );
}

#[test]
fn append_entries_response_full() {
    check(
        fixture!("append_entries_response_full"),
        &AppendEntriesResponse {
            header: header_neg(),
            term: 7_000_000_007,
            last_log: 8_000_000_008,
            success: true,
            no_retry_backoff: true,
        },
    );
}

#[test]
fn append_entries_response_no_retry_backoff() {
    check(
        fixture!("append_entries_response_no_retry_backoff"),
        &AppendEntriesResponse {
            header: header_a(),
            term: 7_000_000_017,
            last_log: 8_000_000_018,
            success: false,
            no_retry_backoff: true,
        },
    );
}

#[test]
fn append_entries_response_header_only() {
    check(
        fixture!("append_entries_response_header_only"),
        &AppendEntriesResponse {
            header: header_big(),
            ..Default::default()
        },
    );
}

#[test]
fn append_entries_pipeline_request_full() {
    check_pipeline_request(
        fixture!("append_entries_pipeline_request_full"),
        &AppendEntriesRequest {
            header: header_big(),
            term: 9_000_000_001,
            prev_log_entry: 9_100_000_002,
            prev_log_term: 8_999_999_999,
            entries: vec![
                Log::default(),
                Log {
                    index: 9_100_000_003,
                    term: 9_000_000_001,
                    log_type: LogType::Barrier,
                    appended_at: unix_nanos(0),
                    ..Default::default()
                },
                Log {
                    index: 9_100_000_004,
                    term: 9_000_000_001,
                    log_type: LogType::AddPeerDeprecated,
                    data: Bytes::from_static(b"\xffadd"),
                    ..Default::default()
                },
                Log {
                    index: 9_100_000_005,
                    term: 9_000_000_001,
                    log_type: LogType::RemovePeerDeprecated,
                    extensions: Bytes::from_static(b"\xferm"),
                    ..Default::default()
                },
                Log {
                    index: 9_100_000_006,
                    term: 9_000_000_001,
                    log_type: LogType::Unknown(u32::MAX),
                    data: Bytes::from_static(b"\x00"),
                    extensions: Bytes::new(),
                    appended_at: unix_nanos(-1),
                },
            ],
            leader_commit_index: 9_100_000_000,
            leader: Bytes::from_static(b"\xe6\x9d\xb1:7003"),
        },
    );
}

#[test]
fn append_entries_pipeline_request_header_only() {
    check_pipeline_request(
        fixture!("append_entries_pipeline_request_header_only"),
        &AppendEntriesRequest {
            header: header_neg(),
            ..Default::default()
        },
    );
}

#[test]
fn append_entries_pipeline_response_full() {
    check_pipeline_response(
        fixture!("append_entries_pipeline_response_full"),
        &AppendEntriesResponse {
            header: header_a(),
            term: 9_000_000_011,
            last_log: 9_100_000_012,
            success: true,
            no_retry_backoff: false,
        },
    );
}

#[test]
fn append_entries_pipeline_response_header_only() {
    check_pipeline_response(
        fixture!("append_entries_pipeline_response_header_only"),
        &AppendEntriesResponse {
            header: header_big(),
            ..Default::default()
        },
    );
}

#[test]
fn request_vote_request_full() {
    check(
        fixture!("request_vote_request_full"),
        &RequestVoteRequest {
            header: header_a(),
            term: 10_000_000_001,
            last_log_index: 10_000_000_002,
            last_log_term: 10_000_000_000,
            leadership_transfer: true,
            candidate: Bytes::from_static(b"c\xc3\xa4nd:7000"),
        },
    );
}

#[test]
fn request_vote_request_header_only() {
    check(
        fixture!("request_vote_request_header_only"),
        &RequestVoteRequest {
            header: header_neg(),
            ..Default::default()
        },
    );
}

#[test]
fn request_vote_response_full() {
    check(
        fixture!("request_vote_response_full"),
        &RequestVoteResponse {
            header: header_neg(),
            term: 11_000_000_001,
            peers: Bytes::from_static(b"\x01\x02peers\xff"),
            granted: true,
        },
    );
}

#[test]
fn request_vote_response_header_only() {
    check(
        fixture!("request_vote_response_header_only"),
        &RequestVoteResponse {
            header: header_a(),
            ..Default::default()
        },
    );
}

#[test]
fn request_pre_vote_request_full() {
    check(
        fixture!("request_pre_vote_request_full"),
        &RequestPreVoteRequest {
            header: header_big(),
            term: 12_000_000_001,
            last_log_index: 12_000_000_002,
            last_log_term: 12_000_000_000,
        },
    );
}

#[test]
fn request_pre_vote_request_header_only() {
    check(
        fixture!("request_pre_vote_request_header_only"),
        &RequestPreVoteRequest {
            header: header_a(),
            ..Default::default()
        },
    );
}

#[test]
fn request_pre_vote_response_full() {
    check(
        fixture!("request_pre_vote_response_full"),
        &RequestPreVoteResponse {
            header: header_a(),
            term: 13_000_000_001,
            granted: true,
        },
    );
}

#[test]
fn request_pre_vote_response_header_only() {
    check(
        fixture!("request_pre_vote_response_header_only"),
        &RequestPreVoteResponse {
            header: header_neg(),
            ..Default::default()
        },
    );
}

#[test]
fn install_snapshot_request_first() {
    let fixture = fixture!("install_snapshot_request_first");
    let meta = InstallSnapshotRequest {
        header: header_a(),
        snapshot_version: 1,
        term: 14_000_000_001,
        leader: Bytes::from_static(b"l\xc3\xa9ader:7000"),
        last_log_index: 14_000_000_002,
        last_log_term: 14_000_000_000,
        peers: Bytes::from_static(b"\x05old-peers\xff"),
        configuration: Bytes::from_static(b"\x0aconf\xc3\xa9\x00"),
        configuration_index: 13_999_999_999,
        size: 0x0123_4567_89AB,
    };
    check(fixture, &meta);
    check_first_snapshot_message(fixture, &meta, &SnapshotChunk::default());
}

#[test]
fn install_snapshot_request_header_only() {
    let fixture = fixture!("install_snapshot_request_header_only");
    let meta = InstallSnapshotRequest {
        header: header_big(),
        ..Default::default()
    };
    check(fixture, &meta);
    check_first_snapshot_message(fixture, &meta, &SnapshotChunk::default());
}

#[test]
fn install_snapshot_request_first_with_data() {
    // Our sender never puts data in the first message, so this vector is
    // only decoded (and re-encoded by prost).
    check_first_snapshot_message(
        fixture!("install_snapshot_request_first_with_data"),
        &InstallSnapshotRequest {
            header: header_neg(),
            snapshot_version: 1,
            term: 15_000_000_001,
            leader: Bytes::new(),
            last_log_index: 15_000_000_002,
            last_log_term: 15_000_000_000,
            peers: Bytes::new(),
            configuration: Bytes::from_static(b"\x0bcfg"),
            configuration_index: 14_999_999_999,
            size: CHUNK_DATA.len() as u64,
        },
        &SnapshotChunk {
            data: Bytes::from_static(CHUNK_DATA),
            data_crc32c: Some(CHUNK_CRC),
        },
    );
}

#[test]
fn install_snapshot_request_chunk() {
    check(
        fixture!("install_snapshot_request_chunk"),
        &SnapshotChunk {
            data: Bytes::from_static(CHUNK_DATA),
            data_crc32c: Some(CHUNK_CRC),
        },
    );
}

#[test]
fn install_snapshot_request_chunk_crc_zero() {
    check(
        fixture!("install_snapshot_request_chunk_crc_zero"),
        &SnapshotChunk {
            data: Bytes::from_static(b"\xc3\xa9"),
            data_crc32c: Some(0),
        },
    );
}

#[test]
fn install_snapshot_request_chunk_no_crc() {
    check(
        fixture!("install_snapshot_request_chunk_no_crc"),
        &SnapshotChunk {
            data: Bytes::from_static(b"\x00go-chunk\xff"),
            data_crc32c: None,
        },
    );
}

#[test]
fn install_snapshot_request_chunk_large() {
    let value = SnapshotChunk {
        data: pattern(LARGE_LEN),
        data_crc32c: Some(LARGE_CHUNK_CRC),
    };
    check(fixture!("install_snapshot_request_chunk_large"), &value);
    // The chunk went through MessageEncoder's zero-copy path.
    let encoded = MessageEncoder::default().encode(&value).unwrap();
    assert!(
        encoded.chunks().len() > 1,
        "{} chunks",
        encoded.chunks().len()
    );
}

#[test]
fn install_snapshot_response_full() {
    check(
        fixture!("install_snapshot_response_full"),
        &InstallSnapshotResponse {
            header: header_big(),
            term: 16_000_000_001,
            success: true,
        },
    );
}

#[test]
fn install_snapshot_response_header_only() {
    check(
        fixture!("install_snapshot_response_header_only"),
        &InstallSnapshotResponse {
            header: header_a(),
            ..Default::default()
        },
    );
}

#[test]
fn timeout_now_request_header_only() {
    check(
        fixture!("timeout_now_request_header_only"),
        &TimeoutNowRequest {
            header: header_neg(),
        },
    );
}

#[test]
fn timeout_now_response_header_only() {
    check(
        fixture!("timeout_now_response_header_only"),
        &TimeoutNowResponse {
            header: header_big(),
        },
    );
}

#[test]
fn timeout_now_response_empty_header() {
    // A default header is still written, as an empty message (0a 00).
    check(
        fixture!("timeout_now_response_empty_header"),
        &TimeoutNowResponse::default(),
    );
}

#[test]
fn every_fixture_is_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".bin").map(str::to_owned))
        .collect();
    let checked: BTreeSet<String> = CHECKED.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(CHECKED.len(), checked.len(), "duplicate name in CHECKED");
    assert_eq!(on_disk, checked, "tests/golden/*.bin vs CHECKED");
}
