#![no_main]
//! Fuzz target: see `raft_grpc_transport_fuzz::response_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| raft_grpc_transport_fuzz::response_head(data));
