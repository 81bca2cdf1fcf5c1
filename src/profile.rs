//! Which numbering of the Raft messages' protobuf fields a transport
//! speaks.
//!
//! This module owns [`WireProfile`]: the two field numberings the Go
//! library has published, and what each can carry. The default,
//! [`WireProfile::V0_2`], is `proto/raft/v1/raft.proto` (the Go library from
//! v0.2.0 on); [`WireProfile::V0_1`] is the numbering of its v0.1.0 release
//! (`proto/raft/v0_1/raft.proto` holds the messages that differ). Both use
//! the same service and method names, and every response, `RPCHeader` and
//! `Log` field has the same number in both; only four requests differ:
//!
//! | request | v0.2 (default) | v0.1 |
//! | --- | --- | --- |
//! | AppendEntries, AppendEntriesPipeline | `prev_log_entry` 3, `prev_log_term` 4, `entries` 5, `leader_commit_index` 6, `leader` 7 | 4, 5, 6, 7; no `leader` |
//! | RequestVote | `last_log_index` 3, `last_log_term` 4, `leadership_transfer` 5, `candidate` 6 | 4, 5, 6; `candidate` 3 |
//! | InstallSnapshot | `last_log_index` 3 … `size` 8, `data` 9, `snapshot_version` 10, `leader` 11, `data_crc32c` 12 | 4 … 9, `data` 10; none of the last three |
//! | RequestPreVote | exists | does not exist |
//!
//! and `Log.appended_at_unix_nanos` (6) exists only in v0.2. What a profile
//! cannot carry is not sent: under v0.1 an InstallSnapshot arrives with
//! `snapshot_version` 0 (hashicorp/raft then rebuilds membership from the
//! legacy `peers` field), chunks carry no checksum, and a RequestPreVote
//! fails before it is sent ([`crate::TransportError::PreVoteUnsupported`]).
//!
//! Two nodes must speak the same profile. A request in the other numbering
//! puts values in the wrong fields: this crate's decoder checks wire types,
//! so a request with entries, a vote with a candidate or snapshot data fails
//! to decode and is answered with `INTERNAL`; protobuf-go (the Go library)
//! reads a field of the wrong wire type as an unknown one and drops it, so a
//! Go receiver takes such a request with values misplaced or missing, and
//! answers it.
//!
//! ```
//! use raft_grpc_transport::WireProfile;
//!
//! let profile: WireProfile = "v0.1".parse().unwrap();
//! assert_eq!(profile, WireProfile::V0_1);
//! assert!(!profile.supports_pre_vote());
//! assert_eq!(WireProfile::default().to_string(), "v0.2");
//! assert!("v3".parse::<WireProfile>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

/// A numbering of the Raft messages' protobuf fields: which release of the
/// Go library a transport is wire-compatible with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireProfile {
    /// `proto/raft/v1/raft.proto`: the Go library v0.2.0 and later, with
    /// RequestPreVote, snapshot versions, chunk checksums and the deprecated
    /// `leader`/`candidate` fields (the default).
    #[default]
    V0_2,
    /// The Go library's v0.1.0: the requests' fields numbered as its proto
    /// numbers them, no RequestPreVote, no snapshot version, no checksums.
    V0_1,
}

impl WireProfile {
    /// Every profile, oldest first.
    pub const ALL: [WireProfile; 2] = [WireProfile::V0_1, WireProfile::V0_2];

    /// The profile's name: `"v0.1"` or `"v0.2"`.
    pub fn name(self) -> &'static str {
        match self {
            WireProfile::V0_2 => "v0.2",
            WireProfile::V0_1 => "v0.1",
        }
    }

    /// Whether the profile has the RequestPreVote method.
    pub fn supports_pre_vote(self) -> bool {
        self == WireProfile::V0_2
    }
}

impl fmt::Display for WireProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`WireProfile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wire profile {0:?}: expected v0.1 or v0.2")]
pub struct UnknownWireProfile(pub String);

impl FromStr for WireProfile {
    type Err = UnknownWireProfile;

    /// Accepts `v0.1`, `v0.1.0`, `0.1` (and the same for v0.2).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let version = s.strip_prefix('v').unwrap_or(s);
        match version {
            "0.1" | "0.1.0" => Ok(WireProfile::V0_1),
            "0.2" | "0.2.0" => Ok(WireProfile::V0_2),
            _ => Err(UnknownWireProfile(s.to_owned())),
        }
    }
}
