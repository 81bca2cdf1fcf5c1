//! The `grpc-timeout` request header.
//!
//! This module owns the header's format: at most 8 ASCII digits followed by
//! one unit, `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds),
//! `u` (microseconds) or `n` (nanoseconds). Encoding picks the finest unit
//! that fits in 8 digits and rounds up, so the receiver's deadline is never
//! earlier than the sender's; durations beyond 99,999,999 hours are sent as
//! that. Decoding rejects anything else with an error whose status is
//! `INTERNAL`, as grpc-go does. What a deadline does to a call is the call
//! machines' business.
//!
//! ```
//! use std::time::Duration;
//! use raft_grpc_transport::timeout::{decode_grpc_timeout, encode_grpc_timeout};
//!
//! assert_eq!(encode_grpc_timeout(Duration::from_secs(10)), "10000000u");
//! assert_eq!(decode_grpc_timeout(b"250m"), Ok(Duration::from_millis(250)));
//! ```

use std::time::Duration;

use http::HeaderValue;

use crate::status::{Code, Status};

/// The header's name.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

const MAX_DIGITS: usize = 8;
const MAX_VALUE: u128 = 99_999_999;

/// A `grpc-timeout` value that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutError {
    /// No digits before the unit, or more than 8.
    #[error("grpc-timeout needs 1 to 8 digits before its unit, found {0}")]
    DigitCount(usize),
    /// The value does not end in one of `H M S m u n`.
    #[error("grpc-timeout has no valid unit (one of H M S m u n)")]
    Unit,
    /// A character other than an ASCII digit before the unit.
    #[error("grpc-timeout has a character that is not a digit")]
    NotADigit,
}

impl TimeoutError {
    /// The status to reject the request with: `INTERNAL`.
    pub fn status(&self) -> Status {
        Status::new(Code::Internal, format!("malformed {GRPC_TIMEOUT}: {self}"))
    }
}

/// Encodes a timeout for the `grpc-timeout` header, rounding up to the
/// finest unit that fits in 8 digits.
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per_unit, unit)| (nanos.div_ceil(per_unit), unit))
        .find(|&(value, _)| value <= MAX_VALUE)
        .unwrap_or((MAX_VALUE, 'H'));
    HeaderValue::from_str(&format!("{value}{unit}"))
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

/// Decodes a `grpc-timeout` header value.
pub fn decode_grpc_timeout(value: &[u8]) -> Result<Duration, TimeoutError> {
    let (&unit, digits) = value.split_last().ok_or(TimeoutError::DigitCount(0))?;
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return Err(TimeoutError::DigitCount(digits.len()));
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(TimeoutError::NotADigit);
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(TimeoutError::Unit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn encodes_with_the_finest_unit_that_fits() {
        assert_eq!(encode_grpc_timeout(Duration::ZERO), "0n");
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(100_000_000)),
            "100000u"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(100_000_001)),
            "100001u"
        );
        assert_eq!(encode_grpc_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(3600 * 100_000_000)),
            "99999999H"
        );
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn decodes_every_unit() {
        assert_eq!(decode_grpc_timeout(b"2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(decode_grpc_timeout(b"2M"), Ok(Duration::from_secs(120)));
        assert_eq!(decode_grpc_timeout(b"2S"), Ok(Duration::from_secs(2)));
        assert_eq!(decode_grpc_timeout(b"2m"), Ok(Duration::from_millis(2)));
        assert_eq!(decode_grpc_timeout(b"2u"), Ok(Duration::from_micros(2)));
        assert_eq!(decode_grpc_timeout(b"2n"), Ok(Duration::from_nanos(2)));
        assert_eq!(
            decode_grpc_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn rejects_malformed_values() {
        assert_eq!(decode_grpc_timeout(b""), Err(TimeoutError::DigitCount(0)));
        assert_eq!(decode_grpc_timeout(b"S"), Err(TimeoutError::DigitCount(0)));
        assert_eq!(
            decode_grpc_timeout(b"123456789S"),
            Err(TimeoutError::DigitCount(9))
        );
        assert_eq!(decode_grpc_timeout(b"12x"), Err(TimeoutError::Unit));
        assert_eq!(decode_grpc_timeout(b"1 S"), Err(TimeoutError::NotADigit));
        assert_eq!(decode_grpc_timeout(b"-1S"), Err(TimeoutError::NotADigit));
        assert_eq!(TimeoutError::Unit.status().code(), Code::Internal);
    }

    quickcheck! {
        /// Decoding what was encoded gives the timeout rounded up, by less
        /// than one unit of the encoding.
        fn timeout_round_trips_rounding_up(secs: u32, nanos: u32) -> bool {
            let timeout = Duration::new(u64::from(secs), nanos % 1_000_000_000);
            let encoded = encode_grpc_timeout(timeout);
            let bytes = encoded.as_bytes();
            let unit = match bytes[bytes.len() - 1] {
                b'n' => Duration::from_nanos(1),
                b'u' => Duration::from_micros(1),
                b'm' => Duration::from_millis(1),
                b'S' => Duration::from_secs(1),
                b'M' => Duration::from_secs(60),
                _ => Duration::from_secs(3600),
            };
            let decoded = decode_grpc_timeout(bytes).unwrap();
            bytes.len() <= 9 && decoded >= timeout && decoded - timeout < unit
        }

        /// Exactly the well-formed values decode, and what decodes survives
        /// a re-encoding (rounded up, never down).
        fn decoding_accepts_exactly_the_format(raw: Vec<u8>) -> bool {
            let well_formed = raw.len() >= 2
                && raw.len() <= 9
                && raw[..raw.len() - 1].iter().all(u8::is_ascii_digit)
                && b"HMSmun".contains(&raw[raw.len() - 1]);
            match decode_grpc_timeout(&raw) {
                Ok(d) => well_formed && decode_grpc_timeout(encode_grpc_timeout(d).as_bytes()).unwrap() >= d,
                Err(_) => !well_formed,
            }
        }
    }
}
