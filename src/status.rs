//! gRPC status: the 17 codes, [`Status`], and how a status travels in HTTP/2
//! headers and trailers.
//!
//! This module owns, as pure functions over `http` types:
//! * [`Code`] with its canonical names and numbers, and the standard
//!   mappings from an HTTP status ([`Code::from_http_status`]) and from an
//!   HTTP/2 RST_STREAM error code ([`Code::from_rst_stream`]);
//! * [`Status`] and its trailers (`grpc-status`, `grpc-message` with gRPC's
//!   percent-encoding, `grpc-status-details-bin` in base64), both ways;
//! * reading a status from trailers, where a missing `grpc-status` is
//!   `UNKNOWN` ([`Status::from_trailers`]).
//!
//! Building whole response heads (Trailers-Only included) is
//! [`crate::head`]'s business.
//!
//! ```
//! use raft_grpc_transport::status::{Code, Status};
//!
//! let status = Status::new(Code::Unavailable, "peer 10.0.0.2:7000 is shutting down: 100%");
//! let trailers = status.to_trailers();
//! assert_eq!(trailers["grpc-status"], "14");
//! assert_eq!(trailers["grpc-message"], "peer 10.0.0.2:7000 is shutting down: 100%25");
//! assert_eq!(Status::from_trailers(&trailers), status);
//! ```

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::{http2, metadata};

/// Trailer (or Trailers-Only header) carrying the status code.
pub const GRPC_STATUS: &str = "grpc-status";
/// Trailer carrying the percent-encoded status message.
pub const GRPC_MESSAGE: &str = "grpc-message";
/// Trailer carrying the status details, base64-encoded.
pub const GRPC_STATUS_DETAILS: &str = "grpc-status-details-bin";

/// A gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Code {
    /// Not an error.
    Ok = 0,
    /// The call was cancelled, typically by the caller.
    Cancelled = 1,
    /// An error with no better code, or a status the peer did not send.
    Unknown = 2,
    /// The caller gave an invalid argument.
    InvalidArgument = 3,
    /// The deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// A requested entity was not found.
    NotFound = 5,
    /// The entity to create already exists.
    AlreadyExists = 6,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A resource ran out: a message over the size limit, a quota.
    ResourceExhausted = 8,
    /// The system is not in a state that allows the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// The operation went past a valid range.
    OutOfRange = 11,
    /// The method is not implemented or not supported.
    Unimplemented = 12,
    /// An invariant was broken: bad framing, protobuf or flow control.
    Internal = 13,
    /// The service is unavailable; retrying may help.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The caller has no valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// All 17 codes, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code with this number; numbers outside 0–16 are `UNKNOWN`, as the
    /// gRPC spec says.
    pub fn from_i32(value: i32) -> Code {
        usize::try_from(value)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The code's number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The canonical name, e.g. `"DEADLINE_EXCEEDED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code with this canonical name.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.as_str() == name)
    }

    /// The code for a response whose HTTP status is not 200 and which
    /// carries no `grpc-status`, per gRPC's "HTTP to gRPC status code
    /// mapping": 400 → INTERNAL, 401 → UNAUTHENTICATED, 403 →
    /// PERMISSION_DENIED, 404 → UNIMPLEMENTED, 429, 502, 503 and 504 →
    /// UNAVAILABLE, anything else → UNKNOWN.
    pub fn from_http_status(status: http::StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The code for a stream reset by RST_STREAM with this HTTP/2 error code:
    /// REFUSED_STREAM (0x7) → UNAVAILABLE (the request was not processed, so
    /// it is safe to retry), CANCEL (0x8) → CANCELLED, ENHANCE_YOUR_CALM (0xb)
    /// → RESOURCE_EXHAUSTED, INADEQUATE_SECURITY (0xc) → PERMISSION_DENIED,
    /// anything else → INTERNAL.
    pub fn from_rst_stream(error_code: u32) -> Code {
        match error_code {
            http2::REFUSED_STREAM => Code::Unavailable,
            http2::CANCEL => Code::Cancelled,
            http2::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
            http2::INADEQUATE_SECURITY => Code::PermissionDenied,
            _ => Code::Internal,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gRPC status: a code, a message for people, and opaque details.
///
/// It is also the error type of a failed call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Status {
    code: Code,
    message: String,
    details: Bytes,
}

impl Status {
    /// A status with this code and message, and no details.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
        }
    }

    /// The `OK` status.
    pub fn ok() -> Status {
        Status::new(Code::Ok, "")
    }

    /// This status with these details (sent as `grpc-status-details-bin`;
    /// conventionally a serialized `google.rpc.Status`).
    pub fn with_details(mut self, details: impl Into<Bytes>) -> Status {
        self.details = details.into();
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message (may be empty).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details (empty when none were sent).
    pub fn details(&self) -> &Bytes {
        &self.details
    }

    /// Writes `grpc-status`, and `grpc-message` and `grpc-status-details-bin`
    /// when not empty, into `headers`, replacing any earlier values.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        headers.insert(GRPC_STATUS, HeaderValue::from(self.code.as_i32()));
        if self.message.is_empty() {
            headers.remove(GRPC_MESSAGE);
        } else {
            headers.insert(GRPC_MESSAGE, encode_grpc_message(&self.message));
        }
        if self.details.is_empty() {
            headers.remove(GRPC_STATUS_DETAILS);
        } else {
            headers.insert(
                GRPC_STATUS_DETAILS,
                metadata::encode_binary_value(&self.details),
            );
        }
    }

    /// The trailers that end a response with this status.
    pub fn to_trailers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(3);
        self.write_to(&mut headers);
        headers
    }

    /// Reads a status from headers that carry `grpc-status` (trailers, or the
    /// headers of a Trailers-Only response); `None` when there is no
    /// `grpc-status` at all. A `grpc-status` that is not a number is
    /// `INTERNAL`; a number outside 0–16 is `UNKNOWN`. Details that are not
    /// valid base64 are dropped, keeping the code and message.
    pub fn from_headers(headers: &HeaderMap) -> Option<Status> {
        let raw = headers.get(GRPC_STATUS)?;
        let message = headers
            .get(GRPC_MESSAGE)
            .map(|value| decode_grpc_message(value.as_bytes()))
            .unwrap_or_default();
        let code = match std::str::from_utf8(raw.as_bytes())
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
        {
            Some(n) => Code::from_i32(n),
            None => {
                return Some(Status::new(
                    Code::Internal,
                    format!(
                        "malformed grpc-status {:?} (message: {message:?})",
                        String::from_utf8_lossy(raw.as_bytes())
                    ),
                ));
            }
        };
        let details = headers
            .get(GRPC_STATUS_DETAILS)
            .and_then(|value| metadata::decode_binary_value(value).ok())
            .unwrap_or_default();
        Some(Status {
            code,
            message,
            details,
        })
    }

    /// Reads the status that ends a call from its trailers. Trailers without
    /// `grpc-status` give `UNKNOWN`, as gRPC requires.
    pub fn from_trailers(trailers: &HeaderMap) -> Status {
        Status::from_headers(trailers).unwrap_or_else(|| {
            Status::new(
                Code::Unknown,
                "the peer ended the response without grpc-status",
            )
        })
    }

    /// The status for a stream the peer reset with this HTTP/2 error code.
    pub fn from_rst_stream(error_code: u32) -> Status {
        Status::new(
            Code::from_rst_stream(error_code),
            format!("stream reset by the peer with HTTP/2 error code {error_code:#x}"),
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

/// Percent-encodes a status message for `grpc-message`: every byte of its
/// UTF-8 outside 0x20–0x7E, and `%` itself, becomes `%XX` (upper-case hex).
pub fn encode_grpc_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    // Only printable ASCII is left, which every header value accepts.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes a `grpc-message` value. Never fails: a `%` not followed by two
/// hex digits is kept as it is, and bytes that are not UTF-8 become U+FFFD.
pub fn decode_grpc_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                value.get(i + 1).and_then(|&b| hex_value(b)),
                value.get(i + 2).and_then(|&b| hex_value(b)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn codes_have_their_numbers_and_names() {
        for (i, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), code);
            assert_eq!(Code::from_name(code.as_str()), Some(code));
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::ResourceExhausted.to_string(), "RESOURCE_EXHAUSTED");
        assert_eq!(Code::from_name("NOPE"), None);
    }

    #[test]
    fn http_status_mapping() {
        let cases = [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (415, Code::Unknown),
            (500, Code::Unknown),
            (200, Code::Unknown),
        ];
        for (http, code) in cases {
            assert_eq!(
                Code::from_http_status(http::StatusCode::from_u16(http).unwrap()),
                code,
                "{http}"
            );
        }
    }

    #[test]
    fn rst_stream_mapping() {
        assert_eq!(Code::from_rst_stream(0x7), Code::Unavailable);
        assert_eq!(Code::from_rst_stream(0x8), Code::Cancelled);
        assert_eq!(Code::from_rst_stream(0xb), Code::ResourceExhausted);
        assert_eq!(Code::from_rst_stream(0xc), Code::PermissionDenied);
        for other in [0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x9, 0xa, 0xd, 0xffff] {
            assert_eq!(Code::from_rst_stream(other), Code::Internal);
        }
        assert_eq!(Status::from_rst_stream(0x8).code(), Code::Cancelled);
    }

    #[test]
    fn grpc_message_percent_encoding() {
        assert_eq!(encode_grpc_message("plain text"), "plain text");
        assert_eq!(encode_grpc_message("50%"), "50%25");
        assert_eq!(encode_grpc_message("a\nb"), "a%0Ab");
        assert_eq!(encode_grpc_message("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(decode_grpc_message(b"%C3%BCn%C3%AF"), "ünï");
        assert_eq!(decode_grpc_message(b"%c3%bc"), "ü");
    }

    #[test]
    fn grpc_message_decoding_never_fails() {
        assert_eq!(decode_grpc_message(b"100%"), "100%");
        assert_eq!(decode_grpc_message(b"%zz%4"), "%zz%4");
        assert_eq!(decode_grpc_message(b"%FF"), "\u{FFFD}");
        assert_eq!(decode_grpc_message(b""), "");
    }

    #[test]
    fn status_trailers_round_trip_with_details() {
        let status = Status::new(Code::Aborted, "conflict").with_details(vec![0u8, 1, 2, 255]);
        let trailers = status.to_trailers();
        assert_eq!(trailers[GRPC_STATUS], "10");
        assert_eq!(trailers[GRPC_STATUS_DETAILS], "AAEC/w");
        assert_eq!(Status::from_trailers(&trailers), status);
    }

    #[test]
    fn ok_status_writes_only_grpc_status() {
        let trailers = Status::ok().to_trailers();
        assert_eq!(trailers.len(), 1);
        assert_eq!(trailers[GRPC_STATUS], "0");
    }

    #[test]
    fn missing_grpc_status_is_unknown() {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_MESSAGE, HeaderValue::from_static("hi"));
        assert_eq!(Status::from_headers(&trailers), None);
        assert_eq!(Status::from_trailers(&trailers).code(), Code::Unknown);
    }

    #[test]
    fn malformed_grpc_status_is_internal_and_out_of_range_is_unknown() {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, HeaderValue::from_static("fourteen"));
        assert_eq!(Status::from_trailers(&trailers).code(), Code::Internal);
        trailers.insert(GRPC_STATUS, HeaderValue::from_static("99"));
        assert_eq!(Status::from_trailers(&trailers).code(), Code::Unknown);
    }

    #[test]
    fn padded_and_bad_details() {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, HeaderValue::from_static("3"));
        trailers.insert(GRPC_STATUS_DETAILS, HeaderValue::from_static("AAEC/w=="));
        assert_eq!(
            &Status::from_trailers(&trailers).details()[..],
            &[0, 1, 2, 255]
        );
        trailers.insert(GRPC_STATUS_DETAILS, HeaderValue::from_static("!!!"));
        let status = Status::from_trailers(&trailers);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.details().is_empty());
    }

    quickcheck! {
        fn grpc_message_round_trips(message: String) -> bool {
            decode_grpc_message(encode_grpc_message(&message).as_bytes()) == message
        }

        fn grpc_message_decoding_accepts_any_bytes(raw: Vec<u8>) -> bool {
            let decoded = decode_grpc_message(&raw);
            decode_grpc_message(encode_grpc_message(&decoded).as_bytes()) == decoded
        }

        fn status_round_trips(code: u8, message: String, details: Vec<u8>) -> bool {
            let status = Status::new(Code::from_i32(i32::from(code % 17)), message).with_details(details);
            Status::from_trailers(&status.to_trailers()) == status
        }
    }
}
