package transport

// The client side of AppendEntriesPipeline: one bidi stream, at most
// PipelineWindow appends in flight, futures completed in send order.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/raftpb"
)

// ErrPipelineShutdown completes appends still in flight when the pipeline
// closes.
var ErrPipelineShutdown = errors.New("append pipeline closed")

// AppendEntriesPipeline implements raft.Transport.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	c, err := t.client(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.AppendEntriesPipeline(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &pipeline{
		t:        t,
		stream:   stream,
		cancel:   cancel,
		inflight: make(chan *appendFuture, PipelineWindow),
		done:     make(chan raft.AppendFuture, PipelineWindow),
		closed:   make(chan struct{}),
	}
	go p.receive()
	return p, nil
}

type pipeline struct {
	t        *Transport
	stream   pb.RaftTransportService_AppendEntriesPipelineClient
	cancel   context.CancelFunc
	sendMu   sync.Mutex
	inflight chan *appendFuture
	done     chan raft.AppendFuture
	closed   chan struct{}
	once     sync.Once
}

// AppendEntries sends one append; it blocks while PipelineWindow are in
// flight.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), req: args, resp: resp, finished: make(chan struct{})}
	select {
	case p.inflight <- f:
	case <-p.closed:
		return nil, ErrPipelineShutdown
	}
	select {
	case <-p.closed:
		// Queued after the receiver may have stopped: fail it here.
		f.finish(ErrPipelineShutdown)
		return f, nil
	default:
	}
	p.sendMu.Lock()
	err := p.stream.Send(UnaryToPipeline(EncodeAppendEntries(args, p.t.opts.LegacyFields)))
	p.sendMu.Unlock()
	// A failed send breaks the stream: the receiver then fails this
	// future and every later one.
	_ = err
	return f, nil
}

func (p *pipeline) receive() {
	var failure error
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.closed:
			for {
				select {
				case f := <-p.inflight:
					f.finish(ErrPipelineShutdown)
				default:
					return
				}
			}
		}
		if failure == nil {
			in, err := p.stream.Recv()
			if err != nil {
				failure = err
				select {
				case <-p.closed:
					failure = ErrPipelineShutdown
				default:
				}
			} else {
				*f.resp = *DecodeAppendEntriesResponse(PipelineToUnaryResponse(in))
			}
		}
		f.finish(failure)
		select {
		case p.done <- f:
		case <-p.closed:
		}
		if failure != nil {
			p.shut()
		}
	}
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline: appends in flight fail with
// ErrPipelineShutdown.
func (p *pipeline) Close() error {
	p.shut()
	return nil
}

func (p *pipeline) shut() {
	p.once.Do(func() {
		close(p.closed)
		p.cancel()
	})
}

type appendFuture struct {
	start    time.Time
	req      *raft.AppendEntriesRequest
	resp     *raft.AppendEntriesResponse
	err      error
	once     sync.Once
	finished chan struct{}
}

func (f *appendFuture) finish(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.finished)
	})
}

func (f *appendFuture) Error() error {
	<-f.finished
	return f.err
}
func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.req }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
