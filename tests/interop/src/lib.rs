//! Shared helpers of the interop tests: finding `go`, building the Go
//! harness in `go/`, and running its programs.
//!
//! The tests themselves are in `tests/`; every test name contains `interop`
//! so that `cargo test --workspace interop` selects them.
