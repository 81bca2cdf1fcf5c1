//! What a caller of a Raft transport sees: the error of a failed RPC.
//!
//! This module owns [`TransportError`], shared by every adapter, so that a
//! Raft implementation (or a `MigrationTransport` predicate) can tell a
//! closed transport, a closed pipeline and a gRPC failure apart, whatever
//! runtime carries the calls.

use crate::status::{Code, Status};

/// Why an outgoing RPC failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport was closed (hashicorp's `ErrTransportShutdown`);
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
}

impl TransportError {
    /// The gRPC status this error stands for (`UNAVAILABLE` for the two
    /// shutdowns).
    pub fn status(&self) -> Status {
        match self {
            TransportError::Status(status) => status.clone(),
            other => Status::new(Code::Unavailable, other.to_string()),
        }
    }

    /// The gRPC code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            TransportError::Status(status) => status.code(),
            _ => Code::Unavailable,
        }
    }
}

impl From<Status> for TransportError {
    fn from(status: Status) -> Self {
        TransportError::Status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(TransportError::Shutdown.code(), Code::Unavailable);
        assert_eq!(
            TransportError::PipelineShutdown.status().message(),
            "append pipeline closed"
        );
        let e = TransportError::from(Status::new(Code::DeadlineExceeded, "late"));
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert_eq!(e.to_string(), "DEADLINE_EXCEEDED: late");
    }
}
