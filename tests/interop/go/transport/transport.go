// Package transport is a hashicorp/raft Transport over grpc-go that speaks
// proto/raft/v1/raft.proto: the Go peer of the interop tests.
//
// It stands in for the Go library github.com/dhiaayachi/raft-grpc-transport,
// whose wire-compatible releases (v0.2.0 and later) the Go module proxy does
// not serve (only v0.1.0, which numbers the fields differently). It is
// written from the same parts the Go library uses (hashicorp/raft's types,
// grpc-go, code generated from the shared proto) and reproduces the Go
// library's behaviour where the wire depends on it:
//
//   - the server reads an InstallSnapshot stream as metadata first, then
//     data messages; an empty data message ends the snapshot (io.EOF) and
//     data in the first message is ignored;
//   - grpc-go's default 4 MiB receive limit applies on both sides;
//   - one connection per peer, at most 64 pipelined appends in flight.
//
// Unlike the Go library it also carries the fields our proto adds
// (snapshot_version, appended_at, leader, candidate, the running CRC-32C
// of snapshot data), so a hashicorp/raft cluster on it keeps its membership
// through snapshot installs; Options.LegacyFields turns them off to behave
// exactly like the Go library on the wire.
package transport

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/raftpb"
)

// ErrShutdown is returned by calls made after Close.
var ErrShutdown = errors.New("transport shut down")

// PipelineWindow is how many pipelined appends may be in flight.
const PipelineWindow = 64

// snapshotChunk is the size of the data messages of an outgoing snapshot.
const snapshotChunk = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Transport.
type Options struct {
	// Timeout bounds every unary call; snapshots get Timeout scaled by
	// size / 256 KiB, as hashicorp's NetworkTransport does. Default 10 s.
	Timeout time.Duration
	// LegacyFields leaves out the fields the Go library does not have.
	LegacyFields bool
	// Dial, when set, replaces the TCP dialer (used to count connections).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// ServerCreds, when set, secures the server (TLS; the default is
	// plaintext HTTP/2).
	ServerCreds credentials.TransportCredentials
	// ClientCreds, when set, secures the calls (the default is insecure).
	ClientCreds credentials.TransportCredentials
}

// Transport implements raft.Transport, raft.WithPreVote and raft.WithClose.
type Transport struct {
	local    raft.ServerAddress
	opts     Options
	consumer chan raft.RPC
	server   *grpc.Server
	shutdown chan struct{}
	close    sync.Once

	mu        sync.Mutex
	heartbeat func(raft.RPC)
	conns     map[raft.ServerAddress]*grpc.ClientConn
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)

// New serves the Raft service on listener and advertises local as this
// node's address (the relay tests advertise the relay's address).
func New(listener net.Listener, local raft.ServerAddress, opts Options) *Transport {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	t := &Transport{
		local:    local,
		opts:     opts,
		consumer: make(chan raft.RPC),
		server:   newServer(opts),
		shutdown: make(chan struct{}),
		conns:    map[raft.ServerAddress]*grpc.ClientConn{},
	}
	pb.RegisterRaftTransportServiceServer(t.server, service{t: t})
	go func() { _ = t.server.Serve(listener) }()
	return t
}

func newServer(opts Options) *grpc.Server {
	if opts.ServerCreds != nil {
		return grpc.NewServer(grpc.Creds(opts.ServerCreds))
	}
	return grpc.NewServer()
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumer }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.local }

// EncodePeer implements raft.Transport.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// SetHeartbeatHandler implements raft.Transport: heartbeats go to cb
// directly instead of through the consumer.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.mu.Lock()
	t.heartbeat = cb
	t.mu.Unlock()
}

// Close stops the server and drops every client connection. Idempotent.
func (t *Transport) Close() error {
	t.close.Do(func() {
		close(t.shutdown)
		t.server.Stop()
		t.mu.Lock()
		for addr, conn := range t.conns {
			_ = conn.Close()
			delete(t.conns, addr)
		}
		t.mu.Unlock()
	})
	return nil
}

func (t *Transport) client(target raft.ServerAddress) (pb.RaftTransportServiceClient, error) {
	select {
	case <-t.shutdown:
		return nil, ErrShutdown
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if conn, ok := t.conns[target]; ok {
		return pb.NewRaftTransportServiceClient(conn), nil
	}
	// Reconnect within at most 1 s (grpc-go's default backoff grows to
	// 120 s), so a restarted peer is reachable again promptly.
	backoffConfig := backoff.DefaultConfig
	backoffConfig.MaxDelay = time.Second
	creds := t.opts.ClientCreds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig, MinConnectTimeout: 5 * time.Second}),
	}
	if t.opts.Dial != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(t.opts.Dial))
	}
	conn, err := grpc.NewClient("passthrough:///"+string(target), dialOpts...)
	if err != nil {
		return nil, err
	}
	t.conns[target] = conn
	return pb.NewRaftTransportServiceClient(conn), nil
}

func (t *Transport) unaryContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.opts.Timeout)
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.unaryContext()
	defer cancel()
	out, err := c.AppendEntries(ctx, EncodeAppendEntries(args, t.opts.LegacyFields))
	if err != nil {
		return err
	}
	*resp = *DecodeAppendEntriesResponse(out)
	return nil
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.unaryContext()
	defer cancel()
	out, err := c.RequestVote(ctx, EncodeRequestVote(args, t.opts.LegacyFields))
	if err != nil {
		return err
	}
	*resp = *DecodeRequestVoteResponse(out)
	return nil
}

// RequestPreVote implements raft.WithPreVote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.unaryContext()
	defer cancel()
	out, err := c.RequestPreVote(ctx, EncodeRequestPreVote(args))
	if err != nil {
		return err
	}
	*resp = *DecodeRequestPreVoteResponse(out)
	return nil
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.unaryContext()
	defer cancel()
	out, err := c.TimeoutNow(ctx, &pb.TimeoutNowRequest{Header: EncodeHeader(args.RPCHeader)})
	if err != nil {
		return err
	}
	resp.RPCHeader = DecodeHeader(out.GetHeader())
	return nil
}

// InstallSnapshot implements raft.Transport: metadata first, then data in
// 1 MiB messages (never an empty one), then half-close and one answer.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	timeout := t.opts.Timeout
	if scaled := time.Duration(float64(t.opts.Timeout) * float64(args.Size) / float64(256<<10)); scaled > timeout {
		timeout = scaled
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := c.InstallSnapshot(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(EncodeInstallSnapshot(args, t.opts.LegacyFields)); err != nil {
		_, err = stream.CloseAndRecv()
		return err
	}
	buf := make([]byte, snapshotChunk)
	var sent int64
	var crc uint32
	for sent < args.Size {
		want := int64(len(buf))
		if left := args.Size - sent; left < want {
			want = left
		}
		n, readErr := io.ReadFull(data, buf[:want])
		if n > 0 {
			crc = crc32.Update(crc, castagnoli, buf[:n])
			chunk := &pb.InstallSnapshotRequest{Data: buf[:n]}
			if !t.opts.LegacyFields {
				chunk.DataCrc32C = proto.Uint32(crc)
			}
			if err := stream.Send(chunk); err != nil {
				_, err = stream.CloseAndRecv()
				return err
			}
			sent += int64(n)
		}
		if readErr != nil {
			cancel()
			return fmt.Errorf("snapshot source ended after %d of %d bytes: %w", sent, args.Size, readErr)
		}
	}
	out, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	resp.RPCHeader = DecodeHeader(out.GetHeader())
	resp.Term = out.GetTerm()
	resp.Success = out.GetSuccess()
	return nil
}

// dispatch hands an RPC to raft (or the heartbeat handler) and waits for
// its answer, the caller going away, or shutdown.
func (t *Transport) dispatch(ctx context.Context, command any, reader io.Reader, heartbeat bool) (any, error) {
	answer := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: command, Reader: reader, RespChan: answer}
	handled := false
	if heartbeat {
		t.mu.Lock()
		fn := t.heartbeat
		t.mu.Unlock()
		if fn != nil {
			fn(rpc)
			handled = true
		}
	}
	if !handled {
		select {
		case t.consumer <- rpc:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.shutdown:
			return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
		}
	}
	select {
	case r := <-answer:
		if r.Error != nil {
			return nil, status.Error(codes.Unknown, r.Error.Error())
		}
		return r.Response, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.shutdown:
		return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
	}
}

func isHeartbeat(r *raft.AppendEntriesRequest) bool {
	return r.Term != 0 && len(r.Addr) != 0 && r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}

// service is the server side: it turns gRPC calls into raft.RPCs.
type service struct {
	pb.UnimplementedRaftTransportServiceServer
	t *Transport
}

func (s service) AppendEntries(ctx context.Context, in *pb.AppendEntriesRequest) (*pb.AppendEntriesResponse, error) {
	args := DecodeAppendEntries(in)
	out, err := s.t.dispatch(ctx, args, nil, isHeartbeat(args))
	if err != nil {
		return nil, err
	}
	return EncodeAppendEntriesResponse(out.(*raft.AppendEntriesResponse)), nil
}

// AppendEntriesPipeline hands the stream's requests to raft one at a time
// and answers them in order.
func (s service) AppendEntriesPipeline(stream pb.RaftTransportService_AppendEntriesPipelineServer) error {
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		out, err := s.t.dispatch(stream.Context(), DecodeAppendEntries(PipelineToUnary(in)), nil, false)
		if err != nil {
			return err
		}
		if err := stream.Send(UnaryToPipelineResponse(EncodeAppendEntriesResponse(out.(*raft.AppendEntriesResponse)))); err != nil {
			return err
		}
	}
}

func (s service) RequestVote(ctx context.Context, in *pb.RequestVoteRequest) (*pb.RequestVoteResponse, error) {
	out, err := s.t.dispatch(ctx, DecodeRequestVote(in), nil, false)
	if err != nil {
		return nil, err
	}
	return EncodeRequestVoteResponse(out.(*raft.RequestVoteResponse)), nil
}

func (s service) RequestPreVote(ctx context.Context, in *pb.RequestPreVoteRequest) (*pb.RequestPreVoteResponse, error) {
	out, err := s.t.dispatch(ctx, DecodeRequestPreVote(in), nil, false)
	if err != nil {
		return nil, err
	}
	return EncodeRequestPreVoteResponse(out.(*raft.RequestPreVoteResponse)), nil
}

func (s service) TimeoutNow(ctx context.Context, in *pb.TimeoutNowRequest) (*pb.TimeoutNowResponse, error) {
	out, err := s.t.dispatch(ctx, &raft.TimeoutNowRequest{RPCHeader: DecodeHeader(in.GetHeader())}, nil, false)
	if err != nil {
		return nil, err
	}
	return &pb.TimeoutNowResponse{Header: EncodeHeader(out.(*raft.TimeoutNowResponse).RPCHeader)}, nil
}

// InstallSnapshot reads the metadata message, then hands raft a reader of
// the data messages. Like the Go library, data in the first message is
// ignored and an empty data message ends the data. A running CRC-32C,
// when the sender attaches one, is checked on every message.
func (s service) InstallSnapshot(stream pb.RaftTransportService_InstallSnapshotServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	args := DecodeInstallSnapshot(first)
	reader := &snapshotReader{stream: stream, left: args.Size}
	out, err := s.t.dispatch(stream.Context(), args, reader, false)
	if err != nil {
		return err
	}
	r := out.(*raft.InstallSnapshotResponse)
	return stream.SendAndClose(&pb.InstallSnapshotResponse{Header: EncodeHeader(r.RPCHeader), Term: r.Term, Success: r.Success})
}

// snapshotReader is the io.Reader over a snapshot stream's data messages.
type snapshotReader struct {
	stream pb.RaftTransportService_InstallSnapshotServer
	buf    []byte
	left   int64
	crc    uint32
	err    error
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		msg, err := r.stream.Recv()
		switch {
		case err == io.EOF:
			r.err = io.EOF
		case err != nil:
			r.err = err
		case len(msg.GetData()) == 0:
			r.err = io.EOF
		case int64(len(msg.GetData())) > r.left:
			r.err = fmt.Errorf("snapshot data exceeds the declared size by %d bytes", int64(len(msg.GetData()))-r.left)
		default:
			r.crc = crc32.Update(r.crc, castagnoli, msg.GetData())
			if msg.DataCrc32C != nil && *msg.DataCrc32C != r.crc {
				r.err = fmt.Errorf("snapshot data checksum mismatch: got %08x, computed %08x", *msg.DataCrc32C, r.crc)
				continue
			}
			r.left -= int64(len(msg.GetData()))
			r.buf = msg.GetData()
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
