// Package controller is the Rustynet control plane: the HTTPS API nodes
// register with and long-poll for netmaps, the admin API on a unix socket,
// IPAM and ACL evaluation, over a store.Store.
//
// Writes go through one committer goroutine that groups concurrent
// mutations into one store transaction (one fsync for many registrations),
// then applies their effects to the in-memory state in revision order and
// wakes the long-polls they concern.
package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/acl"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/ipam"
	"github.com/rustynet/rustynet/controller/store"
)

// maxBatch bounds how many mutations share one store transaction.
const maxBatch = 256

// ErrClosed is returned for work asked of a closed Server.
var ErrClosed = errors.New("controller is shutting down")

// Config configures a Server.
type Config struct {
	// Store holds the durable state. The Server does not close it.
	Store store.Store
	// IPv4 and IPv6 are the address pools; zero means ipam.DefaultIPv4
	// and ipam.DefaultIPv6.
	IPv4, IPv6 netip.Prefix
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Version is the build's version, for rustynet_controller_build_info.
	Version string
	// MaxWait caps a netmap long-poll; zero means api.MaxWait.
	MaxWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Limits bound what one node may hold; zero fields take defaults.
	Limits Limits
	// AllowLoopbackEndpoints accepts loopback endpoints, for test
	// networks where every node runs on one host. Never in production:
	// peers would send their handshakes to themselves.
	AllowLoopbackEndpoints bool
	// LoadTimeout bounds reading the state from a replicated store when
	// the Server starts (default 30 s).
	LoadTimeout time.Duration
}

// Server is a controller. Create it with New; serve Handler over HTTPS and
// AdminHandler on a private unix socket.
type Server struct {
	store   store.Store
	pool    *ipam.Pool
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	maxWait time.Duration
	st      *state

	mutations     chan *mutation
	stopCommitter chan struct{}
	committerDone chan struct{}
	shutdown      chan struct{} // closed by Shutdown: long-polls return
	shutdownOnce  sync.Once
	closeOnce     sync.Once

	pollMu sync.Mutex
	polls  map[api.NodeID]int // open long-polls per node
	park   *parker            // long-polls waiting without a goroutine

	limits        Limits
	limiter       *nodeLimiter
	challenges    *challenger
	coalescer     *endpointCoalescer
	allowLoopback bool

	// replicated is the store when several replicas share it (nil for a
	// single controller): the state then follows its change feed.
	replicated store.Replicated
	stopFollow context.CancelFunc
	followDone chan struct{}
	replicas   atomic.Pointer[[]string] // announced replica URLs

	// fwd, when set, hands registrations to the writer replica
	// (forward.go); isReplica tells its requests from a node's.
	fwd       *forwarder
	isReplica func(*tls.ConnectionState) bool
}

// New loads the state from cfg.Store and starts the committer.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("controller: no store")
	}
	if !cfg.IPv4.IsValid() {
		cfg.IPv4 = ipam.DefaultIPv4
	}
	if !cfg.IPv6.IsValid() {
		cfg.IPv6 = ipam.DefaultIPv6
	}
	pool, err := ipam.NewPool(cfg.IPv4, cfg.IPv6)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = api.MaxWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 30 * time.Second
	}
	rs, replicated := cfg.Store.(store.Replicated)
	var st *state
	if replicated {
		st = newState(0, map[api.NodeID]*store.Node{}, acl.AllowAll(), nil)
	} else {
		var err error
		if st, err = loadState(cfg.Store); err != nil {
			return nil, fmt.Errorf("controller: load state: %w", err)
		}
	}
	s := &Server{
		store:         cfg.Store,
		pool:          pool,
		log:           cfg.Logger,
		metrics:       newMetrics(cfg.Registerer, cfg.Version),
		now:           cfg.Now,
		maxWait:       cfg.MaxWait,
		st:            st,
		mutations:     make(chan *mutation),
		stopCommitter: make(chan struct{}),
		committerDone: make(chan struct{}),
		shutdown:      make(chan struct{}),
		polls:         make(map[api.NodeID]int),
		limits:        cfg.Limits.withDefaults(),
		challenges:    &challenger{now: cfg.Now},
		allowLoopback: cfg.AllowLoopbackEndpoints,
	}
	s.park = newParker(s)
	st.onChanged = s.park.changed
	copy(s.challenges.secret[:], randomBytes(32))
	s.limiter = newNodeLimiter(s.limits)
	s.coalescer = &endpointCoalescer{s: s}
	if replicated {
		if err := s.startFollowing(rs, cfg.LoadTimeout); err != nil {
			return nil, fmt.Errorf("controller: load state: %w", err)
		}
	}
	s.metrics.nodes.Set(float64(s.st.count()))
	go s.commitLoop()
	return s, nil
}

func loadState(st store.Store) (*state, error) {
	nodes := make(map[api.NodeID]*store.Node)
	var (
		rev    uint64
		rec    *store.Policy
		policy = acl.AllowAll()
	)
	err := st.View(context.Background(), func(tx store.Tx) error {
		rev = tx.Revision()
		if err := tx.ForEachNode(func(n *store.Node) error {
			nodes[n.ID] = n
			return nil
		}); err != nil {
			return err
		}
		p, err := tx.Policy()
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		compiled, err := acl.Parse([]byte(p.Text))
		if err != nil {
			return fmt.Errorf("the stored ACL policy no longer parses (%w); restore a backup or run the release that set it", err)
		}
		rec, policy = p, compiled
		return nil
	})
	if err != nil {
		return nil, err
	}
	return newState(rev, nodes, policy, rec), nil
}

// Shutdown makes every open netmap long-poll answer at once (with an empty
// delta) so that an HTTP server's Shutdown is not held up by them. New
// long-polls also answer at once.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		close(s.shutdown)
		s.park.shutdown()
	})
}

// Close shuts down long-polls, waits for the committer to finish the
// mutations in hand, and stops it. Later mutations fail with ErrClosed. It
// does not close the store.
func (s *Server) Close() error {
	s.Shutdown()
	s.closeOnce.Do(func() {
		// Parked long-polls are answered and their connections closed;
		// those given back to net/http are served until their server's
		// shutdown ends (up to shutdownGrace).
		s.park.close(shutdownGrace)
		close(s.stopCommitter)
	})
	<-s.committerDone
	if s.fwd != nil {
		s.fwd.client.CloseIdleConnections()
	}
	if s.replicated != nil {
		s.stopFollow()
		<-s.followDone
	}
	return nil
}

// A mutation is one unit of work for the committer. fn runs inside a store
// transaction, possibly batched with others and possibly more than once. It
// must either refuse (return an *api.Error) before writing anything, or
// write and return its effect; any other error aborts the whole batch.
// PutNode refuses a conflict without writing, so call it before other
// writes.
type mutation struct {
	fn   func(tx store.Tx) (effect, any, error)
	done chan mutationResult // buffered; the committer always answers
	// durable: answer once the commit is durable, without waiting for
	// this replica's feed to apply it (a write another replica handed
	// over: that replica waits for its own feed).
	durable bool
}

type mutationResult struct {
	result any
	rev    uint64 // the revision the transaction committed as
	err    error
}

// mutate runs fn through the committer and returns its result once the
// transaction is durable and the in-memory state reflects it.
func (s *Server) mutate(ctx context.Context, fn func(tx store.Tx) (effect, any, error)) (any, error) {
	res, _, err := s.mutateRev(ctx, fn)
	return res, err
}

// mutateRev is mutate that also returns the revision the transaction
// committed as.
func (s *Server) mutateRev(ctx context.Context, fn func(tx store.Tx) (effect, any, error)) (any, uint64, error) {
	return s.submit(ctx, &mutation{fn: fn, done: make(chan mutationResult, 1)})
}

// mutateDurable is mutateRev answered once the commit is durable, before
// this replica's state has it (mutation.durable).
func (s *Server) mutateDurable(ctx context.Context, fn func(tx store.Tx) (effect, any, error)) (any, uint64, error) {
	return s.submit(ctx, &mutation{fn: fn, done: make(chan mutationResult, 1), durable: true})
}

func (s *Server) submit(ctx context.Context, m *mutation) (any, uint64, error) {
	select {
	case s.mutations <- m:
	case <-s.committerDone:
		return nil, 0, ErrClosed
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	r := <-m.done
	return r.result, r.rev, r.err
}

func (s *Server) commitLoop() {
	defer close(s.committerDone)
	for {
		var batch []*mutation
		select {
		case m := <-s.mutations:
			batch = append(batch, m)
		case <-s.stopCommitter:
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case m := <-s.mutations:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *Server) commit(batch []*mutation) {
	effects := make([]effect, len(batch))
	results := make([]mutationResult, len(batch))
	start := time.Now()
	rev, err := s.store.Update(context.Background(), func(tx store.Tx) error {
		for i, m := range batch {
			eff, res, err := m.fn(tx)
			var apiErr *api.Error
			switch {
			case err == nil:
				effects[i], results[i] = eff, mutationResult{result: res}
			case errors.As(err, &apiErr):
				effects[i], results[i] = effect{}, mutationResult{err: err}
			default:
				return err
			}
		}
		return nil
	})
	s.metrics.commitTime.Observe(time.Since(start).Seconds())
	s.metrics.commitBatch.Observe(float64(len(batch)))
	if errors.Is(err, store.ErrTooLarge) && len(batch) > 1 {
		// Over the store's limit of writes per transaction: in halves.
		s.commit(batch[:len(batch)/2])
		s.commit(batch[len(batch)/2:])
		return
	}
	if err != nil {
		s.metrics.storeErrors.Inc()
		s.log.Error("store commit failed", "mutations", len(batch), "err", err)
		for _, m := range batch {
			m.done <- mutationResult{err: fmt.Errorf("store: %w", err)}
		}
		return
	}
	for i := range results {
		if results[i].err == nil {
			results[i].rev = rev
		}
	}
	if s.replicated != nil {
		// The feed applies this commit, as it does the other replicas':
		// answer once the state has it, without holding up the next
		// batch.
		var waiting []int
		for i, m := range batch {
			if m.durable {
				m.done <- results[i]
			} else {
				waiting = append(waiting, i)
			}
		}
		if len(waiting) == 0 {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), feedWait)
			defer cancel()
			if !s.st.waitRev(ctx, rev) {
				s.log.Warn("the store's change feed has not delivered a commit yet; answering anyway", "revision", rev, "waited", feedWait)
			}
			for _, i := range waiting {
				batch[i].done <- results[i]
			}
		}()
		return
	}
	s.st.apply(rev, s.now(), effects)
	s.metrics.nodes.Set(float64(s.st.count()))
	for i, m := range batch {
		m.done <- results[i]
	}
}

// feedWait bounds how long a mutation's answer waits for the change feed to
// bring its commit into the state a replica serves.
const feedWait = 10 * time.Second

// startFollowing starts applying rs's change feed to the state and waits
// for the first state, up to timeout.
func (s *Server) startFollowing(rs store.Replicated, timeout time.Duration) error {
	s.replicated = rs
	ctx, cancel := context.WithCancel(context.Background())
	s.stopFollow, s.followDone = cancel, make(chan struct{})
	loaded := make(chan error, 1)
	var once sync.Once
	go func() {
		defer close(s.followDone)
		err := rs.Follow(ctx, func(ch *store.Change) error {
			err := s.applyChange(ch)
			if ch.Reset {
				once.Do(func() { loaded <- err })
			}
			if err != nil {
				s.log.Error("store change not applied", "revision", ch.Rev, "err", err)
			}
			return nil
		})
		if ctx.Err() == nil {
			s.log.Error("store change feed stopped", "err", err)
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-loaded:
		if err != nil {
			cancel()
			<-s.followDone
		}
		return err
	case <-t.C:
		cancel()
		<-s.followDone
		return fmt.Errorf("%w: no state from the store in %s", store.ErrUnavailable, timeout)
	}
}

// applyChange applies one change of the feed to the state.
func (s *Server) applyChange(ch *store.Change) error {
	var policy *policyUpdate
	if ch.Policy != nil {
		compiled, err := acl.Parse([]byte(ch.Policy.Text))
		if err != nil {
			// The replica that stored it parsed it: this one is older.
			return fmt.Errorf("the stored ACL policy does not parse in this build (%w); upgrade this replica", err)
		}
		policy = &policyUpdate{rec: ch.Policy, compiled: compiled}
	}
	if ch.Reset {
		nodes := make(map[api.NodeID]*store.Node, len(ch.Nodes))
		for _, n := range ch.Nodes {
			nodes[n.ID] = n
		}
		compiled, rec := acl.AllowAll(), (*store.Policy)(nil)
		if policy != nil {
			compiled, rec = policy.compiled, policy.rec
		}
		s.st.reset(ch.Rev, nodes, compiled, rec)
	} else {
		var e effect
		for _, n := range ch.Nodes {
			e.nodes = append(e.nodes, nodeUpdate{id: n.ID, node: n})
		}
		for _, id := range ch.Deleted {
			e.nodes = append(e.nodes, nodeUpdate{id: id})
		}
		e.policy = policy
		at := ch.At
		if at.IsZero() {
			at = s.now()
		}
		s.st.apply(ch.Rev, at, []effect{e})
	}
	s.metrics.nodes.Set(float64(s.st.count()))
	return nil
}

// Secrets: IDs, auth keys and node credentials.

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// secretEncoding writes secrets in lowercase letters and digits only, so a
// double click selects a whole key and no shell quoting is needed.
var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// secretLen is the length of an encoded 32-byte secret.
var secretLen = secretEncoding.EncodedLen(32)

func newSecret() (secret string, hash store.Hash) {
	b := make([]byte, 32)
	rand.Read(b)
	secret = secretEncoding.EncodeToString(b)
	return secret, sha256.Sum256([]byte(secret))
}

func hashEqual(a, b store.Hash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// splitToken parses "<prefix><id>_<secret>" where id is lowercase hex.
func splitToken(tok, prefix string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(tok, prefix)
	if !found {
		return "", "", false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '_':
			id, secret = rest[:i], rest[i+1:]
			return id, secret, id != "" && len(secret) == secretLen
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c == 'n':
		default:
			return "", "", false
		}
	}
	return "", "", false
}
