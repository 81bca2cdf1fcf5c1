// Command raft-grpc-bench-go is the Go side of raft-grpc-bench: the
// go-grpc system (the Go library github.com/dhiaayachi/raft-grpc-transport
// v0.1.0, the only version the Go module proxy serves) and the go-net
// system (hashicorp/raft's NetworkTransport over TCP).
//
// It speaks the benchmark's process protocol (tests/bench/src/protocol.rs):
//
//	raft-grpc-bench-go serve --system go-grpc|go-net --listen 127.0.0.1:0
//
// prints the bound address on the first line of stdout and serves until
// stdin closes;
//
//	raft-grpc-bench-go client --system S --target ADDR --scenario SC
//	    --payload N --ops N --warmup N --window N --snapshot-bytes N --interval-us N
//	    [--marks 1]
//
// runs one measurement and prints one JSON object (latencies_ns, ops,
// elapsed_ns, bytes, peak_rss_kib) on stdout, or exits 1 with the reason on
// stderr. With --marks 1 it prints the line "mark start" right before the
// measured phase and "mark end" right after it, each time waiting for a
// line on stdin: the orchestrator reads both processes' CPU time meanwhile.
//
// Both systems implement hashicorp/raft's raft.Transport, so one client
// and one consumer serve both. The server's consumer handles RPCs one at a
// time, as hashicorp/raft's main loop does: AppendEntries succeed,
// InstallSnapshot data is read to its end and counted. go-net sets a
// heartbeat handler (its fast path); the Go library's SetHeartbeatHandler
// is a no-op, so its heartbeats go through the consumer, as they do in a
// real node.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	raftgrpc "github.com/dhiaayachi/raft-grpc-transport"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
)

// goGrpcWindow is the Go library's pipeline window: its pipeline's
// inflight channel holds 64 futures.
const goGrpcWindow = 64

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: raft-grpc-bench-go serve|client [flags]"))
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "raft-grpc-bench-go: %v\n", err)
	os.Exit(1)
}

func header(addr string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("bench"), Addr: []byte(addr)}
}

// netTransport is hashicorp's NetworkTransport with the window and pool
// the benchmark uses on every side.
func netTransport(bind string, window int) (*raft.NetworkTransport, error) {
	return raft.NewTCPTransportWithConfig(bind, nil, &raft.NetworkTransportConfig{
		MaxPool:         3,
		MaxRPCsInFlight: window,
		Timeout:         10 * time.Second,
		Logger:          hclog.NewNullLogger(),
	})
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	system := fs.String("system", "", "go-grpc or go-net")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var addr string
	switch *system {
	case "go-grpc":
		lis, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		addr = lis.Addr().String()
		server := grpc.NewServer()
		trans, err := raftgrpc.NewGrpcTransport(addr, server)
		if err != nil {
			return err
		}
		go func() { _ = server.Serve(lis) }()
		go consume(trans.Consumer(), header(addr))
	case "go-net":
		trans, err := netTransport(*listen, goGrpcWindow)
		if err != nil {
			return err
		}
		addr = string(trans.LocalAddr())
		h := header(addr)
		trans.SetHeartbeatHandler(func(rpc raft.RPC) {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: h, Term: req.Term, Success: true}, nil)
		})
		go consume(trans.Consumer(), h)
	default:
		return fmt.Errorf("serve: unknown system %q", *system)
	}
	fmt.Println(addr)
	// The orchestrator closes stdin when it no longer needs this server.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// consume is the Raft main loop's share of the work: one RPC at a time.
func consume(rpcs <-chan raft.RPC, h raft.RPCHeader) {
	buf := make([]byte, 1<<20)
	for rpc := range rpcs {
		switch cmd := rpc.Command.(type) {
		case *raft.AppendEntriesRequest:
			last := cmd.PrevLogEntry
			if n := len(cmd.Entries); n > 0 {
				last = cmd.Entries[n-1].Index
			}
			rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: h, Term: cmd.Term, LastLog: last, Success: true}, nil)
		case *raft.InstallSnapshotRequest:
			var received int64
			var err error
			for {
				n, e := rpc.Reader.Read(buf)
				received += int64(n)
				if e == io.EOF {
					break
				}
				if e != nil {
					err = e
					break
				}
			}
			rpc.Respond(&raft.InstallSnapshotResponse{RPCHeader: h, Term: cmd.Term, Success: err == nil && received == cmd.Size}, nil)
		default:
			rpc.Respond(nil, errors.New("not benchmarked"))
		}
	}
}

type clientArgs struct {
	system, target, scenario            string
	payload, ops, warmup, window, marks int
	snapshotBytes                       int64
	interval                            time.Duration
}

// stdin carries the orchestrator's answers to the marks.
var stdin = bufio.NewReader(os.Stdin)

// mark prints a phase mark and waits for the orchestrator's answer (when
// --marks is set); end of input does not block.
func (a clientArgs) mark(line string) {
	if a.marks == 0 {
		return
	}
	fmt.Fprintln(os.Stdout, line)
	_, _ = stdin.ReadString('\n')
}

func (a clientArgs) measuringStarts() { a.mark("mark start") }
func (a clientArgs) measuringEnds()   { a.mark("mark end") }

type report struct {
	LatenciesNs []uint64 `json:"latencies_ns,omitempty"`
	Ops         uint64   `json:"ops"`
	ElapsedNs   uint64   `json:"elapsed_ns"`
	Bytes       uint64   `json:"bytes"`
	PeakRssKib  uint64   `json:"peak_rss_kib"`
}

func client(argv []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var a clientArgs
	var intervalUs int64
	fs.StringVar(&a.system, "system", "", "go-grpc or go-net")
	fs.StringVar(&a.target, "target", "", "server address")
	fs.StringVar(&a.scenario, "scenario", "", "what to measure")
	fs.IntVar(&a.payload, "payload", 0, "entry data bytes")
	fs.IntVar(&a.ops, "ops", 0, "measured operations")
	fs.IntVar(&a.warmup, "warmup", 0, "warm-up operations")
	fs.IntVar(&a.window, "window", goGrpcWindow, "appends in flight")
	fs.Int64Var(&a.snapshotBytes, "snapshot-bytes", 0, "snapshot size")
	fs.Int64Var(&intervalUs, "interval-us", 2000, "heartbeat interval, µs")
	fs.IntVar(&a.marks, "marks", 0, "1: mark the measured phase on stdout, wait for stdin")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	a.interval = time.Duration(intervalUs) * time.Microsecond

	var trans raft.Transport
	switch a.system {
	case "go-grpc":
		if a.window != goGrpcWindow {
			return fmt.Errorf("the Go library's pipeline window is fixed at %d, not %d", goGrpcWindow, a.window)
		}
		// The client's own gRPC server is never served: only its calls are used.
		t, err := raftgrpc.NewGrpcTransport("127.0.0.1:1", grpc.NewServer())
		if err != nil {
			return err
		}
		trans = t
	case "go-net":
		t, err := netTransport("127.0.0.1:0", a.window)
		if err != nil {
			return err
		}
		trans = t
	default:
		return fmt.Errorf("client: unknown system %q", a.system)
	}
	r, err := measure(trans, a)
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.system, a.scenario, err)
	}
	r.PeakRssKib = peakRssKib()
	return json.NewEncoder(os.Stdout).Encode(r)
}

func appendRequest(payload int) *raft.AppendEntriesRequest {
	data := make([]byte, payload)
	for i := range data {
		data[i] = 0x5a
	}
	return &raft.AppendEntriesRequest{
		RPCHeader:         header("127.0.0.1:1"),
		Term:              1,
		PrevLogEntry:      1,
		PrevLogTerm:       1,
		Entries:           []*raft.Log{{Index: 2, Term: 1, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: 1,
	}
}

func heartbeatRequest() *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{RPCHeader: header("127.0.0.1:1"), Term: 1}
}

func appendOnce(trans raft.Transport, target raft.ServerAddress, req *raft.AppendEntriesRequest) error {
	var resp raft.AppendEntriesResponse
	if err := trans.AppendEntries("server", target, req, &resp); err != nil {
		return err
	}
	if !resp.Success {
		return fmt.Errorf("AppendEntries not successful: %+v", resp)
	}
	return nil
}

func measure(trans raft.Transport, a clientArgs) (report, error) {
	target := raft.ServerAddress(a.target)
	switch a.scenario {
	case "unary":
		req := appendRequest(a.payload)
		for i := 0; i < a.warmup; i++ {
			if err := appendOnce(trans, target, req); err != nil {
				return report{}, err
			}
		}
		lat := make([]uint64, 0, a.ops)
		a.measuringStarts()
		start := time.Now()
		for i := 0; i < a.ops; i++ {
			at := time.Now()
			if err := appendOnce(trans, target, req); err != nil {
				return report{}, err
			}
			lat = append(lat, uint64(time.Since(at)))
		}
		elapsed := time.Since(start)
		a.measuringEnds()
		return report{LatenciesNs: lat, Ops: uint64(a.ops), ElapsedNs: uint64(elapsed), Bytes: uint64(a.ops * a.payload)}, nil
	case "pipeline":
		req := appendRequest(a.payload)
		p, err := trans.AppendEntriesPipeline("server", target)
		if err != nil {
			return report{}, err
		}
		if err := pipelined(p, req, a.warmup); err != nil {
			return report{}, err
		}
		a.measuringStarts()
		start := time.Now()
		if err := pipelined(p, req, a.ops); err != nil {
			return report{}, err
		}
		elapsed := time.Since(start)
		a.measuringEnds()
		_ = p.Close()
		return report{Ops: uint64(a.ops), ElapsedNs: uint64(elapsed), Bytes: uint64(a.ops * a.payload)}, nil
	case "snapshot":
		a.measuringStarts()
		elapsed, err := snapshot(trans, target, a.snapshotBytes)
		if err != nil {
			return report{}, err
		}
		a.measuringEnds()
		return report{Ops: 1, ElapsedNs: uint64(elapsed), Bytes: uint64(a.snapshotBytes)}, nil
	case "heartbeat_idle":
		if err := warmHeartbeats(trans, target, a.warmup); err != nil {
			return report{}, err
		}
		a.measuringStarts()
		start := time.Now()
		lat, err := heartbeats(trans, target, a.interval, a.ops, nil)
		if err != nil {
			return report{}, err
		}
		elapsed := time.Since(start)
		a.measuringEnds()
		return report{LatenciesNs: lat, Ops: uint64(len(lat)), ElapsedNs: uint64(elapsed)}, nil
	case "heartbeat_under_snapshot":
		if err := warmHeartbeats(trans, target, a.warmup); err != nil {
			return report{}, err
		}
		a.measuringStarts()
		done := make(chan struct{})
		var elapsed time.Duration
		var snapErr error
		go func() {
			elapsed, snapErr = snapshot(trans, target, a.snapshotBytes)
			close(done)
		}()
		lat, err := heartbeats(trans, target, a.interval, -1, done)
		<-done
		if err == nil {
			err = snapErr
		}
		if err != nil {
			return report{}, err
		}
		a.measuringEnds()
		return report{LatenciesNs: lat, Ops: uint64(len(lat)), ElapsedNs: uint64(elapsed)}, nil
	}
	return report{}, fmt.Errorf("unknown scenario %q", a.scenario)
}

// pipelined sends n appends through p while another goroutine takes the
// completions, in order.
func pipelined(p raft.AppendPipeline, req *raft.AppendEntriesRequest, n int) error {
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			f, ok := <-p.Consumer()
			if !ok {
				errc <- errors.New("pipeline closed early")
				return
			}
			if err := f.Error(); err != nil {
				errc <- err
				return
			}
			if !f.Response().Success {
				errc <- fmt.Errorf("pipelined append not successful: %+v", f.Response())
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			return err
		}
	}
	return <-errc
}

// repeatReader yields n bytes of 0x5a, like the Rust senders'
// io::repeat(0x5a).take(n).
type repeatReader struct {
	remaining int64
	pattern   []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.pattern)
	}
	r.remaining -= int64(n)
	return n, nil
}

func snapshot(trans raft.Transport, target raft.ServerAddress, size int64) (time.Duration, error) {
	pattern := make([]byte, 64<<10)
	for i := range pattern {
		pattern[i] = 0x5a
	}
	meta := &raft.InstallSnapshotRequest{
		RPCHeader:       header("127.0.0.1:1"),
		SnapshotVersion: raft.SnapshotVersionMax,
		Term:            1,
		LastLogIndex:    1,
		LastLogTerm:     1,
		Size:            size,
	}
	var resp raft.InstallSnapshotResponse
	start := time.Now()
	if err := trans.InstallSnapshot("server", target, meta, &resp, &repeatReader{remaining: size, pattern: pattern}); err != nil {
		return 0, err
	}
	if !resp.Success {
		return 0, fmt.Errorf("InstallSnapshot not successful: %+v", resp)
	}
	return time.Since(start), nil
}

func warmHeartbeats(trans raft.Transport, target raft.ServerAddress, n int) error {
	req := heartbeatRequest()
	for i := 0; i < n; i++ {
		if err := appendOnce(trans, target, req); err != nil {
			return err
		}
	}
	return nil
}

// heartbeats sends a heartbeat every interval, each from its own
// goroutine (so a slow one does not delay the next send): count of them,
// or (count < 0) until stop closes. It returns every heartbeat's latency.
func heartbeats(trans raft.Transport, target raft.ServerAddress, interval time.Duration, count int, stop <-chan struct{}) ([]uint64, error) {
	var mu sync.Mutex
	var lat []uint64
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	timer := time.NewTimer(0)
	<-timer.C
loop:
	for k := 0; count < 0 || k < count; k++ {
		timer.Reset(time.Until(start.Add(time.Duration(k) * interval)))
		select {
		case <-timer.C:
		case <-stop:
			timer.Stop()
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			err := appendOnce(trans, target, heartbeatRequest())
			d := uint64(time.Since(sent))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			lat = append(lat, d)
		}()
	}
	wg.Wait()
	return lat, firstErr
}

// peakRssKib is this process's VmHWM from /proc/self/status, KiB.
func peakRssKib() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			v, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}
