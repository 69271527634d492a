package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/metadata"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// errResync means the watch cannot resume where it stopped: the history it
// needs was compacted.
var errResync = errors.New("watch history compacted")

// Follow implements store.Replicated. It reads the whole state at one etcd
// revision, then watches the data keys from the next revision: etcd
// delivers every revision's events once and in order, and the watch
// resumes from the last revision applied after any interruption (a lost
// member, a leader election). Only when etcd has compacted that revision
// does it start again with a new Reset.
//
// Follow also keeps the replica's copy of the data that Updates read (see
// cache), from the same snapshot and events.
func (s *Store) Follow(ctx context.Context, fn func(*store.Change) error) error {
	defer s.cache.follow()()
	delay := newRetry()
	for {
		ch, at, err := s.snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.m.resets.WithLabelValues("snapshot_failed").Inc()
			if !sleep(ctx, delay.next()) {
				return ctx.Err()
			}
			continue
		}
		delay.reset()
		if err := fn(ch); err != nil {
			return err
		}
		s.m.applied.Set(float64(ch.Rev))
		err = s.watch(ctx, at, fn)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errResync):
			s.m.resets.WithLabelValues("compacted").Inc()
		default:
			return err
		}
	}
}

// snapshot reads every data key at one etcd revision into the cache and
// returns the nodes and the policy among them.
func (s *Store) snapshot(ctx context.Context) (*store.Change, int64, error) {
	ch := &store.Change{Reset: true}
	var at int64
	err := s.View(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		ch.Rev, at = t.rev, t.at
		kv := map[string][]byte{}
		if err := t.forEach(s.data, func(k string, v []byte) error {
			kv[k] = v
			return nil
		}); err != nil {
			return err
		}
		// Decoded from that copy, which nothing else sees yet.
		t.c = &cache{kv: kv}
		defer func() { t.c = nil }()
		if err := t.ForEachNode(func(n *store.Node) error {
			ch.Nodes = append(ch.Nodes, n)
			return nil
		}); err != nil {
			return err
		}
		p, err := t.Policy()
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			ch.Policy = p
		}
		s.cache.reset(kv, at, t.revMod, t.rev)
		return nil
	})
	return ch, at, err
}

// watch applies the data keys' events after etcd revision at until ctx is
// done, fn fails, or the history was compacted (errResync).
func (s *Store) watch(ctx context.Context, at int64, fn func(*store.Change) error) error {
	next := at + 1
	delay := newRetry()
	for {
		err := s.runWatch(ctx, s.data, func(wr clientv3.WatchResponse) error {
			if wr.CompactRevision != 0 {
				return errResync
			}
			if err := wr.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					return errResync
				}
				s.m.errors.WithLabelValues(errKind(err)).Inc()
				return errWatchEnded // resume from next
			}
			delay.reset()
			for len(wr.Events) > 0 {
				rev := wr.Events[0].Kv.ModRevision
				n := 1
				for n < len(wr.Events) && wr.Events[n].Kv.ModRevision == rev {
					n++
				}
				s.cache.apply(s, wr.Events[:n], rev)
				ch, committed, err := s.change(wr.Events[:n])
				if err != nil {
					return err
				}
				wr.Events = wr.Events[n:]
				if ch != nil {
					if err := fn(ch); err != nil {
						return err
					}
					s.m.applied.Set(float64(ch.Rev))
					if !committed.IsZero() {
						s.m.lag.Observe(max(0, time.Since(committed).Seconds()))
					}
				}
				next = rev + 1
			}
			if wr.Header.Revision >= next {
				next = max(next, wr.Header.Revision+1)
			}
			return nil
		}, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithProgressNotify())
		if errors.Is(err, errStalled) {
			delay.reset()
		} else if err != nil && !errors.Is(err, errWatchEnded) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !sleep(ctx, delay.next()) {
			return ctx.Err()
		}
	}
}

// errWatchEnded: etcd ended the watch (or its stream); start it again.
// errStalled: the watch may ride a member that stopped answering (see
// readWatch); start it again, on another.
var (
	errWatchEnded = errors.New("watch ended")
	errStalled    = errors.New("watch stalled")
)

// runWatch watches key and hands fn each response until fn fails or the
// watch ends (errWatchEnded). A watch can stall unseen: its stream rides
// one connection, and a member that stops answering with its connections
// open sends nothing more, which from here looks like a quiet store. So
// the watch is given up (errStalled) when etcd does not confirm it within
// Options.Attempt (the client's Watch waits for that as long as its
// context lasts), when it has been quiet for an Attempt and a progress
// request has no answer within another, and when the probes find a
// member lost.
func (s *Store) runWatch(ctx context.Context, key string, fn func(clientv3.WatchResponse) error, opts ...clientv3.OpOption) error {
	wctx, cancel := s.watchCtx(ctx)
	defer cancel()
	timer := time.AfterFunc(s.attempt, cancel)
	wch := s.cli.Watch(wctx, key, opts...)
	if !timer.Stop() && ctx.Err() == nil {
		s.m.resent.WithLabelValues("watch").Inc()
		return errStalled
	}
	lost := s.probe.lostMember()
	tick := time.NewTicker(s.attempt / 2)
	defer tick.Stop()
	heard := time.Now()
	var asked time.Time
	for {
		select {
		case <-lost:
			s.m.resent.WithLabelValues("watch").Inc()
			return errStalled
		case <-tick.C:
			switch {
			case !asked.IsZero() && time.Since(asked) >= s.attempt:
				s.m.resent.WithLabelValues("watch").Inc()
				return errStalled
			case asked.IsZero() && time.Since(heard) >= s.attempt:
				asked = time.Now()
				pctx, cancel := context.WithTimeout(wctx, s.attempt)
				s.cli.RequestProgress(pctx) // an error leaves asked set: the watch stalls
				cancel()
			}
		case wr, ok := <-wch:
			if !ok {
				return errWatchEnded
			}
			heard, asked = time.Now(), time.Time{}
			if err := fn(wr); err != nil {
				return err
			}
		}
	}
}

// change turns one etcd revision's events into a store.Change, with the
// time the replica that committed it wrote down. Revisions that no Update
// wrote (no revision key among them) give nil.
func (s *Store) change(evs []*clientv3.Event) (*store.Change, time.Time, error) {
	ch := &store.Change{}
	var committed time.Time
	ours := false
	for _, ev := range evs {
		k := strings.TrimPrefix(string(ev.Kv.Key), s.data)
		put := ev.Type == mvccpb.PUT
		switch {
		case k == "meta/revision" && put:
			v, err := parseUint(ev.Kv.Value)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("store revision: %w", err)
			}
			ch.Rev, ours = v, true
		case k == "meta/txn" && put:
			if f := strings.Fields(string(ev.Kv.Value)); len(f) == 3 {
				if ns, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					committed = time.Unix(0, ns)
				}
			}
		case strings.HasPrefix(k, "nodes/"):
			id := api.NodeID(strings.TrimPrefix(k, "nodes/"))
			if !put {
				ch.Deleted = append(ch.Deleted, id)
				continue
			}
			var n store.Node
			if err := json.Unmarshal(ev.Kv.Value, &n); err != nil {
				return nil, time.Time{}, fmt.Errorf("node %s: decode: %w", id, err)
			}
			ch.Nodes = append(ch.Nodes, &n)
		case k == "policy" && put:
			var p store.Policy
			if err := json.Unmarshal(ev.Kv.Value, &p); err != nil {
				return nil, time.Time{}, fmt.Errorf("policy: decode: %w", err)
			}
			ch.Policy = &p
		}
	}
	if !ours {
		return nil, time.Time{}, nil
	}
	ch.At = committed
	return ch, committed, nil
}

// sessionHolder keeps one live etcd session (a lease kept alive) for the
// replica's announcement and leadership, and replaces it when it lapses.
//
// The lease is kept alive here, not by the session: clientv3 keeps every
// lease alive on one long-lived stream, which stays on the member it was
// opened to even when the prober takes that member out of the client's
// rotation (gRPC lets a removed connection's streams run on). A member
// that stalls (its connection open, nothing answered) then holds the
// keep-alive until the lease lapses, and the replica loses its leadership
// although every other member answers. Each keep-alive here is a request
// of its own, bounded by Options.Attempt and sent again, to another
// member, when it gets no answer.
//
// No renewal saves a lease that etcd revokes: a member that led the
// cluster when it stalled for longer than the TTL may revoke it as it
// resumes (etcd-io/etcd#15247), although every renewal was answered by
// the new leader. The session then ends ("requested lease not found"),
// the next get opens another, and a replica campaigns again on it
// (controller.Server's election loop; TestStalledMember).
type sessionHolder struct {
	s      *Store
	mu     sync.Mutex
	sess   *session
	closed bool
	// life is the sessions' keep-alive context: close ends it.
	life context.Context
	end  context.CancelFunc
	// ended says why the last session that ended did.
	ended string
}

// session is a concurrency.Session (for concurrency.Election) whose
// liveness is the holder's keep-alive: done is closed once the lease may
// have lapsed. The session's own keep-alive runs too, and is ignored.
type session struct {
	*concurrency.Session
	done chan struct{}
	// why says why done was closed, once it is.
	why string
}

func (s *session) Done() <-chan struct{} { return s.done }

func newSessionHolder(s *Store) *sessionHolder {
	life, end := context.WithCancel(context.Background())
	return &sessionHolder{s: s, life: life, end: end}
}

// get returns the live session, or opens one: the lease is granted within
// ctx and Options.Timeout (a lease that etcd cannot grant is
// ErrUnavailable, never a wait that outlasts close).
func (h *sessionHolder) get(ctx context.Context) (*session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("store closed")
	}
	if h.sess != nil {
		select {
		case <-h.sess.done:
			h.sess = nil
		default:
			return h.sess, nil
		}
	}
	ttl := max(1, int(h.s.ttl/time.Second))
	gctx, cancel := context.WithTimeout(ctx, h.s.timeout)
	defer cancel()
	stop := context.AfterFunc(h.life, cancel) // close does not wait for the grant
	defer stop()
	sent := time.Now()
	lease, err := h.s.cli.Grant(gctx, int64(ttl))
	if err != nil {
		return nil, h.s.unavailable("open a session", err)
	}
	cs, err := concurrency.NewSession(h.s.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(ttl), concurrency.WithContext(h.life))
	if err != nil {
		return nil, h.s.unavailable("open a session", err)
	}
	h.sess = &session{Session: cs, done: make(chan struct{})}
	go h.keepAlive(h.sess, sent.Add(time.Duration(lease.TTL)*time.Second), time.Duration(ttl)*time.Second/3)
	return h.sess, nil
}

// keepAlive renews sess's lease every interval until the holder closes,
// and closes sess.done once the lease may have lapsed: etcd no longer
// knows it, or no renewal was answered before the time the last one
// granted (counted from when it was sent). A renewal that gets no answer
// within Options.Attempt is sent again at once: the client's balancer
// gives each its own stream on the next member in rotation.
func (h *sessionHolder) keepAlive(sess *session, expires time.Time, interval time.Duration) {
	var why string
	defer func() {
		h.mu.Lock()
		sess.why, h.ended = why, why
		h.mu.Unlock()
		close(sess.done)
	}()
	id := sess.Lease()
	for {
		if !sleep(h.life, time.Until(expires.Add(-2*interval))) {
			why = "the store closed"
			return
		}
		for {
			sent := time.Now()
			if !sent.Before(expires) {
				why = fmt.Sprintf("no renewal answered before the lease's time ran out at %s", expires.Format("15:04:05.000"))
				return // lapsed, as far as this replica can tell
			}
			deadline := sent.Add(h.s.attempt)
			if deadline.After(expires) {
				deadline = expires
			}
			actx, cancel := context.WithDeadline(h.life, deadline)
			resp, err := h.s.cli.KeepAliveOnce(actx, id)
			cancel()
			if err == nil {
				expires = sent.Add(time.Duration(resp.TTL) * time.Second)
				break
			}
			if h.life.Err() != nil {
				why = "the store closed"
				return
			}
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				why = fmt.Sprintf("a renewal sent at %s: %v", sent.Format("15:04:05.000"), err)
				return
			}
			if !sleep(h.life, 50*time.Millisecond) {
				why = "the store closed"
				return
			}
		}
	}
}

func (h *sessionHolder) close() error {
	h.end() // ends a grant in progress, and the keep-alive
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.sess == nil {
		return nil
	}
	// Revoking the lease removes the announcement and any leadership at
	// once rather than after the TTL. If etcd is gone the lease lapses.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := h.s.cli.Revoke(ctx, h.sess.Lease())
	h.sess = nil
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("close etcd session: %w", err)
	}
	return nil
}

// Campaign implements store.Replicated with concurrency.Election.
func (s *Store) Campaign(ctx context.Context, id string) (context.Context, func(), error) {
	sess, err := s.sess.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	e := concurrency.NewElection(sess.Session, s.prefix+"election/")
	if err := e.Campaign(ctx, id); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, s.unavailable("campaign", err)
	}
	leading, cancel := context.WithCancel(ctx)
	select {
	case <-sess.Done(): // the session lapsed while campaigning
		cancel()
		return leading, func() {}, nil
	default:
	}
	go func() {
		select {
		case <-sess.Done():
		case <-leading.Done():
		}
		cancel()
	}()
	resign := func() {
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		e.Resign(rctx)
	}
	return leading, resign, nil
}

func (s *Store) replicaPrefix() string { return s.prefix + "replicas/" }

// Announce implements store.Replicated: the URL is kept under the replica's
// session lease, put again under a new session if that one lapses, and
// deleted when ctx is done.
func (s *Store) Announce(ctx context.Context, id, url string) error {
	key := s.replicaPrefix() + id
	delay := newRetry()
	for {
		sess, err := s.sess.get(ctx)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, s.timeout)
			_, err = s.cli.Put(pctx, key, url, clientv3.WithLease(sess.Lease()))
			cancel()
			if err == nil {
				delay.reset()
				select {
				case <-ctx.Done():
					dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					s.cli.Delete(dctx, key)
					cancel()
					return ctx.Err()
				case <-sess.Done():
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !sleep(ctx, delay.next()) {
			return ctx.Err()
		}
	}
}

// Replicas implements store.Replicated.
func (s *Store) Replicas(ctx context.Context) ([]string, error) {
	urls, _, err := s.replicas(ctx)
	return urls, err
}

func (s *Store) replicas(ctx context.Context) ([]string, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.get(ctx, s.replicaPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, s.unavailable("list replicas", err)
	}
	urls := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		urls = append(urls, string(kv.Value))
	}
	slices.Sort(urls)
	return slices.Compact(urls), resp.Header.Revision, nil
}

// WatchReplicas implements store.Replicated.
func (s *Store) WatchReplicas(ctx context.Context, fn func([]string)) error {
	delay := newRetry()
	var last []string
	for {
		urls, at, err := s.replicas(ctx)
		if err == nil {
			if last == nil || !slices.Equal(urls, last) {
				fn(urls)
				last = urls
			}
			err := s.runWatch(ctx, s.replicaPrefix(), func(wr clientv3.WatchResponse) error {
				switch {
				case wr.Err() != nil || wr.CompactRevision != 0:
					return errWatchEnded
				case len(wr.Events) > 0:
					return errChanged
				}
				return nil
			}, clientv3.WithPrefix(), clientv3.WithRev(at+1))
			if errors.Is(err, errChanged) {
				delay.reset()
				continue
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !sleep(ctx, delay.next()) {
			return ctx.Err()
		}
	}
}

// watchCtx is the context of one watch: etcd ends it when its member
// loses the leader, and it rides a gRPC stream of its own. (The client
// puts the watches whose contexts carry the same metadata on one stream:
// a watch started again after its member stopped answering would join
// the old stream while any other watch kept it open.)
func (s *Store) watchCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "rustynet-watch", strconv.FormatUint(s.watches.Add(1), 10))
	return context.WithCancel(ctx)
}

// errChanged: the replicas changed; read them again.
var errChanged = errors.New("replicas changed")

// retry is a jittered exponential delay from 50 ms to 2 s.
type retry struct{ cur time.Duration }

func newRetry() *retry { return &retry{} }

func (r *retry) next() time.Duration {
	r.cur = min(max(2*r.cur, 50*time.Millisecond), 2*time.Second)
	return r.cur/2 + rand.N(r.cur/2+1)
}

func (r *retry) reset() { r.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type metrics struct {
	latency   *prometheus.HistogramVec
	conflicts prometheus.Counter
	behind    prometheus.Counter
	reads     *prometheus.CounterVec
	errors    *prometheus.CounterVec
	lag       prometheus.Histogram
	applied   prometheus.Gauge
	resets    *prometheus.CounterVec
	resent    *prometheus.CounterVec
	// memberUp and endpointChanges: see prober.
	memberUp        *prometheus.GaugeVec
	endpointChanges prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rustynet_controller_store_request_duration_seconds",
			Help:    "Time of one store transaction on etcd, retries included, by op (view, update).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"op"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_store_conflicts_total",
			Help: "Updates retried because another Update (of any replica) committed first.",
		}),
		behind: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_store_reads_behind_total",
			Help: "Reads of a transaction the etcd member asked had not applied its revision yet, sent on to the leader.",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_store_update_attempts_total",
			Help: "Attempts of an Update, by where it read (cache: the replica's copy of the data, kept by its watch; etcd: a read per key).",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_etcd_errors_total",
			Help: "Errors from etcd, by kind (timeout, unavailable, leader, no_space, compacted, too_large, other).",
		}, []string{"kind"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rustynet_controller_store_watch_lag_seconds",
			Help:    "From an Update's commit (by its replica's clock) to this replica applying it from the watch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rustynet_controller_store_applied_revision",
			Help: "The store revision this replica serves netmaps from.",
		}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_store_watch_resets_total",
			Help: "Times this replica reloaded the whole state, by reason (compacted: the watch's history was compacted; snapshot_failed: a reload attempt failed).",
		}, []string{"reason"}),
		resent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustynet_controller_store_requests_resent_total",
			Help: "Requests to etcd sent again after an attempt got no answer in time or a retryable error, by what (read, commit, watch: a watch started again because a member stopped answering).",
		}, []string{"what"}),
		memberUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rustynet_controller_etcd_member_up",
			Help: "1 if the etcd member at this endpoint answered its last linearizable probe, else 0 (only with probing on: several endpoints).",
		}, []string{"endpoint"}),
		endpointChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rustynet_controller_etcd_endpoint_changes_total",
			Help: "Times the set of etcd members this replica sends requests to changed, after probes.",
		}),
	}
	for _, what := range []string{"read", "commit", "watch"} {
		m.resent.WithLabelValues(what)
	}
	m.reads.WithLabelValues("cache")
	m.reads.WithLabelValues("etcd")
	for _, kind := range []string{"timeout", "unavailable", "leader", "no_space", "compacted", "too_large", "other"} {
		m.errors.WithLabelValues(kind)
	}
	reg.MustRegister(m.latency, m.conflicts, m.behind, m.reads, m.errors, m.lag, m.applied, m.resets, m.resent, m.memberUp, m.endpointChanges)
	return m
}
