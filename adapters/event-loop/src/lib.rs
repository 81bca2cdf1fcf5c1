//! The sans-IO core of `raft-grpc-transport` in a hand-written event loop.
//!
//! This package holds no library code: it exists for its example,
//! `examples/event_loop/`, which shows that the core's endpoints can be
//! embedded in an event loop of your own. See `README.md` beside this
//! file for how to run it and what it shows.
#![forbid(unsafe_code)]
