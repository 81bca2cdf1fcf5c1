//! What both golden-vector tests (`golden.rs`, the Python runtime's
//! fixtures; `golden_v0_1.rs`, the Go library v0.1.0's) build their values
//! from: the constants both generators share, mirrored.

use bytes::Bytes;
use raft_grpc_transport::message::RpcHeader;

/// `HEADER_A` in generate.py.
pub fn header_a() -> RpcHeader {
    RpcHeader::new(
        3,
        Bytes::from_static(b"n\xc3\xb8de-1\x00"),
        Bytes::from_static(b"10.0.0.1:7000\xff"),
    )
}

/// `HEADER_NEG` in generate.py: a negative protocol version.
pub fn header_neg() -> RpcHeader {
    RpcHeader::new(
        -2,
        Bytes::from_static(b"\x80\x81\x82"),
        Bytes::from_static(b"[::1]:7001"),
    )
}

/// `HEADER_BIG` in generate.py.
pub fn header_big() -> RpcHeader {
    RpcHeader::new(
        i64::MAX,
        Bytes::from_static(b"\xfe\xfd-node-3"),
        Bytes::from_static(b"node-3.example:7002\x7f"),
    )
}

/// `LARGE_LEN` in generate.py: above the 16 KiB zero-copy threshold.
pub const LARGE_LEN: u32 = 20_000;

/// `pattern(n)` in generate.py.
pub fn pattern(n: u32) -> Bytes {
    (0..n)
        .map(|i| ((i * 31 + 7) % 256) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// `bytes` as lower-case hex, for assertion messages that show the bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
