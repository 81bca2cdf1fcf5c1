//! How an outgoing call ends when it does not end with a response.
//!
//! This module owns [`TransportError`], the typed outcome of every failed
//! outgoing call of a [`ClientEndpoint`](crate::client::ClientEndpoint)
//! and of every transport built on it: the local transport was closed
//! ([`Shutdown`](TransportError::Shutdown)), the pipeline was closed
//! ([`PipelineShutdown`](TransportError::PipelineShutdown)), the call
//! failed with a gRPC [`Status`] (the peer's answer, the network, a
//! deadline), or the peer's wire profile has no such call
//! ([`PreVoteUnsupported`](TransportError::PreVoteUnsupported)). Outcomes are decided by the endpoint that knows why a call
//! ended, never recovered from a status by comparing messages.
//!
//! It also owns the one status a server answers with when it shuts down
//! ([`shutdown_status`]), so that every answer of a closing node says the
//! same thing.

use crate::profile::WireProfile;
use crate::status::{Code, Status};

/// The message of every "transport shut down" answer and error.
const SHUTDOWN_MESSAGE: &str = "transport shut down";

/// The message of every "append pipeline closed" error.
const PIPELINE_SHUTDOWN_MESSAGE: &str = "append pipeline closed";

/// Why an outgoing RPC failed.
///
/// ```
/// use raft_grpc_transport::{Code, Status, TransportError};
///
/// let e = TransportError::from(Status::new(Code::DeadlineExceeded, "late"));
/// assert_eq!(e.code(), Code::DeadlineExceeded);
/// assert_eq!(TransportError::Shutdown.code(), Code::Unavailable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The local transport was closed (hashicorp's `ErrTransportShutdown`);
    /// nothing more will be sent.
    #[error("transport shut down")]
    Shutdown,
    /// The pipeline was closed before the append completed (hashicorp's
    /// `ErrPipelineShutdown`).
    #[error("append pipeline closed")]
    PipelineShutdown,
    /// The call failed with this gRPC status: the peer's answer, or what
    /// the network or a deadline did to the call.
    #[error("{0}")]
    Status(Status),
    /// A RequestPreVote under a wire profile that has no such method (the
    /// Go library's v0.1.0): it was not sent. Its status is
    /// `UNIMPLEMENTED`, what such a peer answers, and its message contains
    /// hashicorp/raft's "unexpected command", on which hashicorp/raft
    /// counts the pre-vote as granted and goes on with the election.
    #[error("pre-vote not supported by this peer (wire profile {0}): unexpected command")]
    PreVoteUnsupported(WireProfile),
}

impl TransportError {
    /// The gRPC status this error stands for (`UNAVAILABLE` for the two
    /// shutdowns).
    pub fn status(&self) -> Status {
        match self {
            TransportError::Status(status) => status.clone(),
            TransportError::Shutdown => shutdown_status(),
            TransportError::PipelineShutdown => {
                Status::new(Code::Unavailable, PIPELINE_SHUTDOWN_MESSAGE)
            }
            TransportError::PreVoteUnsupported(_) => {
                Status::new(Code::Unimplemented, self.to_string())
            }
        }
    }

    /// The gRPC code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            TransportError::Status(status) => status.code(),
            TransportError::PreVoteUnsupported(_) => Code::Unimplemented,
            _ => Code::Unavailable,
        }
    }
}

impl From<Status> for TransportError {
    fn from(status: Status) -> Self {
        TransportError::Status(status)
    }
}

/// The status a closing server answers every call it still holds with,
/// and that a closing transport gives the readers of incoming snapshots:
/// `UNAVAILABLE` ("transport shut down"), which callers may retry
/// elsewhere.
pub fn shutdown_status() -> Status {
    Status::new(Code::Unavailable, SHUTDOWN_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        assert_eq!(TransportError::Shutdown.code(), Code::Unavailable);
        assert_eq!(
            TransportError::PipelineShutdown.status().message(),
            "append pipeline closed"
        );
        assert_eq!(TransportError::Shutdown.status(), shutdown_status());
        let e = TransportError::from(Status::new(Code::DeadlineExceeded, "late"));
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert_eq!(e.to_string(), "DEADLINE_EXCEEDED: late");
    }
}
