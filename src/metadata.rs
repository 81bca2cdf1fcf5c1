//! Binary gRPC metadata: the values of `-bin` headers.
//!
//! gRPC carries binary header values (names ending in `-bin`, such as
//! `grpc-status-details-bin`) in base64. This module owns that encoding:
//! values are sent unpadded, as gRPC recommends, and accepted with or
//! without padding.
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
