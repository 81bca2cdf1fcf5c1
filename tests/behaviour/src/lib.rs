//! The transport's behaviour suite: one set of loopback tests, run
//! against every runtime backend.
//!
//! The tests live in `suite.rs`, written once against the driver's generic
//! `GrpcTransport<Rt>`. Each file under `tests/` names a backend — it
//! defines `Rt` (the runtime) and `block_on` (how the test thread waits)
//! and includes the suite — so smol, tokio (current-thread and
//! multi-thread) and the blocking runtime all run the same tests:
//!
//! ```sh
//! cargo test -p raft-grpc-behaviour            # every backend
//! cargo test -p raft-grpc-behaviour --test tokio_multi_thread
//! ```
//!
//! What a backend must do beyond the suite (its own API, running under
//! other executors) is tested in the backend's crate.

/// The README's Rust examples (smol, tokio, blocking, migration), compiled
/// and run as doctests here, where every backend is at hand.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
