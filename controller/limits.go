package controller

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rustynet/rustynet/controller/api"
)

// Limits bound what one node, and one client address, may hold of the
// controller. A zero field takes its default; a negative one removes the
// limit (for benchmarks that simulate thousands of nodes from one address).
type Limits struct {
	// MaxConns bounds the open API connections in all (default 16384).
	MaxConns int
	// MaxConnsPerIP bounds the open API connections from one IP address
	// (default 256: a node needs one; nodes behind one NAT share it).
	MaxConnsPerIP int
	// PollsPerNode bounds one node's concurrent netmap long-polls
	// (default 4: a node holds one, and briefly two as it reconnects).
	PollsPerNode int
	// NodeRate and NodeBurst bound one node's endpoint reports and key
	// rotations, as a token bucket (default 1/s with a burst of 10; a node
	// reports its endpoints at most every 30 s).
	NodeRate  rate.Limit
	NodeBurst int
	// PollRate and PollBurst bound how often one node may start a netmap
	// poll (default 20/s with a burst of 40).
	PollRate  rate.Limit
	PollBurst int
}

// Defaults.
const (
	DefaultMaxConns      = 16384
	DefaultMaxConnsPerIP = 256
	DefaultPollsPerNode  = 4
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConns, DefaultMaxConns)
	def(&l.MaxConnsPerIP, DefaultMaxConnsPerIP)
	def(&l.PollsPerNode, DefaultPollsPerNode)
	def(&l.NodeBurst, 10)
	def(&l.PollBurst, 40)
	if l.NodeRate == 0 {
		l.NodeRate = 1
	}
	if l.PollRate == 0 {
		l.PollRate = 20
	}
	if l.NodeRate < 0 {
		l.NodeRate = rate.Inf
	}
	if l.PollRate < 0 {
		l.PollRate = rate.Inf
	}
	return l
}

// nodeLimiter holds each node's token buckets. Entries of nodes that have
// not been seen for limiterIdle are dropped.
type nodeLimiter struct {
	limits Limits
	mu     sync.Mutex
	nodes  map[api.NodeID]*nodeBuckets
	calls  int
}

type nodeBuckets struct {
	writes, polls *rate.Limiter
	last          time.Time
}

const limiterIdle = 10 * time.Minute

func newNodeLimiter(l Limits) *nodeLimiter {
	return &nodeLimiter{limits: l, nodes: make(map[api.NodeID]*nodeBuckets)}
}

func (nl *nodeLimiter) buckets(id api.NodeID, now time.Time) *nodeBuckets {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if nl.calls++; nl.calls%4096 == 0 {
		for k, b := range nl.nodes {
			if now.Sub(b.last) > limiterIdle {
				delete(nl.nodes, k)
			}
		}
	}
	b := nl.nodes[id]
	if b == nil {
		b = &nodeBuckets{
			writes: rate.NewLimiter(nl.limits.NodeRate, nl.limits.NodeBurst),
			polls:  rate.NewLimiter(nl.limits.PollRate, nl.limits.PollBurst),
		}
		nl.nodes[id] = b
	}
	b.last = now
	return b
}

// take spends one token of lim at now, or returns the refusal: 429 with
// the seconds to wait in Retry-After.
func take(lim *rate.Limiter, now time.Time, what string) error {
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return rateLimited(time.Second, what)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return rateLimited(d, what)
	}
	return nil
}

// rateLimitError is a 429 refusal; the router sets Retry-After from it.
type rateLimitError struct {
	err        *api.Error
	retryAfter time.Duration
}

func (e *rateLimitError) Error() string { return e.err.Error() }
func (e *rateLimitError) Unwrap() error { return e.err }

func rateLimited(wait time.Duration, what string) error {
	secs := int(math.Ceil(wait.Seconds()))
	secs = max(secs, 1)
	return &rateLimitError{
		err: &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited,
			Message: fmt.Sprintf("too many %s from this node; retry in %d s", what, secs)},
		retryAfter: time.Duration(secs) * time.Second,
	}
}

func setRetryAfter(w http.ResponseWriter, err error) {
	var rl *rateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.retryAfter/time.Second)))
	}
}
