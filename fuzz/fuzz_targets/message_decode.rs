#![no_main]
//! Fuzz target: see `raft_grpc_transport_fuzz::message_decode`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| raft_grpc_transport_fuzz::message_decode(data));
