//! gRPC metadata: the values of `-bin` headers, and which names a caller
//! may set.
//!
//! gRPC carries binary header values (names ending in `-bin`, such as
//! `grpc-status-details-bin`) in base64. This module owns that encoding:
//! values are sent unpadded, as gRPC recommends, and accepted with or
//! without padding. It also owns the rule for custom request metadata
//! ([`check_custom_metadata`]): names that HTTP/2 or gRPC itself uses are
//! not a caller's to set.
//!
//! ```
//! use http::HeaderValue;
//! use raft_grpc_transport::metadata::{decode_binary_value, encode_binary_value};
//!
//! assert_eq!(encode_binary_value(b"\x00\x01"), "AAE");
//! assert_eq!(&decode_binary_value(&HeaderValue::from_static("AAE="))?[..], b"\x00\x01");
//! # Ok::<(), raft_grpc_transport::metadata::BinaryValueError>(())
//! ```

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::HeaderValue;

const SEND: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(false),
);

const RECEIVE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A `-bin` header value that is not valid base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("binary metadata value is not valid base64: {0}")]
pub struct BinaryValueError(String);

/// Custom metadata that would overwrite a header HTTP/2 or gRPC itself
/// uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata name {0:?} is reserved by gRPC")]
pub struct ReservedMetadataError(pub String);

/// Checks that `metadata` holds no name gRPC reserves: `content-type`,
/// `te`, `user-agent`, `grpc-*` (`grpc-timeout`, `grpc-status`, …) and the
/// connection-specific headers HTTP/2 forbids.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use raft_grpc_transport::metadata::check_custom_metadata;
///
/// let mut metadata = HeaderMap::new();
/// metadata.insert("authorization", HeaderValue::from_static("Bearer t0ken"));
/// assert!(check_custom_metadata(&metadata).is_ok());
/// metadata.insert("grpc-timeout", HeaderValue::from_static("1S"));
/// assert!(check_custom_metadata(&metadata).is_err());
/// ```
pub fn check_custom_metadata(metadata: &http::HeaderMap) -> Result<(), ReservedMetadataError> {
    match metadata.keys().find(|name| is_reserved_name(name)) {
        Some(name) => Err(ReservedMetadataError(name.as_str().to_owned())),
        None => Ok(()),
    }
}

/// Whether `name` is one that gRPC or HTTP/2 itself sets or forbids (see
/// [`check_custom_metadata`]).
pub fn is_reserved_name(name: &http::HeaderName) -> bool {
    const RESERVED: [&str; 8] = [
        "content-type",
        "te",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ];
    RESERVED.contains(&name.as_str()) || name.as_str().starts_with("grpc-")
}

/// Encodes a binary metadata value as unpadded base64.
pub fn encode_binary_value(value: &[u8]) -> HeaderValue {
    // Base64 output is always a valid header value.
    HeaderValue::from_str(&SEND.encode(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes a binary metadata value, padded or not.
pub fn decode_binary_value(value: &HeaderValue) -> Result<Bytes, BinaryValueError> {
    RECEIVE
        .decode(value.as_bytes())
        .map(Bytes::from)
        .map_err(|e| BinaryValueError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn rejects_non_base64() {
        assert!(decode_binary_value(&HeaderValue::from_static("a b")).is_err());
    }

    quickcheck! {
        fn binary_values_round_trip(value: Vec<u8>) -> bool {
            let encoded = encode_binary_value(&value);
            !encoded.as_bytes().contains(&b'=') && decode_binary_value(&encoded).ok().as_deref() == Some(&value[..])
        }
    }
}
