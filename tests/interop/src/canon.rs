//! The canonical JSON form of Raft requests and responses, byte for byte
//! the one the Go harness prints (`go/canon/canon.go`), so a test compares
//! what one side sent with what the other received as text.
//!
//! Objects list the protobuf fields in field-number order under their
//! protobuf names; integers are decimal; bytes fields are lowercase hex
//! when at most 64 bytes long and `{"len":N,"crc32c":C}` when longer;
//! `appended_at_unix_nanos` is `null` when absent. A snapshot's data is
//! `"data":{"len":N,"crc32c":C}` after the metadata fields. A transcript
//! line is `{"rpc":KIND,"request":…,"response":…}`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use raft_grpc_transport::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Log, RaftRequest, RaftResponse, RpcHeader,
};

/// One JSON object under construction, fields in the order added.
#[derive(Default)]
pub struct Object(String);

impl Object {
    /// Adds a field whose value is already JSON.
    pub fn raw(mut self, name: &str, value: &str) -> Object {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        let _ = write!(self.0, "\"{name}\":{value}");
        self
    }

    /// Adds an integer field.
    pub fn int(self, name: &str, value: impl std::fmt::Display) -> Object {
        self.raw(name, &value.to_string())
    }

    /// Adds a bytes field.
    pub fn bytes(self, name: &str, value: &[u8]) -> Object {
        self.raw(name, &bytes(value))
    }

    /// Closes the object.
    pub fn end(self) -> String {
        if self.0.is_empty() {
            "{}".to_owned()
        } else {
            self.0 + "}"
        }
    }
}

/// The canonical form of a bytes field.
pub fn bytes(value: &[u8]) -> String {
    if value.len() <= 64 {
        let mut out = String::with_capacity(2 + 2 * value.len());
        out.push('"');
        for b in value {
            let _ = write!(out, "{b:02x}");
        }
        out.push('"');
        out
    } else {
        data(value.len() as u64, crc32c::crc32c(value))
    }
}

/// The canonical form of snapshot data of `len` bytes with CRC-32C `crc`.
pub fn data(len: u64, crc: u32) -> String {
    format!("{{\"len\":{len},\"crc32c\":{crc}}}")
}

/// The canonical form of a header.
pub fn header(h: &RpcHeader) -> String {
    Object::default()
        .int("protocol_version", h.protocol_version)
        .bytes("id", &h.id)
        .bytes("addr", &h.addr)
        .end()
}

fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The canonical form of a log entry.
pub fn log(l: &Log) -> String {
    let o = Object::default()
        .int("index", l.index)
        .int("term", l.term)
        .int("type", u32::from(l.log_type))
        .bytes("data", &l.data)
        .bytes("extensions", &l.extensions);
    match l.appended_at {
        Some(t) => o.int("appended_at_unix_nanos", unix_nanos(t)),
        None => o.raw("appended_at_unix_nanos", "null"),
    }
    .end()
}

/// The canonical form of an AppendEntries request.
pub fn append_entries(r: &AppendEntriesRequest) -> String {
    let entries: Vec<String> = r.entries.iter().map(log).collect();
    Object::default()
        .raw("header", &header(&r.header))
        .int("term", r.term)
        .int("prev_log_entry", r.prev_log_entry)
        .int("prev_log_term", r.prev_log_term)
        .raw("entries", &format!("[{}]", entries.join(",")))
        .int("leader_commit_index", r.leader_commit_index)
        .bytes("leader", &r.leader)
        .end()
}

/// The canonical form of an InstallSnapshot request; `data` is the
/// canonical form of its data ([`data`]).
pub fn install_snapshot(r: &InstallSnapshotRequest, data: &str) -> String {
    Object::default()
        .raw("header", &header(&r.header))
        .int("term", r.term)
        .int("last_log_index", r.last_log_index)
        .int("last_log_term", r.last_log_term)
        .bytes("peers", &r.peers)
        .bytes("configuration", &r.configuration)
        .int("configuration_index", r.configuration_index)
        .int("size", r.size)
        .int("snapshot_version", r.snapshot_version)
        .bytes("leader", &r.leader)
        .raw("data", data)
        .end()
}

/// The RPC's name in a transcript line.
pub fn kind(r: &RaftRequest) -> &'static str {
    match r {
        RaftRequest::AppendEntries(_) => "append_entries",
        RaftRequest::RequestVote(_) => "request_vote",
        RaftRequest::RequestPreVote(_) => "request_pre_vote",
        RaftRequest::TimeoutNow(_) => "timeout_now",
        RaftRequest::InstallSnapshot(_) => "install_snapshot",
    }
}

/// The canonical form of a request; `data` is used for InstallSnapshot.
pub fn request(r: &RaftRequest, data: &str) -> String {
    match r {
        RaftRequest::AppendEntries(r) => append_entries(r),
        RaftRequest::RequestVote(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .int("last_log_index", r.last_log_index)
            .int("last_log_term", r.last_log_term)
            .int("leadership_transfer", r.leadership_transfer)
            .bytes("candidate", &r.candidate)
            .end(),
        RaftRequest::RequestPreVote(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .int("last_log_index", r.last_log_index)
            .int("last_log_term", r.last_log_term)
            .end(),
        RaftRequest::TimeoutNow(r) => Object::default().raw("header", &header(&r.header)).end(),
        RaftRequest::InstallSnapshot(r) => install_snapshot(r, data),
    }
}

/// The canonical form of a response.
pub fn response(r: &RaftResponse) -> String {
    match r {
        RaftResponse::AppendEntries(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .int("last_log", r.last_log)
            .int("success", r.success)
            .int("no_retry_backoff", r.no_retry_backoff)
            .end(),
        RaftResponse::RequestVote(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .bytes("peers", &r.peers)
            .int("granted", r.granted)
            .end(),
        RaftResponse::RequestPreVote(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .int("granted", r.granted)
            .end(),
        RaftResponse::TimeoutNow(r) => Object::default().raw("header", &header(&r.header)).end(),
        RaftResponse::InstallSnapshot(r) => Object::default()
            .raw("header", &header(&r.header))
            .int("term", r.term)
            .int("success", r.success)
            .end(),
    }
}

/// One transcript line: the RPC, its request and its response.
pub fn exchange(request_: &RaftRequest, data: &str, response_: &RaftResponse) -> String {
    Object::default()
        .raw("rpc", &format!("\"{}\"", kind(request_)))
        .raw("request", &request(request_, data))
        .raw("response", &response(response_))
        .end()
}
