// Command cluster runs a real hashicorp/raft cluster in one process and
// checks it end to end. It owns the cluster scenario of the relay interop
// test (tests/cluster_interop.rs).
//
// Every node's transport is one of (-library):
//
//   - by default the interop transport (package transport: grpc-go
//     speaking proto/raft/v1/raft.proto, our stand-in for the Go library's
//     wire-compatible releases, which the module proxy does not serve);
//   - with -library v0.1.0 the Go library github.com/dhiaayachi/raft-grpc-transport
//     itself at v0.1.0, its real code from the module proxy (the module
//     must be linked at exactly v0.1.0, not replaced: checked at start-up
//     and printed in the config line). It numbers the fields its own way, so
//     the relay must run with --wire-profile v0.1. Each node registers
//     raftgrpc.NewGrpcTransport(advertised address, a grpc.Server of its
//     own, WithTimeout(5 s)) and serves that server on its listener; the
//     server stops when raft closes the transport.
//
// Node i listens on its own port (-listen) but advertises another address
// (-advertise), normally a route of the Rust relay
// (adapters/tower/examples/relay.rs) that forwards to that port: the
// configuration only ever names advertised addresses, so every RPC between
// nodes crosses the relay. Without -advertise the nodes talk directly (a
// baseline). That no RPC bypasses the relay is checked:
//
//   - on the stand-in, by the transports' dialer, which refuses every
//     address that is not advertised;
//   - on v0.1.0, whose client dials grpc.NewClient(target) itself (there is
//     no dialer to hook), by two checks instead: every target address raft
//     hands a transport (the counting wrapper sees them all, and the
//     library dials exactly the target it is given) must be advertised; and
//     every connection a node's listener accepts must come from a socket of
//     another process — the relay — never from one of this process's own
//     sockets, which is what a node dialing a listen address directly would
//     produce. The origin is looked up in /proc/net/tcp{,6} and
//     /proc/self/fd, so this mode needs Linux.
//
// -snapshot-padding N appends N bytes to every FSM snapshot, derived from
// the state and their position and verified on restore, so that snapshots
// span many transport chunks (the v0.1 test pads just past 1 MiB: 33 of
// v0.1.0's 32 KiB chunks). It is 0 by default.
//
// Scenario (one JSON line per step on stdout; exit 0 only if all pass, 1 on
// a failed step, 2 on the overall -timeout):
//
//  1. elect:      n1..n3 bootstrap as voters; one leader, all agree;
//  2. apply:      -commands commands applied through the leader; every FSM
//     ends identical once all applied the last index;
//  3. compact:    n4 is added as a voter while it is still down, more
//     commands are applied, the leader snapshots and compacts its log past
//     the configuration entry that added n4;
//  4. join:       n4 starts with empty stores and catches up: it must
//     receive InstallSnapshot (counted at its transport), restore its FSM
//     from it (the restore verifies every byte, -snapshot-padding ones
//     included), match every other FSM, and hold all 4 servers in its
//     configuration while no configuration entry is in its log — so its
//     membership came from the snapshot. On the stand-in the servers must
//     have their real IDs: a hashicorp follower only reads the snapshot's
//     configuration when snapshot_version crosses the wire (otherwise it
//     rebuilds servers from the legacy peers field, IDs = addresses). v0.1.0
//     carries no snapshot_version, so there the servers must be exactly
//     that legacy outcome: every ID equal to its advertised address. n4 then
//     does not find its own ID in its configuration: it never campaigns and
//     rejects every vote request (hashicorp refuses candidates whose ID it
//     does not know), which the steps below allow for;
//  5. transfer:   leadership moves to another node, which must have
//     received TimeoutNow: LeadershipTransfer() on the stand-in; on v0.1.0
//     LeadershipTransferToServer to the first of n1..n3 that is not the
//     leader, which must become it;
//  6. restart:    a follower (the first of n1..n3 that is not the leader) is
//     shut down (raft and transport closed, its port refuses connections),
//     more commands are applied, it stays down for three heartbeat
//     timeouts, then restarts (new raft and FSM over the same stores and
//     addresses) and catches up to an identical FSM;
//  7. pre_vote:   on the stand-in, RequestPreVote was received by some node
//     (hashicorp only uses pre-vote when the transport implements
//     raft.WithPreVote). v0.1.0 has no RequestPreVote, so neither its
//     transport nor the counting wrapper around it implements
//     raft.WithPreVote: no transport handed to raft may implement it, no
//     RequestPreVote may have been sent or received, and RequestVote must
//     have been granted (the elections ran on votes alone);
//  8. rpcs:       RPC counts per node and kind, and no RPC bypassed the
//     relay (see above: dials per address on the stand-in; targets and
//     accepted connections' origins on v0.1.0). On v0.1.0 heartbeats must
//     all have reached raft through the consumer: the library's
//     SetHeartbeatHandler does nothing, so there is no fast path.
//
// Building: with the library linked, this module's raftpb and the
// library's generated code register the same proto.raft.v1 names in
// protobuf-go's global registry, and protobuf-go panics at start-up on that
// conflict (whatever -library says). Each package marshals with its own
// descriptors and nothing here looks a type up by name, so it is harmless:
// build with
// -ldflags=-X=google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore
// (as the Rust tests' build_go_program does) or run with
// GOLANG_PROTOBUF_REGISTRATION_CONFLICT=ignore.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	raftgrpc "github.com/dhiaayachi/raft-grpc-transport"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/transport"
)

// The Go library: -library's one value, its module path, and the RPC
// timeout its transports get (the stand-in's, and the relay's in the test).
const (
	libraryV010    = "v0.1.0"
	libraryModule  = "github.com/dhiaayachi/raft-grpc-transport"
	libraryTimeout = 5 * time.Second
)

func main() {
	listen := flag.String("listen", "", "comma-separated listen addresses of n1..n4 (required)")
	advertise := flag.String("advertise", "", "comma-separated advertised addresses of n1..n4 (relay routes); default: the listen addresses")
	commands := flag.Int("commands", 10000, "commands applied in the apply step")
	timeout := flag.Duration("timeout", 100*time.Second, "overall deadline")
	heartbeat := flag.Duration("heartbeat", 500*time.Millisecond, "raft HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout")
	legacy := flag.Bool("legacy-fields", false, "leave out the fields the Go library lacks (snapshot_version...): the join step's membership check must then fail")
	library := flag.String("library", "", `"v0.1.0": every node on the Go library `+libraryModule+" v0.1.0 instead of package transport")
	padding := flag.Int("snapshot-padding", 0, "bytes appended to every FSM snapshot (and verified on restore), to make snapshots span many chunks")
	logLevel := flag.String("log-level", "warn", "hclog level of the raft logs on stderr")
	flag.Parse()

	c, err := newCluster(*listen, *advertise, *library, *legacy, *padding, *heartbeat, hclog.LevelFromString(*logLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		flag.Usage()
		os.Exit(64)
	}
	time.AfterFunc(*timeout, func() {
		c.emit(map[string]any{"step": c.currentStep(), "ok": false, "error": fmt.Sprintf("overall timeout of %s reached during this step", *timeout)})
		c.emitCounts()
		os.Exit(2)
	})
	if err := c.run(*commands); err != nil {
		c.emitCounts()
		os.Exit(1)
	}
}

// cluster is the four nodes, the scenario's bookkeeping and its output.
type cluster struct {
	nodes     []*node
	library   string
	legacy    bool
	padding   int
	heartbeat time.Duration
	level     hclog.Level
	relayed   bool
	snapDir   string
	started   time.Time

	// next numbers the commands, so every command of the run is distinct.
	next int

	mu         sync.Mutex
	step       string
	allowed    map[string]bool
	dials      map[string]int
	violations []string
	// On v0.1.0: the target addresses raft handed the transports, and
	// the origins of the connections each node's listener accepted.
	targets map[string]int
	accepts map[raft.ServerID]*acceptCounts
	strays  []string
	out     *json.Encoder
}

// acceptCounts is what a node's listener accepted, by origin.
type acceptCounts struct {
	Accepted     int `json:"accepted"`
	OtherProcess int `json:"from_other_process"`
	ThisProcess  int `json:"from_this_process"`
}

// node is one server: the stores survive restarts, the rest is per run.
type node struct {
	id        raft.ServerID
	listen    string
	advertise raft.ServerAddress
	logs      *raft.InmemStore
	snaps     raft.SnapshotStore
	counts    *rpcCounts

	fsm   *kvFSM
	trans raft.Transport
	raft  *raft.Raft
}

func newCluster(listen, advertise, library string, legacy bool, padding int, heartbeat time.Duration, level hclog.Level) (*cluster, error) {
	if library != "" && library != libraryV010 {
		return nil, fmt.Errorf("-library: %q is not %q", library, libraryV010)
	}
	if library != "" && legacy {
		return nil, errors.New("-legacy-fields is a switch of package transport; v0.1.0 lacks those fields anyway")
	}
	if padding < 0 {
		return nil, fmt.Errorf("-snapshot-padding: %d is negative", padding)
	}
	listens := splitList(listen)
	if len(listens) != 4 {
		return nil, fmt.Errorf("-listen needs 4 addresses, got %d", len(listens))
	}
	advertises := listens
	if advertise != "" {
		advertises = splitList(advertise)
		if len(advertises) != 4 {
			return nil, fmt.Errorf("-advertise needs 4 addresses, got %d", len(advertises))
		}
	}
	c := &cluster{
		library:   library,
		legacy:    legacy,
		padding:   padding,
		heartbeat: heartbeat,
		level:     level,
		relayed:   advertise != "",
		started:   time.Now(),
		allowed:   map[string]bool{},
		dials:     map[string]int{},
		targets:   map[string]int{},
		accepts:   map[raft.ServerID]*acceptCounts{},
		out:       json.NewEncoder(os.Stdout),
	}
	snapDir, err := os.MkdirTemp("", "raft-cluster-interop-")
	if err != nil {
		return nil, err
	}
	c.snapDir = snapDir
	for i := range listens {
		if c.relayed && listens[i] == advertises[i] {
			return nil, fmt.Errorf("node %d listens on its advertised address %s: nothing would cross the relay", i+1, listens[i])
		}
		c.allowed[advertises[i]] = true
		id := raft.ServerID(fmt.Sprintf("n%d", i+1))
		snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir+"/"+string(id), 2, c.logger(string(id)+"-snapshots"))
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{
			id: id, listen: listens[i], advertise: raft.ServerAddress(advertises[i]),
			logs: raft.NewInmemStore(), snaps: snaps, counts: newRPCCounts(),
		})
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (c *cluster) logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: c.level, Output: os.Stderr})
}

// emit prints one JSON line.
func (c *cluster) emit(line map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.out.Encode(line)
}

func (c *cluster) currentStep() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.step
}

// run plays the scenario; the error is the first failed step's, already
// printed.
func (c *cluster) run(commands int) error {
	defer c.shutdownAll()
	steps := []struct {
		name string
		fn   func() (map[string]any, error)
	}{
		{"elect", c.stepElect},
		{"apply", func() (map[string]any, error) { return c.stepApply(commands) }},
		{"compact", c.stepCompact},
		{"join", c.stepJoin},
		{"transfer", c.stepTransfer},
		{"restart", c.stepRestart},
		{"pre_vote", c.stepPreVote},
		{"rpcs", c.stepRPCs},
	}
	mode := "direct"
	if c.relayed {
		mode = "relay"
	}
	routes := map[string]string{}
	for _, n := range c.nodes {
		routes[string(n.id)] = fmt.Sprintf("%s -> %s", n.advertise, n.listen)
	}
	config := map[string]any{"step": "config", "ok": true, "mode": mode, "nodes": routes, "legacy_fields": c.legacy,
		"heartbeat_ms": c.heartbeat.Milliseconds(), "library": "stand-in", "snapshot_padding": c.padding}
	if c.library == libraryV010 {
		module, err := linkedLibrary()
		if err != nil {
			config["ok"], config["error"] = false, err.Error()
			c.emit(config)
			return err
		}
		config["library"], config["library_module"] = c.library, module
	}
	c.emit(config)
	for _, s := range steps {
		c.mu.Lock()
		c.step = s.name
		c.mu.Unlock()
		start := time.Now()
		detail, err := s.fn()
		line := map[string]any{"step": s.name, "ok": err == nil, "ms": time.Since(start).Milliseconds()}
		for k, v := range detail {
			line[k] = v
		}
		if err != nil {
			line["error"] = err.Error()
			c.emit(line)
			return err
		}
		c.emit(line)
	}
	c.emit(map[string]any{"step": "done", "ok": true, "ms": time.Since(c.started).Milliseconds()})
	return nil
}

// config is the raft configuration of every node: short timeouts for
// loopback, a low snapshot threshold and few trailing logs so that
// compaction is easy to force.
func (c *cluster) config(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = c.heartbeat
	conf.ElectionTimeout = c.heartbeat
	conf.LeaderLeaseTimeout = c.heartbeat
	conf.CommitTimeout = 10 * time.Millisecond
	conf.MaxAppendEntries = 256
	conf.BatchApplyCh = true
	conf.SnapshotThreshold = 1024
	conf.SnapshotInterval = 5 * time.Second
	conf.TrailingLogs = 128
	conf.Logger = c.logger(string(id))
	return conf
}

// linkedLibrary is the Go library's module as linked into this binary,
// "path@version sum"; an error unless it is exactly v0.1.0 and not
// replaced (by a local copy, say).
func linkedLibrary() (string, error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", errors.New("no build information in this binary: cannot tell which " + libraryModule + " is linked")
	}
	for _, dep := range info.Deps {
		if dep.Path != libraryModule {
			continue
		}
		if dep.Replace != nil {
			return "", fmt.Errorf("%s@%s is replaced by %s@%s: not the module proxy's code", dep.Path, dep.Version, dep.Replace.Path, dep.Replace.Version)
		}
		if dep.Version != libraryV010 {
			return "", fmt.Errorf("%s is linked at %s, not %s", dep.Path, dep.Version, libraryV010)
		}
		return fmt.Sprintf("%s@%s %s", dep.Path, dep.Version, dep.Sum), nil
	}
	return "", errors.New(libraryModule + " is not linked into this binary")
}

// dial is every stand-in transport's dialer: it refuses addresses that are
// not advertised, so no RPC can bypass the relay.
func (c *cluster) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	ok := c.allowed[addr]
	if ok {
		c.dials[addr]++
	} else {
		c.violations = append(c.violations, addr)
	}
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s refused: not an advertised address", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// noteTarget records an address raft handed a v0.1.0 transport to call:
// the library dials exactly that address.
func (c *cluster) noteTarget(addr raft.ServerAddress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.allowed[string(addr)] {
		c.targets[string(addr)]++
	} else {
		c.violations = append(c.violations, string(addr))
	}
}

// noteAccept records where a connection accepted by n's listener came
// from: a socket of another process (the relay), or not.
func (c *cluster) noteAccept(n *node, conn net.Conn) {
	origin, err := connOrigin(conn)
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := c.accepts[n.id]
	if counts == nil {
		counts = &acceptCounts{}
		c.accepts[n.id] = counts
	}
	counts.Accepted++
	switch {
	case err != nil:
		c.strays = append(c.strays, fmt.Sprintf("%s accepted %s: origin unknown: %v", n.id, conn.RemoteAddr(), err))
	case origin == originSelf:
		counts.ThisProcess++
		if c.relayed {
			c.strays = append(c.strays, fmt.Sprintf("%s accepted %s from a socket of this process: a node bypassed the relay", n.id, conn.RemoteAddr()))
		}
	default:
		counts.OtherProcess++
		if !c.relayed {
			c.strays = append(c.strays, fmt.Sprintf("%s accepted %s from another process, though the nodes talk directly", n.id, conn.RemoteAddr()))
		}
	}
}

// newTransport makes n's transport on listener, wrapped to count RPCs.
func (c *cluster) newTransport(n *node, listener net.Listener) (raft.Transport, error) {
	if c.library != libraryV010 {
		inner := transport.New(listener, n.advertise, transport.Options{Timeout: 5 * time.Second, LegacyFields: c.legacy, Dial: c.dial})
		return newCountingTransport(inner, n.counts, nil, nil), nil
	}
	server := grpc.NewServer()
	inner, err := raftgrpc.NewGrpcTransport(string(n.advertise), server, raftgrpc.WithTimeout(libraryTimeout))
	if err != nil {
		_ = listener.Close()
		return nil, fmt.Errorf("%s: raftgrpc.NewGrpcTransport: %w", n.id, err)
	}
	go func() { _ = server.Serve(originListener{Listener: listener, c: c, n: n}) }()
	// The library's Close leaves the server to its user: stop it with
	// the transport, so that a node shut down refuses connections.
	return newCountingTransport(inner, n.counts, c.noteTarget, server.Stop), nil
}

// start runs a node over its stores: a new listener on its port, a new
// transport, FSM and raft instance.
func (c *cluster) start(n *node) error {
	listener, err := net.Listen("tcp", n.listen)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", n.id, n.listen, err)
	}
	if n.trans, err = c.newTransport(n, listener); err != nil {
		return err
	}
	n.fsm = newKVFSM(c.padding)
	r, err := raft.NewRaft(c.config(n.id), n.fsm, n.logs, n.logs, n.snaps, n.trans)
	if err != nil {
		_ = n.trans.(raft.WithClose).Close()
		return fmt.Errorf("%s: raft.NewRaft: %w", n.id, err)
	}
	n.raft = r
	return nil
}

// stop shuts a node down; raft closes the transport (raft.WithClose).
func (n *node) stop() error {
	if n.raft == nil {
		return nil
	}
	err := n.raft.Shutdown().Error()
	n.raft = nil
	return err
}

func (c *cluster) shutdownAll() {
	for _, n := range c.nodes {
		_ = n.stop()
	}
	_ = os.RemoveAll(c.snapDir)
}

func (c *cluster) running() []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.raft != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitFor polls cond every 10 ms until it holds or timeout passes; the
// error carries cond's last explanation.
func waitFor(what string, timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s: %s", what, timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader waits until exactly one running node leads and every running
// node names it; not, when set, must not be the leader.
func (c *cluster) waitLeader(timeout time.Duration, not *node) (*node, error) {
	var leader *node
	err := waitFor("a leader all running nodes agree on", timeout, func() (bool, string) {
		leader = nil
		var views []string
		for _, n := range c.running() {
			_, id := n.raft.LeaderWithID()
			views = append(views, fmt.Sprintf("%s:%s/term %s/leader %q", n.id, n.raft.State(), n.raft.Stats()["term"], id))
			if n.raft.State() == raft.Leader {
				if leader != nil {
					return false, "two leaders: " + strings.Join(views, " ")
				}
				leader = n
			}
		}
		if leader == nil {
			return false, "no leader: " + strings.Join(views, " ")
		}
		if not != nil && leader == not {
			return false, "leader is still " + string(not.id)
		}
		for _, n := range c.running() {
			addr, id := n.raft.LeaderWithID()
			if id != leader.id || addr != leader.advertise {
				return false, "not all agree: " + strings.Join(views, " ")
			}
		}
		return true, ""
	})
	return leader, err
}

// applyBatch applies count commands through leader, all enqueued before any
// is awaited; it returns the last command's index.
func (c *cluster) applyBatch(leader *node, count int) (uint64, error) {
	futures := make([]raft.ApplyFuture, 0, count)
	for i := 0; i < count; i++ {
		c.next++
		cmd := fmt.Sprintf("set k%03d v%d", c.next%997, c.next)
		futures = append(futures, leader.raft.Apply([]byte(cmd), 10*time.Second))
	}
	var last uint64
	for i, f := range futures {
		if err := f.Error(); err != nil {
			return 0, fmt.Errorf("command %d of %d through %s: %w", i+1, count, leader.id, err)
		}
		if resp := f.Response(); resp != nil {
			return 0, fmt.Errorf("command %d of %d: FSM answered %v", i+1, count, resp)
		}
		last = f.Index()
	}
	return last, nil
}

// converge waits until every running node's FSM has applied index, then
// requires all their states to be identical.
func (c *cluster) converge(index uint64, timeout time.Duration) (fsmDigest, error) {
	err := waitFor(fmt.Sprintf("every running FSM at index %d", index), timeout, func() (bool, string) {
		var behind []string
		for _, n := range c.running() {
			if d := n.fsm.digest(); d.LastIndex < index {
				behind = append(behind, fmt.Sprintf("%s at %d", n.id, d.LastIndex))
			}
		}
		return len(behind) == 0, strings.Join(behind, ", ")
	})
	if err != nil {
		return fsmDigest{}, err
	}
	var first fsmDigest
	var firstID raft.ServerID
	for i, n := range c.running() {
		d := n.fsm.digest()
		if i == 0 {
			first, firstID = d, n.id
			continue
		}
		if d != first {
			return fsmDigest{}, fmt.Errorf("FSM of %s differs from %s's: %+v vs %+v", n.id, firstID, d, first)
		}
	}
	if first.LastIndex != index {
		return fsmDigest{}, fmt.Errorf("FSMs applied index %d, beyond the last command %d", first.LastIndex, index)
	}
	return first, nil
}

func (c *cluster) stepElect() (map[string]any, error) {
	servers := make([]raft.Server, 0, 3)
	for _, n := range c.nodes[:3] {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: n.id, Address: n.advertise})
	}
	for _, n := range c.nodes[:3] {
		if err := c.start(n); err != nil {
			return nil, err
		}
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return nil, fmt.Errorf("%s: bootstrap: %w", n.id, err)
		}
	}
	leader, err := c.waitLeader(15*time.Second, nil)
	if err != nil {
		return nil, err
	}
	return map[string]any{"leader": leader.id, "term": leader.raft.Stats()["term"],
		"pre_votes_received": c.totalIn(kindPreVote)}, nil
}

func (c *cluster) stepApply(count int) (map[string]any, error) {
	leader, err := c.waitLeader(10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	last, err := c.applyBatch(leader, count)
	if err != nil {
		return nil, err
	}
	applied := time.Since(start)
	d, err := c.converge(last, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return map[string]any{"commands": count, "apply_ms": applied.Milliseconds(),
		"commands_per_s": int(float64(count) / applied.Seconds()), "last_index": last, "fsm": d}, nil
}

// stepCompact adds n4 while it is down, so the configuration that names it
// is committed; then it pushes that entry out of the leader's log.
func (c *cluster) stepCompact() (map[string]any, error) {
	leader, err := c.waitLeader(10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	n4 := c.nodes[3]
	add := leader.raft.AddVoter(n4.id, n4.advertise, 0, 10*time.Second)
	if err := add.Error(); err != nil {
		return nil, fmt.Errorf("AddVoter(%s, %s): %w", n4.id, n4.advertise, err)
	}
	configIndex := add.Index()
	last, err := c.applyBatch(leader, 2*int(c.config(leader.id).TrailingLogs))
	if err != nil {
		return nil, err
	}
	if err := leader.raft.Snapshot().Error(); err != nil {
		return nil, fmt.Errorf("leader %s: Snapshot(): %w", leader.id, err)
	}
	first, err := leader.logs.FirstIndex()
	if err != nil {
		return nil, err
	}
	if first <= configIndex {
		return nil, fmt.Errorf("leader %s still holds log index %d (AddVoter's entry); its first index is %d", leader.id, configIndex, first)
	}
	if _, err := c.converge(last, 30*time.Second); err != nil {
		return nil, err
	}
	return map[string]any{"leader": leader.id, "add_voter_index": configIndex, "last_index": last,
		"leader_snapshot_index": leader.raft.Stats()["last_snapshot_index"], "leader_first_log_index": first}, nil
}

func (c *cluster) stepJoin() (map[string]any, error) {
	n4 := c.nodes[3]
	if err := c.start(n4); err != nil {
		return nil, err
	}
	leader, err := c.waitLeader(10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	last := leader.raft.LastIndex()
	if err := waitFor(string(n4.id)+" restored from a snapshot", 30*time.Second, func() (bool, string) {
		return n4.fsm.restores() > 0, fmt.Sprintf("%d InstallSnapshot received, stats %v", n4.counts.in(kindInstallSnapshot), n4.raft.Stats())
	}); err != nil {
		return nil, err
	}
	// No command was applied since the compact step: every FSM must reach
	// the leader's last command.
	var d fsmDigest
	if d, err = c.converge(leader.fsm.digest().LastIndex, 30*time.Second); err != nil {
		return nil, err
	}
	installs := n4.counts.in(kindInstallSnapshot)
	if installs == 0 {
		return nil, fmt.Errorf("%s restored its FSM but its transport received no InstallSnapshot", n4.id)
	}
	snapIndex, _ := strconv.ParseUint(n4.raft.Stats()["last_snapshot_index"], 10, 64)
	if snapIndex == 0 {
		return nil, fmt.Errorf("%s: last_snapshot_index is 0 after the install", n4.id)
	}
	// Membership: exactly the four servers at their advertised addresses;
	// real IDs on the stand-in, IDs = addresses (the legacy peers field)
	// on v0.1.0.
	future := n4.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, err
	}
	var got, want []string
	for _, s := range future.Configuration().Servers {
		got = append(got, fmt.Sprintf("%s=%s/%s", s.ID, s.Address, s.Suffrage))
	}
	for _, n := range c.nodes {
		id := string(n.id)
		if c.library == libraryV010 {
			id = string(n.advertise)
		}
		want = append(want, fmt.Sprintf("%s=%s/%s", id, n.advertise, raft.Voter))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		if c.library == libraryV010 {
			return nil, fmt.Errorf("%s's configuration is [%s], want the legacy peers outcome [%s] (v0.1.0 carries no snapshot_version, so hashicorp must rebuild the servers from the peers field, IDs = addresses)",
				n4.id, strings.Join(got, " "), strings.Join(want, " "))
		}
		return nil, fmt.Errorf("%s's configuration is [%s], want [%s] (IDs equal to addresses mean the snapshot's configuration was rebuilt from the legacy peers field: snapshot_version did not arrive)",
			n4.id, strings.Join(got, " "), strings.Join(want, " "))
	}
	// ...and it came from the snapshot: no configuration entry in n4's log.
	configEntries, err := countConfigEntries(n4.logs)
	if err != nil {
		return nil, err
	}
	if configEntries != 0 {
		return nil, fmt.Errorf("%s's log holds %d configuration entries: its membership did not come from the snapshot alone", n4.id, configEntries)
	}
	// The installed snapshot is whole: its size, and a restore that
	// verified every byte (padding included).
	snapBytes, err := latestSnapshotSize(n4.snaps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n4.id, err)
	}
	if snapBytes <= int64(c.padding) {
		return nil, fmt.Errorf("%s's snapshot is %d bytes, no more than the %d bytes of padding", n4.id, snapBytes, c.padding)
	}
	source := "configuration"
	if c.library == libraryV010 {
		source = "legacy peers"
	}
	return map[string]any{"node": n4.id, "install_snapshot_received": installs, "fsm_restores": n4.fsm.restores(),
		"last_snapshot_index": snapIndex, "leader_last_index": last, "configuration": got, "membership_from": source,
		"snapshot_bytes": snapBytes, "fsm": d}, nil
}

// latestSnapshotSize is the size of the newest snapshot in store.
func latestSnapshotSize(store raft.SnapshotStore) (int64, error) {
	metas, err := store.List()
	if err != nil {
		return 0, err
	}
	if len(metas) == 0 {
		return 0, errors.New("no snapshot in the store")
	}
	return metas[0].Size, nil
}

func countConfigEntries(logs *raft.InmemStore) (int, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, err
	}
	count := 0
	for i := first; i != 0 && i <= last; i++ {
		var entry raft.Log
		if err := logs.GetLog(i, &entry); err != nil {
			return 0, fmt.Errorf("log index %d: %w", i, err)
		}
		if entry.Type == raft.LogConfiguration {
			count++
		}
	}
	return count, nil
}

func (c *cluster) stepTransfer() (map[string]any, error) {
	old, err := c.waitLeader(10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	before := map[raft.ServerID]int64{}
	for _, n := range c.nodes {
		before[n.id] = n.counts.in(kindTimeoutNow)
	}
	// On v0.1.0, n4 knows no server by its ID (see the join step): the
	// target is explicitly one of n1..n3.
	var target *node
	if c.library == libraryV010 {
		for _, n := range c.nodes[:3] {
			if n != old {
				target = n
				break
			}
		}
		if err := old.raft.LeadershipTransferToServer(target.id, target.advertise).Error(); err != nil {
			return nil, fmt.Errorf("LeadershipTransferToServer(%s) from %s: %w", target.id, old.id, err)
		}
	} else if err := old.raft.LeadershipTransfer().Error(); err != nil {
		return nil, fmt.Errorf("LeadershipTransfer from %s: %w", old.id, err)
	}
	leader, err := c.waitLeader(10*time.Second, old)
	if err != nil {
		return nil, err
	}
	if target != nil && leader != target {
		return nil, fmt.Errorf("leadership went to %s, not to the target %s", leader.id, target.id)
	}
	if got := leader.counts.in(kindTimeoutNow) - before[leader.id]; got == 0 {
		return nil, fmt.Errorf("%s became leader without receiving TimeoutNow", leader.id)
	}
	// The new leader commits.
	last, err := c.applyBatch(leader, 100)
	if err != nil {
		return nil, err
	}
	if _, err := c.converge(last, 30*time.Second); err != nil {
		return nil, err
	}
	return map[string]any{"from": old.id, "to": leader.id, "term": leader.raft.Stats()["term"],
		"timeout_now_received": leader.counts.in(kindTimeoutNow) - before[leader.id]}, nil
}

func (c *cluster) stepRestart() (map[string]any, error) {
	leader, err := c.waitLeader(10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	// One of n1..n3 (on v0.1.0 n4 knows no server by its ID, see the
	// join step; on the stand-in this is the first follower anyway).
	var follower *node
	for _, n := range c.nodes[:3] {
		if n != leader {
			follower = n
			break
		}
	}
	termBefore := leader.raft.Stats()["term"]
	if err := follower.stop(); err != nil {
		return nil, fmt.Errorf("%s: shutdown: %w", follower.id, err)
	}
	down := time.Now()
	// Its transport is closed: its port refuses connections.
	if conn, err := net.DialTimeout("tcp", follower.listen, time.Second); err == nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%s shut down but %s still accepts connections", follower.id, follower.listen)
	}
	missed, err := c.applyBatch(leader, 1000)
	if err != nil {
		return nil, err
	}
	if _, err := c.converge(missed, 30*time.Second); err != nil {
		return nil, err
	}
	// Stay down long enough for the leader (and a relay) to give up on the
	// follower for a while: several heartbeat timeouts.
	time.Sleep(time.Until(down.Add(3 * c.heartbeat)))
	if err := c.start(follower); err != nil {
		return nil, err
	}
	restarted := time.Now()
	downtime := restarted.Sub(down)
	d, err := c.converge(missed, 30*time.Second)
	if err != nil {
		return nil, err
	}
	caughtUp := time.Since(restarted)
	if _, err := c.waitLeader(10*time.Second, nil); err != nil {
		return nil, err
	}
	return map[string]any{"node": follower.id, "leader": leader.id, "missed_commands": 1000,
		"downtime_ms": downtime.Milliseconds(), "catch_up_ms": caughtUp.Milliseconds(), "restored_from_local_snapshot": follower.fsm.restores() > 0,
		"term_before": termBefore, "term_after": leader.raft.Stats()["term"], "fsm": d}, nil
}

func (c *cluster) totalIn(kind string) int64 {
	var sum int64
	for _, n := range c.nodes {
		sum += n.counts.in(kind)
	}
	return sum
}

func (c *cluster) totalOut(kind string) int64 {
	var sum int64
	for _, n := range c.nodes {
		sum += n.counts.out(kind)
	}
	return sum
}

func (c *cluster) stepPreVote() (map[string]any, error) {
	received, sent, denied := c.totalIn(kindPreVote), c.totalOut(kindPreVote), c.totalOut(kindPreVoteDenied)
	if c.library == libraryV010 {
		return c.checkNoPreVote(received, sent)
	}
	if received == 0 {
		return nil, fmt.Errorf("no RequestPreVote reached any node (%d sent): pre-vote was not used", sent)
	}
	return map[string]any{"observed": true, "sent": sent, "received": received, "denied_answers": denied}, nil
}

// checkNoPreVote is the pre_vote step on v0.1.0: the library has no
// RequestPreVote, so hashicorp must not have used pre-vote, and the
// elections ran on RequestVote alone.
func (c *cluster) checkNoPreVote(received, sent int64) (map[string]any, error) {
	var withPreVote []string
	for _, n := range c.nodes {
		if _, ok := n.trans.(raft.WithPreVote); ok {
			withPreVote = append(withPreVote, string(n.id))
		}
	}
	if len(withPreVote) != 0 {
		return nil, fmt.Errorf("the transports of %v implement raft.WithPreVote, which v0.1.0 cannot carry", withPreVote)
	}
	if sent != 0 || received != 0 {
		return nil, fmt.Errorf("RequestPreVote was used (%d sent, %d received) although no transport implements raft.WithPreVote", sent, received)
	}
	granted := c.totalOut(kindVoteGranted)
	if granted == 0 {
		return nil, fmt.Errorf("no RequestVote was granted (%d sent, %d received): the elections did not run on votes", c.totalOut(kindRequestVote), c.totalIn(kindRequestVote))
	}
	return map[string]any{"observed": false, "sent": sent, "received": received, "transport_has_pre_vote": false,
		"request_votes_sent": c.totalOut(kindRequestVote), "votes_granted": granted}, nil
}

func (c *cluster) stepRPCs() (map[string]any, error) {
	if c.library == libraryV010 {
		return c.checkRPCsV010()
	}
	c.mu.Lock()
	violations := append([]string(nil), c.violations...)
	dials := map[string]int{}
	for k, v := range c.dials {
		dials[k] = v
	}
	c.mu.Unlock()
	if len(violations) != 0 {
		return nil, fmt.Errorf("dials outside the advertised addresses: %v", violations)
	}
	for _, kind := range []string{kindAppendEntries, kindHeartbeat, kindRequestVote, kindPreVote, kindTimeoutNow, kindInstallSnapshot} {
		if c.totalIn(kind) == 0 {
			return nil, fmt.Errorf("no %s RPC was received by any node", kind)
		}
	}
	var pipelined int64
	for _, n := range c.nodes {
		pipelined += n.counts.out(kindPipelined)
	}
	if pipelined == 0 {
		return nil, errors.New("no append was pipelined")
	}
	return map[string]any{"dials": dials, "pipelined_appends_sent": pipelined}, nil
}

// checkRPCsV010 is the rpcs step on v0.1.0: the RPC kinds the library
// carries were all received, heartbeats only through the consumer, and
// nothing bypassed the relay (targets advertised, every accepted
// connection from another process).
func (c *cluster) checkRPCsV010() (map[string]any, error) {
	c.mu.Lock()
	violations := append([]string(nil), c.violations...)
	strays := append([]string(nil), c.strays...)
	targets := map[string]int{}
	for k, v := range c.targets {
		targets[k] = v
	}
	accepts := map[string]acceptCounts{}
	for id, a := range c.accepts {
		accepts[string(id)] = *a
	}
	c.mu.Unlock()
	if len(violations) != 0 {
		return nil, fmt.Errorf("RPCs to addresses that are not advertised: %v", violations)
	}
	if len(strays) != 0 {
		return nil, fmt.Errorf("connections of unexpected origin: %v", strays)
	}
	for _, n := range c.nodes {
		// Relayed, every connection comes from the relay; direct, from
		// the other nodes, in this process (which shows the origin
		// check can tell them apart).
		if a := accepts[string(n.id)]; (c.relayed && a.OtherProcess == 0) || (!c.relayed && a.ThisProcess == 0) {
			return nil, fmt.Errorf("%s's listener accepted no connection of the expected origin (relayed: %t): %+v", n.id, c.relayed, a)
		}
		if targets[string(n.advertise)] == 0 {
			return nil, fmt.Errorf("no RPC was sent to %s (%s)", n.advertise, n.id)
		}
	}
	for _, kind := range []string{kindAppendEntries, kindQueuedHeartbeat, kindRequestVote, kindTimeoutNow, kindInstallSnapshot} {
		if c.totalIn(kind) == 0 {
			return nil, fmt.Errorf("no %s RPC was received by any node", kind)
		}
	}
	if fast := c.totalIn(kindHeartbeat); fast != 0 {
		return nil, fmt.Errorf("%d heartbeats took a fast path, which v0.1.0 does not have", fast)
	}
	pipelined := c.totalOut(kindPipelined)
	if pipelined == 0 {
		return nil, errors.New("no append was pipelined")
	}
	return map[string]any{"targets": targets, "accepted": accepts, "pipelined_appends_sent": pipelined,
		"heartbeats_through_consumer": c.totalIn(kindQueuedHeartbeat)}, nil
}

// --- connection origins -------------------------------------------------

// originListener notes the origin of every connection it accepts.
type originListener struct {
	net.Listener
	c *cluster
	n *node
}

func (l originListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.c.noteAccept(l.n, conn)
	}
	return conn, err
}

type origin int

const (
	originOther origin = iota // a socket of another process
	originSelf                // a socket of this process
)

// connOrigin finds the socket at the other end of the loopback connection
// conn in /proc/net/tcp{,6} (the one whose local address is conn's remote
// and whose remote is conn's local) and tells whether this process holds
// it (/proc/self/fd).
func connOrigin(conn net.Conn) (origin, error) {
	if runtime.GOOS != "linux" {
		return 0, errors.New("needs Linux's /proc")
	}
	remote, ok1 := conn.RemoteAddr().(*net.TCPAddr)
	local, ok2 := conn.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("not a TCP connection: %s", conn.RemoteAddr())
	}
	inode, err := socketInode(remote, local)
	if err != nil {
		return 0, err
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && link == want {
			return originSelf, nil
		}
	}
	return originOther, nil
}

// socketInode is the inode of the TCP socket bound to local and connected
// to remote, from /proc/net/tcp (IPv4) or /proc/net/tcp6.
func socketInode(local, remote *net.TCPAddr) (string, error) {
	type table struct {
		path          string
		local, remote string
	}
	var tables []table
	if v4 := local.IP.To4(); v4 != nil && remote.IP.To4() != nil {
		tables = append(tables, table{"/proc/net/tcp", procAddr(v4, local.Port), procAddr(remote.IP.To4(), remote.Port)})
	}
	tables = append(tables, table{"/proc/net/tcp6", procAddr(local.IP.To16(), local.Port), procAddr(remote.IP.To16(), remote.Port)})
	for _, t := range tables {
		data, err := os.ReadFile(t.path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) > 9 && strings.EqualFold(f[1], t.local) && strings.EqualFold(f[2], t.remote) {
				if f[9] == "0" {
					return "", fmt.Errorf("the socket %s -> %s has no inode (state %s)", local, remote, f[3])
				}
				return f[9], nil
			}
		}
	}
	return "", fmt.Errorf("no socket %s -> %s in /proc/net/tcp{,6}", local, remote)
}

// procAddr writes ip:port as /proc/net/tcp{,6} do: each 32-bit word of the
// address in host byte order, then the port, all in upper-case hex.
func procAddr(ip net.IP, port int) string {
	var b strings.Builder
	for i := 0; i+4 <= len(ip); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", port)
	return b.String()
}

func (c *cluster) emitCounts() {
	per := map[string]any{}
	for _, n := range c.nodes {
		in, out := n.counts.snapshot()
		per[string(n.id)] = map[string]any{"in": in, "out": out}
	}
	c.emit(map[string]any{"step": "rpc_counts", "ok": true, "nodes": per})
}

// --- FSM -------------------------------------------------------------

// kvFSM applies "set KEY VALUE" commands to a map and folds every command
// into a running SHA-256, so two FSMs are equal only if they applied the
// same commands at the same indexes in the same order. Its snapshots are
// the state in JSON and a newline, then padding bytes (none by default)
// that depend on the state and on their position, all checked on restore.
type kvFSM struct {
	mu       sync.Mutex
	state    fsmState
	restored int
	padding  int
}

type fsmState struct {
	KV        map[string]string `json:"kv"`
	Hash      []byte            `json:"hash"`
	Count     uint64            `json:"count"`
	LastIndex uint64            `json:"last_index"`
	Padding   int               `json:"padding,omitempty"`
}

// fsmDigest is what two FSMs are compared by.
type fsmDigest struct {
	Count     uint64 `json:"count"`
	LastIndex uint64 `json:"last_index"`
	Hash      string `json:"hash"`
	KVHash    string `json:"kv_hash"`
	Keys      int    `json:"keys"`
}

func newKVFSM(padding int) *kvFSM {
	return &kvFSM{state: fsmState{KV: map[string]string{}, Hash: make([]byte, sha256.Size)}, padding: padding}
}

// snapshotPadding is n bytes derived from seed: block i is
// SHA-256(seed, i), so lost, repeated or reordered bytes show.
func snapshotPadding(seed []byte, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var block [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(block[:], i)
		h := sha256.New()
		h.Write(seed)
		h.Write(block[:])
		out = h.Sum(out)
	}
	return out[:n]
}

func (f *kvFSM) Apply(l *raft.Log) any {
	fields := strings.Fields(string(l.Data))
	if len(fields) != 3 || fields[0] != "set" {
		return fmt.Errorf("bad command %q", l.Data)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	h.Write(f.state.Hash)
	_ = binary.Write(h, binary.BigEndian, l.Index)
	h.Write(l.Data)
	f.state.Hash = h.Sum(nil)
	f.state.KV[fields[1]] = fields[2]
	f.state.Count++
	f.state.LastIndex = l.Index
	return nil
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copied := f.state
	copied.KV = make(map[string]string, len(f.state.KV))
	for k, v := range f.state.KV {
		copied.KV[k] = v
	}
	copied.Hash = append([]byte(nil), f.state.Hash...)
	copied.Padding = f.padding
	return fsmSnapshot{copied}, nil
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st fsmState
	dec := json.NewDecoder(rc)
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if st.KV == nil || len(st.Hash) != sha256.Size {
		return errors.New("snapshot without state")
	}
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), rc))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if want := append([]byte("\n"), snapshotPadding(st.Hash, st.Padding)...); !bytes.Equal(rest, want) {
		return fmt.Errorf("snapshot: %d bytes after the state, want a newline and %d bytes of padding, or they differ", len(rest), st.Padding)
	}
	st.Padding = 0
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
	f.restored++
	return nil
}

func (f *kvFSM) restores() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restored
}

func (f *kvFSM) digest() fsmDigest {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.state.KV))
	for k := range f.state.KV {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, f.state.KV[k])
	}
	return fsmDigest{Count: f.state.Count, LastIndex: f.state.LastIndex, Hash: hex.EncodeToString(f.state.Hash),
		KVHash: hex.EncodeToString(h.Sum(nil)), Keys: len(keys)}
}

type fsmSnapshot struct{ state fsmState }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	buf.Write(snapshotPadding(s.state.Hash, s.state.Padding))
	if _, err := sink.Write(buf.Bytes()); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// --- RPC counting ----------------------------------------------------------

// The kinds counted. Sent heartbeats are Heartbeat; received ones are
// Heartbeat when they took the transport's fast path (the heartbeat
// handler), QueuedHeartbeat when they came through the consumer.
// RequestVoteGranted and RequestPreVoteDenied count answers, at the sender.
const (
	kindAppendEntries   = "AppendEntries"
	kindHeartbeat       = "Heartbeat"
	kindQueuedHeartbeat = "QueuedHeartbeat"
	kindPipelined       = "PipelinedAppend"
	kindRequestVote     = "RequestVote"
	kindVoteGranted     = "RequestVoteGranted"
	kindPreVote         = "RequestPreVote"
	kindPreVoteDenied   = "RequestPreVoteDenied"
	kindTimeoutNow      = "TimeoutNow"
	kindInstallSnapshot = "InstallSnapshot"
)

// rpcCounts counts a node's RPCs by kind, received and sent; it outlives
// the node's restarts.
type rpcCounts struct {
	mu       sync.Mutex
	received map[string]int64
	sent     map[string]int64
}

func newRPCCounts() *rpcCounts {
	return &rpcCounts{received: map[string]int64{}, sent: map[string]int64{}}
}

func (r *rpcCounts) add(m map[string]int64, kind string) {
	r.mu.Lock()
	m[kind]++
	r.mu.Unlock()
}

func (r *rpcCounts) in(kind string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received[kind]
}

func (r *rpcCounts) out(kind string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent[kind]
}

func (r *rpcCounts) snapshot() (in, out map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, out = map[string]int64{}, map[string]int64{}
	for k, v := range r.received {
		in[k] = v
	}
	for k, v := range r.sent {
		out[k] = v
	}
	return in, out
}

// countingTransport wraps any raft.Transport and counts every RPC it sends
// and every RPC its server hands to raft (through the consumer or the
// heartbeat handler). It implements raft.WithClose (closing the inner
// transport when that implements it too) but not raft.WithPreVote: wrap
// returns countingPreVoteTransport, which adds RequestPreVote, exactly when
// the inner transport implements raft.WithPreVote, so that hashicorp
// enables pre-vote exactly when the inner transport can carry it.
type countingTransport struct {
	raft.Transport
	counts *rpcCounts
	// onTarget, when set, sees every address an RPC is sent to.
	onTarget func(raft.ServerAddress)
	// onClose, when set, runs after the inner transport closed.
	onClose  func()
	consumer chan raft.RPC
	done     chan struct{}
	once     sync.Once
}

// countingPreVoteTransport is countingTransport over a transport that
// implements raft.WithPreVote.
type countingPreVoteTransport struct {
	*countingTransport
	preVote raft.WithPreVote
}

var (
	_ raft.Transport   = (*countingTransport)(nil)
	_ raft.WithClose   = (*countingTransport)(nil)
	_ raft.WithPreVote = (*countingPreVoteTransport)(nil)
	_ raft.WithClose   = (*countingPreVoteTransport)(nil)
)

// newCountingTransport wraps inner; onTarget and onClose may be nil.
func newCountingTransport(inner raft.Transport, counts *rpcCounts, onTarget func(raft.ServerAddress), onClose func()) raft.Transport {
	t := &countingTransport{Transport: inner, counts: counts, onTarget: onTarget, onClose: onClose,
		consumer: make(chan raft.RPC), done: make(chan struct{})}
	go t.forward()
	if preVote, ok := inner.(raft.WithPreVote); ok {
		return &countingPreVoteTransport{countingTransport: t, preVote: preVote}
	}
	return t
}

func (t *countingTransport) forward() {
	for {
		select {
		case rpc := <-t.Transport.Consumer():
			kind := kindOf(rpc.Command)
			if r, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && isHeartbeat(r) {
				kind = kindQueuedHeartbeat
			}
			t.counts.add(t.counts.received, kind)
			select {
			case t.consumer <- rpc:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *countingTransport) sendTo(target raft.ServerAddress, kind string) {
	if t.onTarget != nil {
		t.onTarget(target)
	}
	if kind != "" {
		t.counts.add(t.counts.sent, kind)
	}
}

func kindOf(command any) string {
	switch command.(type) {
	case *raft.AppendEntriesRequest:
		return kindAppendEntries
	case *raft.RequestVoteRequest:
		return kindRequestVote
	case *raft.RequestPreVoteRequest:
		return kindPreVote
	case *raft.TimeoutNowRequest:
		return kindTimeoutNow
	case *raft.InstallSnapshotRequest:
		return kindInstallSnapshot
	default:
		return fmt.Sprintf("%T", command)
	}
}

func isHeartbeat(r *raft.AppendEntriesRequest) bool {
	return r.Term != 0 && len(r.Addr) != 0 && r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}

// Consumer implements raft.Transport.
func (t *countingTransport) Consumer() <-chan raft.RPC { return t.consumer }

// SetHeartbeatHandler implements raft.Transport.
func (t *countingTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.Transport.SetHeartbeatHandler(nil)
		return
	}
	t.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.counts.add(t.counts.received, kindHeartbeat)
		cb(rpc)
	})
}

// Close implements raft.WithClose.
func (t *countingTransport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		if inner, ok := t.Transport.(raft.WithClose); ok {
			err = inner.Close()
		}
		if t.onClose != nil {
			t.onClose()
		}
	})
	return err
}

// AppendEntries implements raft.Transport.
func (t *countingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	kind := kindAppendEntries
	if isHeartbeat(args) {
		kind = kindHeartbeat
	}
	t.sendTo(target, kind)
	return t.Transport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline implements raft.Transport.
func (t *countingTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	t.sendTo(target, "")
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return countingPipeline{AppendPipeline: p, counts: t.counts}, nil
}

// RequestVote implements raft.Transport.
func (t *countingTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	t.sendTo(target, kindRequestVote)
	err := t.Transport.RequestVote(id, target, args, resp)
	if err == nil && resp.Granted {
		t.counts.add(t.counts.sent, kindVoteGranted)
	}
	return err
}

// RequestPreVote implements raft.WithPreVote.
func (t *countingPreVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	t.sendTo(target, kindPreVote)
	err := t.preVote.RequestPreVote(id, target, args, resp)
	if err == nil && !resp.Granted {
		t.counts.add(t.counts.sent, kindPreVoteDenied)
	}
	return err
}

// TimeoutNow implements raft.Transport.
func (t *countingTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	t.sendTo(target, kindTimeoutNow)
	return t.Transport.TimeoutNow(id, target, args, resp)
}

// InstallSnapshot implements raft.Transport.
func (t *countingTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	t.sendTo(target, kindInstallSnapshot)
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

// countingPipeline counts the appends sent on a pipeline.
type countingPipeline struct {
	raft.AppendPipeline
	counts *rpcCounts
}

func (p countingPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.counts.add(p.counts.sent, kindPipelined)
	return p.AppendPipeline.AppendEntries(args, resp)
}
