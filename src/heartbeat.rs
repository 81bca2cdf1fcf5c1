//! Which AppendEntries requests are heartbeats.
//!
//! This module owns one pure function, [`is_heartbeat`], with hashicorp/raft's
//! definition: a term, a leader address, and nothing else. A server routes
//! such requests to a heartbeat handler directly, so that heartbeats are
//! answered even while the consumer is busy (installing a snapshot, say);
//! a client sends them on the pool's control lane, so that they never wait
//! behind a snapshot or a large batch.

use crate::message::AppendEntriesRequest;

/// Whether `request` is a heartbeat: term ≠ 0, a leader address (in the
/// header, or the legacy `leader` field), and zero `prev_log_entry`,
/// `prev_log_term` and `leader_commit_index`, with no entries.
///
/// ```
/// use raft_grpc_transport::heartbeat::is_heartbeat;
/// use raft_grpc_transport::message::{AppendEntriesRequest, RpcHeader};
///
/// let heartbeat = AppendEntriesRequest {
///     header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
///     term: 4,
///     ..Default::default()
/// };
/// assert!(is_heartbeat(&heartbeat));
/// assert!(!is_heartbeat(&AppendEntriesRequest { leader_commit_index: 9, ..heartbeat }));
/// ```
pub fn is_heartbeat(request: &AppendEntriesRequest) -> bool {
    request.term != 0
        && !(request.header.addr.is_empty() && request.leader.is_empty())
        && request.prev_log_entry == 0
        && request.prev_log_term == 0
        && request.leader_commit_index == 0
        && request.entries.is_empty()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::{Log, RpcHeader};

    fn heartbeat() -> AppendEntriesRequest {
        AppendEntriesRequest {
            header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
            term: 4,
            ..Default::default()
        }
    }

    #[test]
    fn each_condition_matters() {
        assert!(is_heartbeat(&heartbeat()));
        let legacy = AppendEntriesRequest {
            header: RpcHeader::default(),
            leader: Bytes::from_static(b"10.0.0.1:7000"),
            ..heartbeat()
        };
        assert!(is_heartbeat(&legacy));
        let not = [
            AppendEntriesRequest {
                term: 0,
                ..heartbeat()
            },
            AppendEntriesRequest {
                header: RpcHeader::new(3, "leader", ""),
                ..heartbeat()
            },
            AppendEntriesRequest {
                prev_log_entry: 1,
                ..heartbeat()
            },
            AppendEntriesRequest {
                prev_log_term: 1,
                ..heartbeat()
            },
            AppendEntriesRequest {
                leader_commit_index: 1,
                ..heartbeat()
            },
            AppendEntriesRequest {
                entries: vec![Log::default()],
                ..heartbeat()
            },
        ];
        for request in not {
            assert!(!is_heartbeat(&request), "{request:?}");
        }
    }
}
