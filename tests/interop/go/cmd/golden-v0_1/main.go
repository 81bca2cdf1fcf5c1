// Command golden-v0_1 writes the golden protobuf vectors of the Go
// library's v0.1.0 wire profile (tests/golden/v0_1/*.bin of the Rust
// crate): each file the raw protobuf body of one message, marshalled by the
// protobuf reference runtime for Go (google.golang.org/protobuf) with the
// types generated from v0.1.0's own proto, as that release ships them
// (github.com/dhiaayachi/raft-grpc-transport v0.1.0, gen/go/proto/raft/v1).
//
//	go run ./cmd/golden-v0_1 ../../golden/v0_1
//
// Every value here is mirrored by tests/golden_v0_1.rs: change both, then
// regenerate.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	raftv1 "github.com/dhiaayachi/raft-grpc-transport/gen/go/proto/raft/v1"
	"google.golang.org/protobuf/proto"
)

// headerA, headerNeg and headerBig are the headers of tests/golden.rs:
// non-UTF-8 bytes, a negative and the largest protocol version.
var (
	headerA   = &raftv1.RPCHeader{ProtocolVersion: 3, Id: []byte("n\xc3\xb8de-1\x00"), Addr: []byte("10.0.0.1:7000\xff")}
	headerNeg = &raftv1.RPCHeader{ProtocolVersion: -2, Id: []byte("\x80\x81\x82"), Addr: []byte("[::1]:7001")}
	headerBig = &raftv1.RPCHeader{ProtocolVersion: 1<<63 - 1, Id: []byte("\xfe\xfd-node-3"), Addr: []byte("node-3.example:7002\x7f")}
)

// largeLen is above the Rust encoder's 16 KiB zero-copy threshold.
const largeLen = 20000

// pattern is tests/golden.rs's pattern(n).
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*31 + 7) % 256)
	}
	return b
}

// entries are four log entries with distinct values in every field v0.1.0
// has (it has no appended_at).
func entries() []*raftv1.Log {
	return []*raftv1.Log{
		{Index: 6_000_000_003, Term: 5_000_000_001, Type: 5, Data: []byte("\x00\x01conf\xff\xfe"), Extensions: []byte("\x80ext\x7f")},
		{Index: 6_000_000_004, Term: 5_000_000_001, Type: 9, Data: []byte("\xc3\xa9t\xc3\xa9")},
		{Index: 6_000_000_005, Term: 5_000_000_001, Type: 1},
		{Index: 6_000_000_006, Term: 5_000_000_001, Type: 0, Data: []byte("set x=\x01"), Extensions: []byte("\x00")},
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: golden-v0_1 OUT_DIR")
		os.Exit(64)
	}
	dir := os.Args[1]
	vectors := map[string]proto.Message{
		"append_entries_request_full": &raftv1.AppendEntriesRequest{
			Header: headerA, Term: 5_000_000_001, PrevLogEntry: 6_000_000_002, PrevLogTerm: 4_999_999_999,
			Entries: entries(), LeaderCommitIndex: 6_000_000_000,
		},
		"append_entries_request_header_only": &raftv1.AppendEntriesRequest{Header: headerBig},
		"append_entries_request_large_entry": &raftv1.AppendEntriesRequest{
			Header: headerNeg, Term: 11, PrevLogEntry: 12, PrevLogTerm: 10,
			Entries:           []*raftv1.Log{{Index: 13, Term: 11, Data: pattern(largeLen)}, {Index: 14, Term: 11, Type: 4}},
			LeaderCommitIndex: 9,
		},
		"append_entries_response_full": &raftv1.AppendEntriesResponse{
			Header: headerA, Term: 5_000_000_001, LastLog: 6_000_000_006, Success: true, NoRetryBackoff: true,
		},
		"append_entries_pipeline_request_full": &raftv1.AppendEntriesPipelineRequest{
			Header: headerA, Term: 5_000_000_001, PrevLogEntry: 6_000_000_002, PrevLogTerm: 4_999_999_999,
			Entries: entries(), LeaderCommitIndex: 6_000_000_000,
		},
		"append_entries_pipeline_response_full": &raftv1.AppendEntriesPipelineResponse{
			Header: headerNeg, Term: 7, LastLog: 1 << 40, Success: true, NoRetryBackoff: true,
		},
		"request_vote_request_full": &raftv1.RequestVoteRequest{
			Header: headerA, Term: 5_000_000_001, Candidate: []byte("cand\xe2\x82\xac:7000"),
			LastLogIndex: 6_000_000_002, LastLogTerm: 4_999_999_999, LeadershipTransfer: true,
		},
		"request_vote_request_header_only": &raftv1.RequestVoteRequest{Header: headerBig},
		"request_vote_response_full": &raftv1.RequestVoteResponse{
			Header: headerA, Term: 5_000_000_001, Peers: []byte("\x01peers\xff"), Granted: true,
		},
		"install_snapshot_request_first": &raftv1.InstallSnapshotRequest{
			Header: headerA, Term: 5_000_000_001, LastLogIndex: 6_000_000_002, LastLogTerm: 4_999_999_999,
			Peers: []byte("\x02p\xff"), Configuration: []byte("\x00conf\xfe"), ConfigurationIndex: 6_000_000_001,
			Size: 1 << 40,
		},
		"install_snapshot_request_chunk":       &raftv1.InstallSnapshotRequest{Data: []byte("\x00\x01\x02snap\xff\xfe\xfd\xc3\xa9")},
		"install_snapshot_request_chunk_large": &raftv1.InstallSnapshotRequest{Data: pattern(largeLen)},
		"install_snapshot_response_full": &raftv1.InstallSnapshotResponse{
			Header: headerBig, Term: 5_000_000_001, Success: true,
		},
		"timeout_now_request_header_only":  &raftv1.TimeoutNowRequest{Header: headerA},
		"timeout_now_response_header_only": &raftv1.TimeoutNowResponse{Header: headerNeg},
	}
	for name, message := range vectors {
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(message)
		if err != nil {
			fmt.Fprintln(os.Stderr, name, err)
			os.Exit(1)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".bin"), body, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
