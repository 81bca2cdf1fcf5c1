//! `raft-grpc-bench`: side-by-side benchmarks (work in progress).

fn main() {}
