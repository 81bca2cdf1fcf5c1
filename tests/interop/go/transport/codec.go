package transport

// Conversions between hashicorp/raft's types and the generated messages.

import (
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/raftpb"
)

// EncodeHeader converts a raft.RPCHeader.
func EncodeHeader(h raft.RPCHeader) *pb.RPCHeader {
	return &pb.RPCHeader{ProtocolVersion: int64(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

// DecodeHeader converts a header; a missing one is the zero header.
func DecodeHeader(h *pb.RPCHeader) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()), ID: h.GetId(), Addr: h.GetAddr()}
}

// EncodeLog converts a log entry; a zero AppendedAt is left absent.
func EncodeLog(l *raft.Log, legacy bool) *pb.Log {
	out := &pb.Log{Index: l.Index, Term: l.Term, Type: uint32(l.Type), Data: l.Data, Extensions: l.Extensions}
	if !legacy && !l.AppendedAt.IsZero() {
		out.AppendedAtUnixNanos = proto.Int64(l.AppendedAt.UnixNano())
	}
	return out
}

// DecodeLog converts a log entry; an absent appended_at is the zero time.
func DecodeLog(l *pb.Log) *raft.Log {
	out := &raft.Log{Index: l.GetIndex(), Term: l.GetTerm(), Type: raft.LogType(l.GetType()), Data: l.GetData(), Extensions: l.GetExtensions()}
	if l.AppendedAtUnixNanos != nil {
		out.AppendedAt = time.Unix(0, *l.AppendedAtUnixNanos)
	}
	return out
}

// EncodeAppendEntries converts an AppendEntries request.
func EncodeAppendEntries(r *raft.AppendEntriesRequest, legacy bool) *pb.AppendEntriesRequest {
	out := &pb.AppendEntriesRequest{
		Header:            EncodeHeader(r.RPCHeader),
		Term:              r.Term,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
	for _, l := range r.Entries {
		out.Entries = append(out.Entries, EncodeLog(l, legacy))
	}
	if !legacy {
		out.Leader = r.Leader
	}
	return out
}

// DecodeAppendEntries converts an AppendEntries request.
func DecodeAppendEntries(r *pb.AppendEntriesRequest) *raft.AppendEntriesRequest {
	out := &raft.AppendEntriesRequest{
		RPCHeader:         DecodeHeader(r.GetHeader()),
		Term:              r.GetTerm(),
		Leader:            r.GetLeader(),
		PrevLogEntry:      r.GetPrevLogEntry(),
		PrevLogTerm:       r.GetPrevLogTerm(),
		LeaderCommitIndex: r.GetLeaderCommitIndex(),
	}
	for _, l := range r.GetEntries() {
		out.Entries = append(out.Entries, DecodeLog(l))
	}
	return out
}

// UnaryToPipeline converts an AppendEntries request to its pipeline twin.
func UnaryToPipeline(r *pb.AppendEntriesRequest) *pb.AppendEntriesPipelineRequest {
	return &pb.AppendEntriesPipelineRequest{
		Header: r.Header, Term: r.Term, PrevLogEntry: r.PrevLogEntry, PrevLogTerm: r.PrevLogTerm,
		Entries: r.Entries, LeaderCommitIndex: r.LeaderCommitIndex, Leader: r.Leader,
	}
}

// PipelineToUnary converts a pipeline request to its unary twin.
func PipelineToUnary(r *pb.AppendEntriesPipelineRequest) *pb.AppendEntriesRequest {
	return &pb.AppendEntriesRequest{
		Header: r.Header, Term: r.Term, PrevLogEntry: r.PrevLogEntry, PrevLogTerm: r.PrevLogTerm,
		Entries: r.Entries, LeaderCommitIndex: r.LeaderCommitIndex, Leader: r.Leader,
	}
}

// EncodeAppendEntriesResponse converts an AppendEntries response.
func EncodeAppendEntriesResponse(r *raft.AppendEntriesResponse) *pb.AppendEntriesResponse {
	return &pb.AppendEntriesResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLog: r.LastLog, Success: r.Success, NoRetryBackoff: r.NoRetryBackoff}
}

// DecodeAppendEntriesResponse converts an AppendEntries response.
func DecodeAppendEntriesResponse(r *pb.AppendEntriesResponse) *raft.AppendEntriesResponse {
	return &raft.AppendEntriesResponse{RPCHeader: DecodeHeader(r.GetHeader()), Term: r.GetTerm(), LastLog: r.GetLastLog(), Success: r.GetSuccess(), NoRetryBackoff: r.GetNoRetryBackoff()}
}

// UnaryToPipelineResponse converts a response to its pipeline twin.
func UnaryToPipelineResponse(r *pb.AppendEntriesResponse) *pb.AppendEntriesPipelineResponse {
	return &pb.AppendEntriesPipelineResponse{Header: r.Header, Term: r.Term, LastLog: r.LastLog, Success: r.Success, NoRetryBackoff: r.NoRetryBackoff}
}

// PipelineToUnaryResponse converts a pipeline response to its unary twin.
func PipelineToUnaryResponse(r *pb.AppendEntriesPipelineResponse) *pb.AppendEntriesResponse {
	return &pb.AppendEntriesResponse{Header: r.Header, Term: r.Term, LastLog: r.LastLog, Success: r.Success, NoRetryBackoff: r.NoRetryBackoff}
}

// EncodeRequestVote converts a RequestVote request.
func EncodeRequestVote(r *raft.RequestVoteRequest, legacy bool) *pb.RequestVoteRequest {
	out := &pb.RequestVoteRequest{Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm, LeadershipTransfer: r.LeadershipTransfer}
	if !legacy {
		out.Candidate = r.Candidate
	}
	return out
}

// DecodeRequestVote converts a RequestVote request.
func DecodeRequestVote(r *pb.RequestVoteRequest) *raft.RequestVoteRequest {
	return &raft.RequestVoteRequest{RPCHeader: DecodeHeader(r.GetHeader()), Term: r.GetTerm(), Candidate: r.GetCandidate(), LastLogIndex: r.GetLastLogIndex(), LastLogTerm: r.GetLastLogTerm(), LeadershipTransfer: r.GetLeadershipTransfer()}
}

// EncodeRequestVoteResponse converts a RequestVote response.
func EncodeRequestVoteResponse(r *raft.RequestVoteResponse) *pb.RequestVoteResponse {
	return &pb.RequestVoteResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Peers: r.Peers, Granted: r.Granted}
}

// DecodeRequestVoteResponse converts a RequestVote response.
func DecodeRequestVoteResponse(r *pb.RequestVoteResponse) *raft.RequestVoteResponse {
	return &raft.RequestVoteResponse{RPCHeader: DecodeHeader(r.GetHeader()), Term: r.GetTerm(), Peers: r.GetPeers(), Granted: r.GetGranted()}
}

// EncodeRequestPreVote converts a RequestPreVote request.
func EncodeRequestPreVote(r *raft.RequestPreVoteRequest) *pb.RequestPreVoteRequest {
	return &pb.RequestPreVoteRequest{Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm}
}

// DecodeRequestPreVote converts a RequestPreVote request.
func DecodeRequestPreVote(r *pb.RequestPreVoteRequest) *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{RPCHeader: DecodeHeader(r.GetHeader()), Term: r.GetTerm(), LastLogIndex: r.GetLastLogIndex(), LastLogTerm: r.GetLastLogTerm()}
}

// EncodeRequestPreVoteResponse converts a RequestPreVote response.
func EncodeRequestPreVoteResponse(r *raft.RequestPreVoteResponse) *pb.RequestPreVoteResponse {
	return &pb.RequestPreVoteResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Granted: r.Granted}
}

// DecodeRequestPreVoteResponse converts a RequestPreVote response.
func DecodeRequestPreVoteResponse(r *pb.RequestPreVoteResponse) *raft.RequestPreVoteResponse {
	return &raft.RequestPreVoteResponse{RPCHeader: DecodeHeader(r.GetHeader()), Term: r.GetTerm(), Granted: r.GetGranted()}
}

// EncodeInstallSnapshot converts a snapshot's metadata (the first message).
func EncodeInstallSnapshot(r *raft.InstallSnapshotRequest, legacy bool) *pb.InstallSnapshotRequest {
	out := &pb.InstallSnapshotRequest{
		Header: EncodeHeader(r.RPCHeader), Term: r.Term, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm,
		Peers: r.Peers, Configuration: r.Configuration, ConfigurationIndex: r.ConfigurationIndex, Size: r.Size,
	}
	if !legacy {
		out.SnapshotVersion = int64(r.SnapshotVersion)
		out.Leader = r.Leader
	}
	return out
}

// DecodeInstallSnapshot converts a snapshot's metadata message.
func DecodeInstallSnapshot(r *pb.InstallSnapshotRequest) *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader: DecodeHeader(r.GetHeader()), SnapshotVersion: raft.SnapshotVersion(r.GetSnapshotVersion()),
		Term: r.GetTerm(), Leader: r.GetLeader(), LastLogIndex: r.GetLastLogIndex(), LastLogTerm: r.GetLastLogTerm(),
		Peers: r.GetPeers(), Configuration: r.GetConfiguration(), ConfigurationIndex: r.GetConfigurationIndex(), Size: r.GetSize(),
	}
}
