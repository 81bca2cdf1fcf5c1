#!/usr/bin/env python3
"""Generate the golden protobuf vectors in tests/golden/*.bin.

The vectors are produced by Python's official protobuf runtime from
proto/raft/v1/raft.proto, independently of the crate's hand-written encoder
(src/message/mod.rs, src/message/writer.rs) and of prost. The Rust test
tests/golden.rs builds the SAME values with the crate's domain types and
checks that our encoder produces these bytes exactly, and that our decoder
and prost read them back.

Every constant below is mirrored in tests/golden.rs: when you change one
here, change it there too (and vice versa), then regenerate.

Usage (see tests/golden/README.md):
    python generate.py          # (re)write tests/golden/*.bin
    python generate.py --check  # fail if the checked-in files differ

Python's protobuf runtime writes known fields in field-number order, so the
output is deterministic for a given .proto and set of values.
"""

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "raft/v1/raft.proto"


def compile_proto(out_dir):
    """Compiles raft.proto with grpcio-tools' protoc and imports raft_pb2."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--python_out={out_dir}",
            PROTO_FILE,
        ],
        check=True,
    )
    path = Path(out_dir) / "raft" / "v1" / "raft_pb2.py"
    spec = importlib.util.spec_from_file_location("golden_raft_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: slow, but small and obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def pattern(n):
    """n bytes of a deterministic, non-ASCII-heavy pattern (mirrored in Rust)."""
    return bytes((i * 31 + 7) % 256 for i in range(n))


# --- Constants mirrored in tests/golden.rs -------------------------------

# Three headers. Multi-byte varints, a negative protocol_version (a 10-byte
# varint), and id/addr bytes that are not valid ASCII (some not UTF-8).
HEADER_A = dict(protocol_version=3, id=b"n\xc3\xb8de-1\x00", addr=b"10.0.0.1:7000\xff")
HEADER_NEG = dict(protocol_version=-2, id=b"\x80\x81\x82", addr=b"[::1]:7001")
HEADER_BIG = dict(
    protocol_version=0x7FFF_FFFF_FFFF_FFFF,  # i64::MAX
    id=b"\xfe\xfd-node-3",
    addr=b"node-3.example:7002\x7f",
)

LARGE_LEN = 20_000  # above the encoder's default 16 KiB zero-copy threshold

CHUNK_DATA = b"\x00\x01\x02snap\xff\xfe\xfd\xc3\xa9"
CHUNK_CRC = 0x9BE3_EA15  # CRC-32C of CHUNK_DATA, checked below
LARGE_CHUNK_CRC = 0xB97C_E0C1  # CRC-32C of pattern(LARGE_LEN), checked below


def build(pb):
    """Returns [(name, message)], every vector to write."""
    H = pb.RPCHeader
    hdr_a, hdr_neg, hdr_big = H(**HEADER_A), H(**HEADER_NEG), H(**HEADER_BIG)

    assert crc32c(CHUNK_DATA) == CHUNK_CRC, hex(crc32c(CHUNK_DATA))
    assert crc32c(pattern(LARGE_LEN)) == LARGE_CHUNK_CRC, hex(crc32c(pattern(LARGE_LEN)))

    v = []

    # AppendEntriesRequest: every field, four entries covering LogType
    # Configuration (5), an unknown type (9), Noop (1) and Command (0, not
    # written), appended_at positive, negative (before 1970), unset, and
    # explicitly 0 (present: written as 0x30 0x00).
    v.append((
        "append_entries_request_full",
        pb.AppendEntriesRequest(
            header=hdr_a,
            term=5_000_000_001,
            prev_log_entry=6_000_000_002,
            prev_log_term=4_999_999_999,
            entries=[
                pb.Log(
                    index=6_000_000_003,
                    term=5_000_000_001,
                    type=5,
                    data=b"\x00\x01conf\xff\xfe",
                    extensions=b"\x80ext\x7f",
                    appended_at_unix_nanos=1_700_000_000_123_456_789,
                ),
                pb.Log(
                    index=6_000_000_004,
                    term=5_000_000_001,
                    type=9,
                    data=b"\xc3\xa9t\xc3\xa9",
                    appended_at_unix_nanos=-1_234_567_890_123_456_789,
                ),
                pb.Log(index=6_000_000_005, term=5_000_000_001, type=1),
                pb.Log(
                    index=6_000_000_006,
                    term=5_000_000_001,
                    type=0,
                    data=b"set x=\x01",
                    extensions=b"\x00",
                    appended_at_unix_nanos=0,
                ),
            ],
            leader_commit_index=6_000_000_000,
            leader=b"ldr\xe2\x82\xac:7000",
        ),
    ))
    v.append(("append_entries_request_header_only", pb.AppendEntriesRequest(header=hdr_big)))
    # One entry larger than the zero-copy threshold, so that MessageEncoder
    # hands it through as a chunk of its own.
    v.append((
        "append_entries_request_large_entry",
        pb.AppendEntriesRequest(
            header=hdr_neg,
            term=11,
            prev_log_entry=12,
            prev_log_term=10,
            entries=[
                pb.Log(index=13, term=11, data=pattern(LARGE_LEN)),
                pb.Log(index=14, term=11, type=4, appended_at_unix_nanos=15),
            ],
            leader_commit_index=9,
        ),
    ))

    v.append((
        "append_entries_response_full",
        pb.AppendEntriesResponse(
            header=hdr_neg,
            term=7_000_000_007,
            last_log=8_000_000_008,
            success=True,
            no_retry_backoff=True,
        ),
    ))
    # The two bools differ, so swapping their field numbers is detected.
    v.append((
        "append_entries_response_no_retry_backoff",
        pb.AppendEntriesResponse(
            header=hdr_a, term=7_000_000_017, last_log=8_000_000_018, no_retry_backoff=True
        ),
    ))
    v.append(("append_entries_response_header_only", pb.AppendEntriesResponse(header=hdr_big)))

    # AppendEntriesPipelineRequest: an all-default entry (written as 0x2a
    # 0x00), Barrier with appended_at explicitly 0, the deprecated types 2
    # and 3, and the largest possible unknown type (a 5-byte varint).
    v.append((
        "append_entries_pipeline_request_full",
        pb.AppendEntriesPipelineRequest(
            header=hdr_big,
            term=9_000_000_001,
            prev_log_entry=9_100_000_002,
            prev_log_term=8_999_999_999,
            entries=[
                pb.Log(),
                pb.Log(index=9_100_000_003, term=9_000_000_001, type=4, appended_at_unix_nanos=0),
                pb.Log(index=9_100_000_004, term=9_000_000_001, type=2, data=b"\xffadd"),
                pb.Log(index=9_100_000_005, term=9_000_000_001, type=3, extensions=b"\xferm"),
                pb.Log(
                    index=9_100_000_006,
                    term=9_000_000_001,
                    type=0xFFFF_FFFF,
                    data=b"\x00",
                    appended_at_unix_nanos=-1,
                ),
            ],
            leader_commit_index=9_100_000_000,
            leader=b"\xe6\x9d\xb1:7003",
        ),
    ))
    v.append((
        "append_entries_pipeline_request_header_only",
        pb.AppendEntriesPipelineRequest(header=hdr_neg),
    ))
    v.append((
        "append_entries_pipeline_response_full",
        pb.AppendEntriesPipelineResponse(
            header=hdr_a,
            term=9_000_000_011,
            last_log=9_100_000_012,
            success=True,
            no_retry_backoff=False,
        ),
    ))
    v.append((
        "append_entries_pipeline_response_header_only",
        pb.AppendEntriesPipelineResponse(header=hdr_big),
    ))

    v.append((
        "request_vote_request_full",
        pb.RequestVoteRequest(
            header=hdr_a,
            term=10_000_000_001,
            last_log_index=10_000_000_002,
            last_log_term=10_000_000_000,
            leadership_transfer=True,
            candidate=b"c\xc3\xa4nd:7000",
        ),
    ))
    v.append(("request_vote_request_header_only", pb.RequestVoteRequest(header=hdr_neg)))
    v.append((
        "request_vote_response_full",
        pb.RequestVoteResponse(
            header=hdr_neg,
            term=11_000_000_001,
            peers=b"\x01\x02peers\xff",
            granted=True,
        ),
    ))
    v.append(("request_vote_response_header_only", pb.RequestVoteResponse(header=hdr_a)))

    v.append((
        "request_pre_vote_request_full",
        pb.RequestPreVoteRequest(
            header=hdr_big,
            term=12_000_000_001,
            last_log_index=12_000_000_002,
            last_log_term=12_000_000_000,
        ),
    ))
    v.append(("request_pre_vote_request_header_only", pb.RequestPreVoteRequest(header=hdr_a)))
    v.append((
        "request_pre_vote_response_full",
        pb.RequestPreVoteResponse(header=hdr_a, term=13_000_000_001, granted=True),
    ))
    v.append((
        "request_pre_vote_response_header_only",
        pb.RequestPreVoteResponse(header=hdr_neg),
    ))

    # InstallSnapshotRequest, first message of a stream: every metadata
    # field, no data and no data_crc32c.
    v.append((
        "install_snapshot_request_first",
        pb.InstallSnapshotRequest(
            header=hdr_a,
            term=14_000_000_001,
            last_log_index=14_000_000_002,
            last_log_term=14_000_000_000,
            peers=b"\x05old-peers\xff",
            configuration=b"\x0aconf\xc3\xa9\x00",
            configuration_index=13_999_999_999,
            size=0x0123_4567_89AB,
            snapshot_version=1,
            leader=b"l\xc3\xa9ader:7000",
        ),
    ))
    v.append((
        "install_snapshot_request_header_only",
        pb.InstallSnapshotRequest(header=hdr_big),
    ))
    # A first message that also carries data (as Jille's Go transport
    # sends): only decodable (InstallSnapshotRequest::from_first_message),
    # since our sender splits metadata and data into separate messages.
    v.append((
        "install_snapshot_request_first_with_data",
        pb.InstallSnapshotRequest(
            header=hdr_neg,
            term=15_000_000_001,
            last_log_index=15_000_000_002,
            last_log_term=15_000_000_000,
            configuration=b"\x0bcfg",
            configuration_index=14_999_999_999,
            size=len(CHUNK_DATA),
            data=CHUNK_DATA,
            snapshot_version=1,
            data_crc32c=CHUNK_CRC,
        ),
    ))
    # Later messages of the stream: data (and data_crc32c) only.
    v.append((
        "install_snapshot_request_chunk",
        pb.InstallSnapshotRequest(data=CHUNK_DATA, data_crc32c=CHUNK_CRC),
    ))
    # data_crc32c explicitly 0: present, written as 0x65 00 00 00 00.
    v.append((
        "install_snapshot_request_chunk_crc_zero",
        pb.InstallSnapshotRequest(data=b"\xc3\xa9", data_crc32c=0),
    ))
    # data_crc32c unset, as from a Go sender.
    v.append((
        "install_snapshot_request_chunk_no_crc",
        pb.InstallSnapshotRequest(data=b"\x00go-chunk\xff"),
    ))
    v.append((
        "install_snapshot_request_chunk_large",
        pb.InstallSnapshotRequest(data=pattern(LARGE_LEN), data_crc32c=LARGE_CHUNK_CRC),
    ))
    v.append((
        "install_snapshot_response_full",
        pb.InstallSnapshotResponse(header=hdr_big, term=16_000_000_001, success=True),
    ))
    v.append((
        "install_snapshot_response_header_only",
        pb.InstallSnapshotResponse(header=hdr_a),
    ))

    v.append(("timeout_now_request_header_only", pb.TimeoutNowRequest(header=hdr_neg)))
    v.append(("timeout_now_response_header_only", pb.TimeoutNowResponse(header=hdr_big)))
    # A present but empty header (0x0a 0x00): what our encoder writes for a
    # default header, as prost and Go senders do.
    empty = pb.TimeoutNowResponse()
    empty.header.SetInParent()
    v.append(("timeout_now_response_empty_header", empty))

    names = [name for name, _ in v]
    assert len(names) == len(set(names)), "duplicate vector name"
    return v


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the checked-in files instead of writing them",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="raft-golden-") as tmp:
        pb = compile_proto(tmp)
        vectors = build(pb)

    expected = {}
    for name, message in vectors:
        body = message.SerializeToString(deterministic=True)
        # Sanity: the runtime parses its own output back to the same value.
        again = type(message)()
        again.ParseFromString(body)
        assert again == message, name
        expected[f"{name}.bin"] = body

    existing = {p.name for p in HERE.glob("*.bin")}
    if args.check:
        bad = sorted(
            name
            for name in expected.keys() | existing
            if name not in existing
            or name not in expected
            or (HERE / name).read_bytes() != expected[name]
        )
        if bad:
            print("golden vectors out of date: " + ", ".join(bad), file=sys.stderr)
            return 1
        print(f"{len(expected)} golden vectors up to date")
        return 0

    for name in sorted(existing - expected.keys()):
        (HERE / name).unlink()
        print(f"removed stale {name}")
    for name, body in expected.items():
        (HERE / name).write_bytes(body)
        print(f"{name}: {len(body)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
