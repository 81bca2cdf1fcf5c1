//! Golden byte vectors of the v0.1 wire profile: the crate's encoder and
//! decoder under [`WireProfile::V0_1`] against bytes produced by the
//! protobuf reference runtime for Go, with the types generated from the Go
//! library v0.1.0's own proto as that release ships them.
//!
//! The fixtures `tests/golden/v0_1/*.bin` are raw protobuf bodies written by
//! `tests/interop/go/cmd/golden-v0_1` (see `tests/golden/README.md`); every
//! value built here mirrors one of that program exactly. For each fixture
//! this test checks that
//! (a) `encode_to_bytes_with(V0_1)` produces exactly the fixture bytes, and
//!     `encoded_len_with` their length;
//! (b) a `MessageEncoder` with the v0.1 profile frames the same bytes;
//! (c) `decode_with(V0_1, ..)` of the fixture gives back the value;
//! (d) the same value with every field v0.1 cannot carry set (appended_at,
//!     leader, snapshot_version, checksums) still encodes to the fixture:
//!     what the profile lacks is left out, not sent at another number;
//! (e) for the requests v0.1 renumbers, prost's `wire::v0_1` type reads the
//!     fixture and writes it back unchanged.
//!
//! Messages that v0.1 numbers as v0.2 does are also checked under the
//! default profile, so the two profiles agree where they should.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use raft_grpc_transport::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    Log, LogType, RaftMessage, RequestVoteRequest, RequestVoteResponse, SnapshotChunk,
    TimeoutNowRequest, TimeoutNowResponse,
};
use raft_grpc_transport::{MessageEncoder, WireProfile, wire};

mod golden_values;
use golden_values::{LARGE_LEN, header_a, header_big, header_neg, hex, pattern};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("golden/v0_1/", $name, ".bin")).as_slice()
    };
}

/// Every fixture this test checks; `every_fixture_is_checked` fails when a
/// `.bin` file in `tests/golden/v0_1` is missing from this list.
const CHECKED: &[&str] = &[
    "append_entries_request_full",
    "append_entries_request_header_only",
    "append_entries_request_large_entry",
    "append_entries_response_full",
    "append_entries_pipeline_request_full",
    "append_entries_pipeline_response_full",
    "request_vote_request_full",
    "request_vote_request_header_only",
    "request_vote_response_full",
    "install_snapshot_request_first",
    "install_snapshot_request_chunk",
    "install_snapshot_request_chunk_large",
    "install_snapshot_response_full",
    "timeout_now_request_header_only",
    "timeout_now_response_header_only",
];

const V0_1: WireProfile = WireProfile::V0_1;

/// `entries()` of the generator.
fn entries() -> Vec<Log> {
    vec![
        Log {
            index: 6_000_000_003,
            term: 5_000_000_001,
            log_type: LogType::Configuration,
            data: Bytes::from_static(b"\x00\x01conf\xff\xfe"),
            extensions: Bytes::from_static(b"\x80ext\x7f"),
            appended_at: None,
        },
        Log {
            index: 6_000_000_004,
            term: 5_000_000_001,
            log_type: LogType::Unknown(9),
            data: Bytes::from_static(b"\xc3\xa9t\xc3\xa9"),
            ..Default::default()
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
            appended_at: None,
        },
    ]
}

/// Checks (a) to (d) for `value` (which sets nothing v0.1 lacks) and
/// `richer` (the same with such fields set).
fn check<M: RaftMessage>(fixture: &'static [u8], value: &M, richer: &M) {
    // (a)
    assert_eq!(
        hex(&value.encode_to_bytes_with(V0_1)),
        hex(fixture),
        "encode_to_bytes_with(V0_1) of {value:?}"
    );
    assert_eq!(
        value.encoded_len_with(V0_1),
        fixture.len(),
        "encoded_len_with"
    );
    // (b)
    let encoded = MessageEncoder::default()
        .with_profile(V0_1)
        .encode(value)
        .unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(fixture.len() as u32).to_be_bytes());
    framed.extend_from_slice(fixture);
    assert_eq!(hex(&encoded.to_bytes()), hex(&framed), "MessageEncoder");
    // (c)
    let decoded = M::decode_with(V0_1, Bytes::from_static(fixture)).expect("fixture decodes");
    assert_eq!(&decoded, value, "decode_with(V0_1)");
    // (d)
    assert_eq!(
        hex(&richer.encode_to_bytes_with(V0_1)),
        hex(fixture),
        "fields v0.1 lacks are left out"
    );
    assert_eq!(richer.encoded_len_with(V0_1), fixture.len());
    let encoded = MessageEncoder::default()
        .with_profile(V0_1)
        .encode(richer)
        .unwrap();
    assert_eq!(
        hex(&encoded.to_bytes()),
        hex(&framed),
        "MessageEncoder, richer"
    );
}

/// (e): prost's v0.1 type reads and rewrites the fixture unchanged.
fn check_prost<W: prost::Message + Default + Debug>(fixture: &'static [u8]) {
    let wire = W::decode(Bytes::from_static(fixture)).expect("prost decodes");
    assert_eq!(hex(&wire.encode_to_vec()), hex(fixture), "prost re-encode");
}

/// For the messages both profiles number alike: the default profile reads
/// and writes the same bytes.
fn check_same_in_v0_2<M: RaftMessage>(fixture: &'static [u8], value: &M) {
    assert_eq!(hex(&value.encode_to_bytes()), hex(fixture), "v0.2 encoding");
    assert_eq!(&M::decode(Bytes::from_static(fixture)).unwrap(), value);
}

fn append_entries_full() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header_a(),
        term: 5_000_000_001,
        prev_log_entry: 6_000_000_002,
        prev_log_term: 4_999_999_999,
        entries: entries(),
        leader_commit_index: 6_000_000_000,
        leader: Bytes::new(),
    }
}

/// `request` with the fields v0.1 lacks set.
fn with_v0_2_fields(mut request: AppendEntriesRequest) -> AppendEntriesRequest {
    request.leader = Bytes::from_static(b"ldr\xe2\x82\xac:7000");
    for (i, entry) in request.entries.iter_mut().enumerate() {
        entry.appended_at =
            Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + i as u64));
    }
    request
}

#[test]
fn v0_1_append_entries_request_full() {
    let fixture = fixture!("append_entries_request_full");
    let value = append_entries_full();
    check(fixture, &value, &with_v0_2_fields(value.clone()));
    check_prost::<wire::v0_1::AppendEntriesRequest>(fixture);
    // Read in the v0.2 numbering the bytes do not parse (field 5, v0.1's
    // prev_log_term, is a varint where v0.2 has the entries).
    assert!(AppendEntriesRequest::decode(Bytes::from_static(fixture)).is_err());
}

#[test]
fn v0_1_append_entries_request_header_only() {
    let fixture = fixture!("append_entries_request_header_only");
    let value = AppendEntriesRequest {
        header: header_big(),
        ..Default::default()
    };
    check(fixture, &value, &with_v0_2_fields(value.clone()));
    check_same_in_v0_2(fixture, &value);
}

#[test]
fn v0_1_append_entries_request_large_entry() {
    let fixture = fixture!("append_entries_request_large_entry");
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
                ..Default::default()
            },
        ],
        leader_commit_index: 9,
        leader: Bytes::new(),
    };
    check(fixture, &value, &with_v0_2_fields(value.clone()));
    // The large entry went through the zero-copy path under v0.1 too, and
    // decoding sliced it out of the input.
    let encoded = MessageEncoder::default()
        .with_profile(V0_1)
        .encode(&value)
        .unwrap();
    assert!(
        encoded.chunks().len() > 1,
        "{} chunks",
        encoded.chunks().len()
    );
    let input = Bytes::from_static(fixture);
    let decoded = AppendEntriesRequest::decode_with(V0_1, input.clone()).unwrap();
    let data = &decoded.entries[0].data;
    let start = data.as_ptr() as usize - input.as_ptr() as usize;
    assert!(
        start + data.len() <= input.len(),
        "payload not sliced from the input"
    );
}

#[test]
fn v0_1_append_entries_pipeline_request_full() {
    // A pipeline message carries AppendEntriesRequest's fields and numbers.
    let fixture = fixture!("append_entries_pipeline_request_full");
    assert_eq!(fixture, fixture!("append_entries_request_full"));
    let value = append_entries_full();
    check(fixture, &value, &with_v0_2_fields(value.clone()));
}

#[test]
fn v0_1_append_entries_responses() {
    let value = AppendEntriesResponse {
        header: header_a(),
        term: 5_000_000_001,
        last_log: 6_000_000_006,
        success: true,
        no_retry_backoff: true,
    };
    check(fixture!("append_entries_response_full"), &value, &value);
    check_same_in_v0_2(fixture!("append_entries_response_full"), &value);
    let pipelined = AppendEntriesResponse {
        header: header_neg(),
        term: 7,
        last_log: 1 << 40,
        success: true,
        no_retry_backoff: true,
    };
    check(
        fixture!("append_entries_pipeline_response_full"),
        &pipelined,
        &pipelined,
    );
    check_same_in_v0_2(
        fixture!("append_entries_pipeline_response_full"),
        &pipelined,
    );
}

#[test]
fn v0_1_request_vote_request_full() {
    let fixture = fixture!("request_vote_request_full");
    let value = RequestVoteRequest {
        header: header_a(),
        term: 5_000_000_001,
        last_log_index: 6_000_000_002,
        last_log_term: 4_999_999_999,
        leadership_transfer: true,
        candidate: Bytes::from_static(b"cand\xe2\x82\xac:7000"),
    };
    // v0.1 carries the candidate, at 3.
    check(fixture, &value, &value);
    check_prost::<wire::v0_1::RequestVoteRequest>(fixture);
    assert!(RequestVoteRequest::decode(Bytes::from_static(fixture)).is_err());
}

#[test]
fn v0_1_request_vote_request_header_only() {
    let fixture = fixture!("request_vote_request_header_only");
    let value = RequestVoteRequest {
        header: header_big(),
        ..Default::default()
    };
    check(fixture, &value, &value);
    check_same_in_v0_2(fixture, &value);
}

#[test]
fn v0_1_request_vote_response_full() {
    let value = RequestVoteResponse {
        header: header_a(),
        term: 5_000_000_001,
        peers: Bytes::from_static(b"\x01peers\xff"),
        granted: true,
    };
    check(fixture!("request_vote_response_full"), &value, &value);
    check_same_in_v0_2(fixture!("request_vote_response_full"), &value);
}

#[test]
fn v0_1_install_snapshot_request_first() {
    let fixture = fixture!("install_snapshot_request_first");
    let value = InstallSnapshotRequest {
        header: header_a(),
        snapshot_version: 0,
        term: 5_000_000_001,
        leader: Bytes::new(),
        last_log_index: 6_000_000_002,
        last_log_term: 4_999_999_999,
        peers: Bytes::from_static(b"\x02p\xff"),
        configuration: Bytes::from_static(b"\x00conf\xfe"),
        configuration_index: 6_000_000_001,
        size: 1 << 40,
    };
    let richer = InstallSnapshotRequest {
        snapshot_version: 1,
        leader: Bytes::from_static(b"ldr:7000"),
        ..value.clone()
    };
    check(fixture, &value, &richer);
    check_prost::<wire::v0_1::InstallSnapshotRequest>(fixture);
    let (meta, data) =
        InstallSnapshotRequest::decode_first_message(V0_1, Bytes::from_static(fixture)).unwrap();
    assert_eq!(meta, value);
    assert_eq!(data, SnapshotChunk::default());
}

#[test]
fn v0_1_install_snapshot_request_chunks() {
    for (fixture, data) in [
        (
            fixture!("install_snapshot_request_chunk"),
            Bytes::from_static(b"\x00\x01\x02snap\xff\xfe\xfd\xc3\xa9"),
        ),
        (
            fixture!("install_snapshot_request_chunk_large"),
            pattern(LARGE_LEN),
        ),
    ] {
        let value = SnapshotChunk {
            data: data.clone(),
            data_crc32c: None,
        };
        let richer = SnapshotChunk {
            data,
            data_crc32c: Some(0x9BE3_EA15),
        };
        check(fixture, &value, &richer);
        check_prost::<wire::v0_1::InstallSnapshotRequest>(fixture);
        // Under v0.2, field 10 is the snapshot version: a varint, not bytes.
        assert!(SnapshotChunk::decode(Bytes::from_static(fixture)).is_err());
    }
}

#[test]
fn v0_1_install_snapshot_response_full() {
    let value = InstallSnapshotResponse {
        header: header_big(),
        term: 5_000_000_001,
        success: true,
    };
    check(fixture!("install_snapshot_response_full"), &value, &value);
    check_same_in_v0_2(fixture!("install_snapshot_response_full"), &value);
}

#[test]
fn v0_1_timeout_now() {
    let request = TimeoutNowRequest { header: header_a() };
    check(
        fixture!("timeout_now_request_header_only"),
        &request,
        &request,
    );
    check_same_in_v0_2(fixture!("timeout_now_request_header_only"), &request);
    let response = TimeoutNowResponse {
        header: header_neg(),
    };
    check(
        fixture!("timeout_now_response_header_only"),
        &response,
        &response,
    );
    check_same_in_v0_2(fixture!("timeout_now_response_header_only"), &response);
}

#[test]
fn v0_1_every_fixture_is_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v0_1");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".bin").map(str::to_owned)
        })
        .collect();
    let checked: BTreeSet<String> = CHECKED.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, checked);
}
