// Command peer is the Go side of the Rust ↔ Go interop tests: a
// hashicorp/raft node's transport that either serves with the reference
// responder or calls a peer with every RPC kind, printing a transcript of
// canonical JSON lines (package canon). The transport is package transport
// (over grpc-go, on this repository's proto/raft/v1) unless --library
// v0.1.0 picks the real Go library (below).
//
//	peer serve --listen 127.0.0.1:0 --id go-server [--library v0.1.0]
//	peer call  --target 127.0.0.1:7000 [--snapshot-size 67108864] [--pipeline 10000] [--oversized] [--library v0.1.0]
//
// serve prints "listening on ADDR", then one line per RPC answered:
// {"rpc":…,"request":…,"response":…}. The reference responder is the one of
// the Rust crate (src/reference.rs): AppendEntries succeeds with the
// request's term and last_log = the last entry's index (prev_log_entry when
// there are none); votes and pre-votes are granted at the request's term;
// InstallSnapshot reads all data and succeeds when exactly size bytes
// arrived; TimeoutNow gets an empty answer. Every response carries the
// header {3, ID, ADDR}. RPCs are taken one at a time from the consumer, as
// hashicorp/raft does; heartbeats come through the heartbeat handler.
//
// call sends a fixed suite (every RPC kind, every field set, values above
// 2^32, a 100 KiB entry, a snapshot, a pipeline) and prints one line per
// call, with "error" instead of "response" when it failed; the exit code is
// 1 when any call failed. With --oversized it sends only one AppendEntries
// of 5 MiB, beyond the 4 MiB limit, and one ordinary call after it.
//
// With --library v0.1.0 both commands use the Go library
// github.com/dhiaayachi/raft-grpc-transport at v0.1.0 instead, which
// numbers the request fields its own way (its proto/raft/v1/raft.proto):
// serve registers raftgrpc.NewGrpcTransport on a grpc.NewServer served on
// the listener (TLS flags as without it), and call uses the library's
// client methods. The library has no RequestPreVote, so the call suite
// leaves that one call out; it has no heartbeat fast path (its
// SetHeartbeatHandler does nothing), so heartbeats reach the consumer and
// the same transcript lines come from there. Its client dials insecure
// only, so call refuses the --tls-* flags. The library carries neither
// Log.AppendedAt, AppendEntries' Leader, nor InstallSnapshot's
// SnapshotVersion and Leader, and its client leaves out RequestVote's
// Candidate (its server decodes one): call's lines show the requests as
// handed to the library, and the peer receives them with those fields
// zero.
//
// Building: this module's raftpb and the library's generated code both
// register the proto.raft.v1 names in protobuf-go's global registry, and
// protobuf-go panics at start-up on that conflict. Each package marshals
// with its own descriptors and nothing here looks types up by name, so the
// conflict is harmless: build with
// -ldflags=-X=google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore
// (as the Rust tests' build_go_program does) or run with
// GOLANG_PROTOBUF_REGISTRATION_CONFLICT=ignore.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	raftgrpc "github.com/dhiaayachi/raft-grpc-transport"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/canon"
	"github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/transport"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// libraryV010 is the one value of --library: the Go library's v0.1.0.
const libraryV010 = "v0.1.0"

// libraryFlag adds --library to fs.
func libraryFlag(fs *flag.FlagSet) *string {
	return fs.String("library", "", `"v0.1.0": use the Go library github.com/dhiaayachi/raft-grpc-transport v0.1.0 instead of package transport`)
}

// checkLibrary exits with a usage error unless library is "" or v0.1.0.
func checkLibrary(library string) {
	if library != "" && library != libraryV010 {
		fmt.Fprintf(os.Stderr, "--library: %q is not %q\n", library, libraryV010)
		os.Exit(2)
	}
}

// out serializes transcript lines from concurrent goroutines.
type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *out) line(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.WriteString(s)
	o.w.WriteByte('\n')
	o.w.Flush()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer serve|call [flags]")
		os.Exit(2)
	}
	o := &out{w: bufio.NewWriter(os.Stdout)}
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
		id := fs.String("id", "go-server", "server ID in response headers")
		cert := fs.String("tls-cert", "", "PEM certificate chain: serve TLS")
		key := fs.String("tls-key", "", "PEM private key of -tls-cert")
		clientCA := fs.String("tls-client-ca", "", "PEM roots: require client certificates (mutual TLS)")
		library := libraryFlag(fs)
		fs.Parse(os.Args[2:])
		checkLibrary(*library)
		opts := transport.Options{}
		if *cert != "" {
			opts.ServerCreds = serverCreds(*cert, *key, *clientCA)
		}
		serve(o, *listen, *id, opts, *library)
	case "call":
		fs := flag.NewFlagSet("call", flag.ExitOnError)
		target := fs.String("target", "", "address of the peer to call")
		snapshot := fs.Int64("snapshot-size", 64<<20, "bytes of snapshot data")
		pipeline := fs.Int("pipeline", 10000, "pipelined appends")
		oversized := fs.Bool("oversized", false, "send a 5 MiB AppendEntries, then one ordinary call")
		ca := fs.String("tls-ca", "", "PEM roots: call over TLS")
		cert := fs.String("tls-cert", "", "PEM client certificate chain (mutual TLS)")
		key := fs.String("tls-key", "", "PEM private key of -tls-cert")
		serverName := fs.String("tls-server-name", "", "name to verify instead of the target's host")
		library := libraryFlag(fs)
		fs.Parse(os.Args[2:])
		checkLibrary(*library)
		if *library != "" && (*ca != "" || *cert != "" || *key != "" || *serverName != "") {
			fmt.Fprintln(os.Stderr, "call: the Go library v0.1.0 dials insecure only; --tls-* cannot be used with --library")
			os.Exit(2)
		}
		if *ca != "" {
			callCreds = clientCreds(*ca, *cert, *key, *serverName)
		}
		if *target == "" {
			fmt.Fprintln(os.Stderr, "call: --target is required")
			os.Exit(2)
		}
		os.Exit(call(o, raft.ServerAddress(*target), *snapshot, *pipeline, *oversized, *library))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// The credentials of `call` (nil: insecure).
var callCreds credentials.TransportCredentials

func readPool(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintln(os.Stderr, "tls: no certificate in", path)
		os.Exit(1)
	}
	return pool
}

func keyPair(cert, key string) tls.Certificate {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
	return pair
}

// serverCreds: TLS with cert/key; with clientCA, client certificates are
// required and verified against it.
func serverCreds(cert, key, clientCA string) credentials.TransportCredentials {
	config := &tls.Config{Certificates: []tls.Certificate{keyPair(cert, key)}}
	if clientCA != "" {
		config.ClientCAs = readPool(clientCA)
		config.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(config)
}

// clientCreds: trusts ca; presents cert/key when given.
func clientCreds(ca, cert, key, serverName string) credentials.TransportCredentials {
	config := &tls.Config{RootCAs: readPool(ca), ServerName: serverName}
	if cert != "" {
		config.Certificates = []tls.Certificate{keyPair(cert, key)}
	}
	return credentials.NewTLS(config)
}

func serve(o *out, listen, id string, opts transport.Options, library string) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	addr := l.Addr().String()
	var t raft.Transport
	if library == "" {
		t = transport.New(l, raft.ServerAddress(addr), opts)
	} else {
		t = serveLibrary(l, addr, opts.ServerCreds)
	}
	header := raft.RPCHeader{ProtocolVersion: 3, ID: []byte(id), Addr: []byte(addr)}
	// The Go library v0.1.0 never calls the handler: there its heartbeats
	// come through the consumer, answered and printed the same way.
	t.SetHeartbeatHandler(func(rpc raft.RPC) { o.line(answer(rpc, header)) })
	o.line("listening on " + addr)
	for rpc := range t.Consumer() {
		o.line(answer(rpc, header))
	}
}

// serveLibrary serves the Go library v0.1.0 on l: its transport registered
// on a gRPC server (secured by creds when not nil) that serves l.
func serveLibrary(l net.Listener, addr string, creds credentials.TransportCredentials) raft.Transport {
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	server := grpc.NewServer(opts...)
	t, err := raftgrpc.NewGrpcTransport(addr, server)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftgrpc.NewGrpcTransport:", err)
		os.Exit(1)
	}
	go func() {
		if err := server.Serve(l); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
	}()
	return t
}

// answer responds to rpc the reference way and returns its transcript line.
func answer(rpc raft.RPC, header raft.RPCHeader) string {
	var response any
	data := ""
	switch r := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		last := r.PrevLogEntry
		if n := len(r.Entries); n > 0 {
			last = r.Entries[n-1].Index
		}
		response = &raft.AppendEntriesResponse{RPCHeader: header, Term: r.Term, LastLog: last, Success: true}
	case *raft.RequestVoteRequest:
		response = &raft.RequestVoteResponse{RPCHeader: header, Term: r.Term, Granted: true}
	case *raft.RequestPreVoteRequest:
		response = &raft.RequestPreVoteResponse{RPCHeader: header, Term: r.Term, Granted: true}
	case *raft.TimeoutNowRequest:
		response = &raft.TimeoutNowResponse{RPCHeader: header}
	case *raft.InstallSnapshotRequest:
		h := crc32.New(castagnoli)
		n, err := io.Copy(h, rpc.Reader)
		data = canon.Data(n, h.Sum32())
		response = &raft.InstallSnapshotResponse{RPCHeader: header, Term: r.Term, Success: err == nil && n == r.Size}
	default:
		rpc.Respond(nil, fmt.Errorf("unexpected command %T", rpc.Command))
		return fmt.Sprintf(`{"unexpected":%q}`, fmt.Sprintf("%T", rpc.Command))
	}
	rpc.Respond(response, nil)
	return canon.Exchange(rpc.Command, data, response, nil)
}

// pattern is the snapshot data: a reader of size deterministic bytes.
type pattern struct{ pos, size int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.pos >= p.size {
		return 0, io.EOF
	}
	n := int64(len(b))
	if left := p.size - p.pos; left < n {
		n = left
	}
	for i := int64(0); i < n; i++ {
		x := uint64(p.pos + i)
		b[i] = byte((x * 0x9E3779B1) >> 13)
	}
	p.pos += n
	return int(n), nil
}

func patternData(size int64) string {
	h := crc32.New(castagnoli)
	io.Copy(h, &pattern{size: size})
	return canon.Data(size, h.Sum32())
}

// client is what call needs of a transport: package transport's and the
// Go library's both have these.
type client interface {
	raft.Transport
	Close() error
}

// newClient is the calling transport: package transport's, or the Go
// library v0.1.0's (whose server is never served).
func newClient(library string) client {
	if library == "" {
		return transport.New(mustListen(), "127.0.0.1:1", transport.Options{Timeout: 30 * time.Second, ClientCreds: callCreds})
	}
	t, err := raftgrpc.NewGrpcTransport("127.0.0.1:1", grpc.NewServer(), raftgrpc.WithTimeout(30*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftgrpc.NewGrpcTransport:", err)
		os.Exit(1)
	}
	return t
}

func call(o *out, target raft.ServerAddress, snapshotSize int64, pipelined int, oversized bool, library string) int {
	t := newClient(library)
	defer t.Close()
	header := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("go-client"), Addr: []byte("127.0.0.1:1")}
	failed := 0
	record := func(command any, data string, response any, err error) {
		if err != nil {
			failed++
		}
		o.line(canon.Exchange(command, data, response, err))
	}
	appendEntries := func(req *raft.AppendEntriesRequest) {
		var resp raft.AppendEntriesResponse
		err := t.AppendEntries("", target, req, &resp)
		record(req, "", &resp, err)
	}
	if oversized {
		appendEntries(&raft.AppendEntriesRequest{RPCHeader: header, Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1, Data: make([]byte, 5<<20)}}})
		appendEntries(&raft.AppendEntriesRequest{RPCHeader: header, Term: 1})
		if failed == 1 {
			return 0
		}
		return 1
	}

	at := time.Unix(1_700_000_000, 123_456_789)
	var entries []*raft.Log
	for i := 0; i < 6; i++ {
		l := &raft.Log{
			Index: uint64(11 + i), Term: 7, Type: raft.LogType(i),
			Data: []byte(fmt.Sprintf("go entry %d", 11+i)), Extensions: []byte{byte(i), 0xff},
		}
		if i%2 == 0 {
			l.AppendedAt = at.Add(time.Duration(i) * time.Millisecond)
		}
		entries = append(entries, l)
	}
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	entries = append(entries, &raft.Log{Index: 17, Term: 7, Type: raft.LogCommand, Data: big})
	appendEntries(&raft.AppendEntriesRequest{
		RPCHeader: header, Term: 1<<40 + 7, Leader: []byte("127.0.0.1:1"),
		PrevLogEntry: 10, PrevLogTerm: 6, Entries: entries, LeaderCommitIndex: 9,
	})
	// A heartbeat: term and leader address only.
	appendEntries(&raft.AppendEntriesRequest{RPCHeader: header, Term: 7})

	vote := &raft.RequestVoteRequest{RPCHeader: header, Term: 1<<63 + 5, Candidate: []byte("127.0.0.1:1"), LastLogIndex: math.MaxUint64, LastLogTerm: 7, LeadershipTransfer: true}
	var voteResp raft.RequestVoteResponse
	record(vote, "", &voteResp, t.RequestVote("", target, vote, &voteResp))

	// The Go library v0.1.0 has no RequestPreVote.
	if library == "" {
		preVote := &raft.RequestPreVoteRequest{RPCHeader: header, Term: 9, LastLogIndex: 17, LastLogTerm: 7}
		var preVoteResp raft.RequestPreVoteResponse
		record(preVote, "", &preVoteResp, t.(raft.WithPreVote).RequestPreVote("", target, preVote, &preVoteResp))
	}

	timeoutNow := &raft.TimeoutNowRequest{RPCHeader: header}
	var timeoutNowResp raft.TimeoutNowResponse
	record(timeoutNow, "", &timeoutNowResp, t.TimeoutNow("", target, timeoutNow, &timeoutNowResp))

	configuration := make([]byte, 100)
	for i := range configuration {
		configuration[i] = byte(200 - i)
	}
	snapshot := &raft.InstallSnapshotRequest{
		RPCHeader: header, SnapshotVersion: 1, Term: 7, Leader: []byte("127.0.0.1:1"),
		LastLogIndex: 1000, LastLogTerm: 7, Peers: []byte("peers"), Configuration: configuration,
		ConfigurationIndex: 900, Size: snapshotSize,
	}
	var snapshotResp raft.InstallSnapshotResponse
	err := t.InstallSnapshot("", target, snapshot, &snapshotResp, &pattern{size: snapshotSize})
	record(snapshot, patternData(snapshotSize), &snapshotResp, err)

	if pipelined > 0 {
		if err := runPipeline(t, target, header, pipelined, record); err != nil {
			fmt.Fprintln(os.Stderr, "pipeline:", err)
			failed++
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func runPipeline(t raft.Transport, target raft.ServerAddress, header raft.RPCHeader, n int, record func(any, string, any, error)) error {
	p, err := t.AppendEntriesPipeline("", target)
	if err != nil {
		return err
	}
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		for k := 1; k <= n; k++ {
			f := <-p.Consumer()
			record(f.Request(), "", f.Response(), f.Error())
			if got := f.Request().Entries[0].Index; got != uint64(k) {
				done <- fmt.Errorf("completion %d is for append %d", k, got)
				return
			}
		}
		done <- nil
	}()
	for k := 1; k <= n; k++ {
		req := &raft.AppendEntriesRequest{
			RPCHeader: header, Term: 7, PrevLogEntry: uint64(k - 1), PrevLogTerm: 7, LeaderCommitIndex: uint64(k - 1),
			Entries: []*raft.Log{{Index: uint64(k), Term: 7, Data: []byte(fmt.Sprintf("pipelined %08d", k))}},
		}
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			return err
		}
	}
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		return errors.New("pipeline completions did not arrive within 60 s")
	}
}

func mustListen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	return l
}
