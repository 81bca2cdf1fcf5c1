#![no_main]
//! Fuzz target: see `raft_grpc_transport_fuzz::pipeline_window`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| raft_grpc_transport_fuzz::pipeline_window(data));
