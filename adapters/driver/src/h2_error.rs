//! The one reading of h2's errors, for both endpoints.
//!
//! This module owns [`Failure`]: what an `h2::Error` on a stream or a
//! connection means in the endpoints' terms — the peer refused the stream
//! or went away (GOAWAY, with its code), reset it (with its code), or the
//! connection is gone. Every place the driver meets an h2 error goes
//! through [`Failure::of`].

/// What an h2 error means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The peer sent GOAWAY with this code: the stream was not (or will
    /// not be) processed.
    GoAway(u32),
    /// The stream was reset with this HTTP/2 error code.
    Reset(u32),
    /// The connection is gone (I/O error, protocol error, closed).
    Lost(String),
}

impl Failure {
    /// Reads an h2 error.
    pub(crate) fn of(error: &h2::Error) -> Failure {
        if error.is_go_away() {
            let code = error
                .reason()
                .map_or(raft_grpc_transport::http2::NO_ERROR, u32::from);
            return Failure::GoAway(code);
        }
        match error.reason() {
            Some(reason) if error.is_reset() => Failure::Reset(reason.into()),
            _ => Failure::Lost(error.to_string()),
        }
    }
}
