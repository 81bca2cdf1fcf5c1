// Package canon prints hashicorp/raft's RPC types as canonical JSON, the
// form in which the interop tests compare what one side sent with what the
// other side received.
//
// The same form is produced on the Rust side by tests/interop/src/canon.rs;
// the two must agree byte for byte. Objects list the protobuf fields in
// field-number order under their protobuf names; integers are decimal;
// bytes fields are lowercase hex when at most 64 bytes long, and
// {"len":N,"crc32c":C} (CRC-32C, decimal) when longer; an absent optional
// field is null. Log.appended_at_unix_nanos is null for the zero time.
// A snapshot's data appears as "data":{"len":N,"crc32c":C} after the
// metadata fields.
package canon

import (
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/hashicorp/raft"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Object builds one JSON object, fields in the order they are added.
type Object struct{ b strings.Builder }

func (o *Object) key(name string) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	fmt.Fprintf(&o.b, "%q:", name)
}

// Raw adds a field whose value is already JSON.
func (o *Object) Raw(name, value string) *Object { o.key(name); o.b.WriteString(value); return o }

// Uint adds an unsigned integer field.
func (o *Object) Uint(name string, v uint64) *Object { return o.Raw(name, fmt.Sprint(v)) }

// Int adds a signed integer field.
func (o *Object) Int(name string, v int64) *Object { return o.Raw(name, fmt.Sprint(v)) }

// Bool adds a boolean field.
func (o *Object) Bool(name string, v bool) *Object { return o.Raw(name, fmt.Sprint(v)) }

// Str adds a string field.
func (o *Object) Str(name, v string) *Object { return o.Raw(name, fmt.Sprintf("%q", v)) }

// Bytes adds a bytes field (hex, or length and checksum when long).
func (o *Object) Bytes(name string, v []byte) *Object { return o.Raw(name, Bytes(v)) }

// String closes the object.
func (o *Object) String() string {
	if o.b.Len() == 0 {
		return "{}"
	}
	return o.b.String() + "}"
}

// Bytes is the canonical form of a bytes field.
func Bytes(v []byte) string {
	if len(v) <= 64 {
		return `"` + hex.EncodeToString(v) + `"`
	}
	return Data(int64(len(v)), crc32.Checksum(v, castagnoli))
}

// Data is the canonical form of a snapshot's data.
func Data(length int64, crc uint32) string {
	return fmt.Sprintf(`{"len":%d,"crc32c":%d}`, length, crc)
}

// Header is the canonical form of an RPC header.
func Header(h raft.RPCHeader) string {
	return new(Object).Int("protocol_version", int64(h.ProtocolVersion)).Bytes("id", h.ID).Bytes("addr", h.Addr).String()
}

// Log is the canonical form of a log entry.
func Log(l *raft.Log) string {
	o := new(Object).Uint("index", l.Index).Uint("term", l.Term).Uint("type", uint64(l.Type)).
		Bytes("data", l.Data).Bytes("extensions", l.Extensions)
	if l.AppendedAt.IsZero() {
		o.Raw("appended_at_unix_nanos", "null")
	} else {
		o.Int("appended_at_unix_nanos", l.AppendedAt.UnixNano())
	}
	return o.String()
}

// Request is the canonical form of a request; data is the snapshot data's
// canonical form for InstallSnapshot and ignored otherwise.
func Request(command any, data string) string {
	switch r := command.(type) {
	case *raft.AppendEntriesRequest:
		entries := make([]string, len(r.Entries))
		for i, l := range r.Entries {
			entries[i] = Log(l)
		}
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Uint("prev_log_entry", r.PrevLogEntry).Uint("prev_log_term", r.PrevLogTerm).
			Raw("entries", "["+strings.Join(entries, ",")+"]").
			Uint("leader_commit_index", r.LeaderCommitIndex).Bytes("leader", r.Leader).String()
	case *raft.RequestVoteRequest:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Uint("last_log_index", r.LastLogIndex).Uint("last_log_term", r.LastLogTerm).
			Bool("leadership_transfer", r.LeadershipTransfer).Bytes("candidate", r.Candidate).String()
	case *raft.RequestPreVoteRequest:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Uint("last_log_index", r.LastLogIndex).Uint("last_log_term", r.LastLogTerm).String()
	case *raft.TimeoutNowRequest:
		return new(Object).Raw("header", Header(r.RPCHeader)).String()
	case *raft.InstallSnapshotRequest:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Uint("last_log_index", r.LastLogIndex).Uint("last_log_term", r.LastLogTerm).
			Bytes("peers", r.Peers).Bytes("configuration", r.Configuration).
			Uint("configuration_index", r.ConfigurationIndex).Int("size", r.Size).
			Int("snapshot_version", int64(r.SnapshotVersion)).Bytes("leader", r.Leader).
			Raw("data", data).String()
	}
	panic(fmt.Sprintf("canon: not a request: %T", command))
}

// Response is the canonical form of a response.
func Response(response any) string {
	switch r := response.(type) {
	case *raft.AppendEntriesResponse:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Uint("last_log", r.LastLog).Bool("success", r.Success).Bool("no_retry_backoff", r.NoRetryBackoff).String()
	case *raft.RequestVoteResponse:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).
			Bytes("peers", r.Peers).Bool("granted", r.Granted).String()
	case *raft.RequestPreVoteResponse:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).Bool("granted", r.Granted).String()
	case *raft.TimeoutNowResponse:
		return new(Object).Raw("header", Header(r.RPCHeader)).String()
	case *raft.InstallSnapshotResponse:
		return new(Object).Raw("header", Header(r.RPCHeader)).Uint("term", r.Term).Bool("success", r.Success).String()
	}
	panic(fmt.Sprintf("canon: not a response: %T", response))
}

// Kind names a request's RPC.
func Kind(command any) string {
	switch command.(type) {
	case *raft.AppendEntriesRequest:
		return "append_entries"
	case *raft.RequestVoteRequest:
		return "request_vote"
	case *raft.RequestPreVoteRequest:
		return "request_pre_vote"
	case *raft.TimeoutNowRequest:
		return "timeout_now"
	case *raft.InstallSnapshotRequest:
		return "install_snapshot"
	}
	return fmt.Sprintf("%T", command)
}

// Exchange is one line of a transcript: the RPC, its request and either
// its response or its error.
func Exchange(command any, data string, response any, err error) string {
	o := new(Object).Str("rpc", Kind(command)).Raw("request", Request(command, data))
	if err != nil {
		return o.Str("error", err.Error()).String()
	}
	return o.Raw("response", Response(response)).String()
}
