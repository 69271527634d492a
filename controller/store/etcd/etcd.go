// Package etcd is the replicated Store, on etcd (go.etcd.io/etcd/client/v3):
// several controller replicas share one store, follow its change feed,
// elect one of them for the work that must happen once, and announce their
// URLs to the nodes.
//
// Every record is one key under Options.Prefix:
//
//	PREFIX data/meta/schema          schema version (decimal)
//	PREFIX data/meta/revision        the store revision (decimal)
//	PREFIX data/meta/txn             "<revision> <random id> <commit time, Unix ns>" of the last Update
//	PREFIX data/meta/counter/NAME    a counter (decimal)
//	PREFIX data/nodes/ID             a node (JSON)
//	PREFIX data/idx/INDEX/VALUE      a unique index entry: the node ID
//	PREFIX data/authkeys/ID          a pre-auth key (JSON)
//	PREFIX data/policy               the ACL policy (JSON)
//	PREFIX replicas/ID               a replica's URL, under its session's lease
//	PREFIX election/                 the election of the replica that sweeps
//
// Transactions are optimistic: an Update reads at one etcd revision, buffers
// its writes, and commits them in one etcd Txn on condition that the
// revision key is unchanged. Every Update writes that key, so any two
// Updates that overlap conflict and one retries: Updates are serializable
// across replicas, which is what keeps an address, a name or a single-use
// key from going to two nodes. (concurrency.STM does the same but has no
// range reads, which ForEachNode needs.)
package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// DefaultPrefix is where a controller keeps its keys unless told otherwise.
const DefaultPrefix = "/rustynet/"

// pageSize bounds the keys one range read returns.
const pageSize = 1000

// Options configure a Store.
type Options struct {
	// Prefix of every key (DefaultPrefix when empty). Two meshes may
	// share one etcd cluster under different prefixes.
	Prefix string
	// Timeout bounds one View or Update, its retries included (default
	// 5 s). When etcd does not answer in time the call fails with
	// store.ErrUnavailable.
	Timeout time.Duration
	// SessionTTL is the lease behind the replica's announcement and its
	// leadership (default 10 s): a replica that dies is forgotten, and
	// its leadership moves, within it.
	SessionTTL time.Duration
	// Attempt bounds one request to etcd (default 1 s). A request that
	// gets no answer in time is sent again, to another member when the
	// client has one, until Timeout: a commit only once it is known not to
	// have landed (see update).
	Attempt time.Duration
	// Probe, if set, is the client configuration to probe each of its
	// Endpoints with (see prober): the Store then keeps the client's
	// endpoints to the members that answer. Nil leaves the choice of
	// member to the client.
	Probe *clientv3.Config
	// ProbeEvery and ProbeTimeout pace the probes (DefaultProbeEvery,
	// DefaultProbeTimeout).
	ProbeEvery, ProbeTimeout time.Duration
	// Registerer receives the store's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Store is a store.Replicated on etcd.
type Store struct {
	cli      *clientv3.Client
	prefix   string
	data     string
	timeout  time.Duration
	attempt  time.Duration
	ttl      time.Duration
	probe    *prober
	watches  atomic.Uint64
	stop     context.CancelFunc
	migrated []string
	m        *metrics
	sess     *sessionHolder
	cache    *cache
	// lastAt is the etcd revision of the last commit this replica made, or
	// saw win over one of its Updates: the next Update reads the cache
	// once it has applied that revision.
	lastAt atomic.Int64
}

var _ store.Replicated = (*Store)(nil)

// Open returns a Store over cli (which the caller keeps and closes after
// the Store) and migrates the stored data to store.SchemaVersion. Several
// replicas may open one store at once: the migrations are transactions
// that run once.
func Open(ctx context.Context, cli *clientv3.Client, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Attempt <= 0 {
		o.Attempt = time.Second
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 10 * time.Second
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = DefaultProbeEvery
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	s := &Store{cli: cli, prefix: o.Prefix, data: o.Prefix + "data/", timeout: o.Timeout, attempt: min(o.Attempt, o.Timeout),
		ttl: o.SessionTTL, m: newMetrics(o.Registerer), cache: newCache(), stop: func() {}}
	s.sess = newSessionHolder(s)
	if o.Probe != nil && len(o.Probe.Endpoints) > 1 {
		p, err := newProber(cli, *o.Probe, s.revisionKey(), o.ProbeEvery, o.ProbeTimeout, s.m)
		if err != nil {
			return nil, fmt.Errorf("open etcd store %s: probe clients: %w", o.Prefix, err)
		}
		pctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.run(pctx) }()
		s.probe = p
		s.stop = sync.OnceFunc(func() { stop(); <-done; p.close() })
	}
	if err := s.migrate(ctx); err != nil {
		s.stop()
		return nil, fmt.Errorf("open etcd store %s: %w", o.Prefix, err)
	}
	return s, nil
}

// Migrated lists the migrations Open applied, in order.
func (s *Store) Migrated() []string { return s.migrated }

// Client is the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) key(parts ...string) string { return s.data + strings.Join(parts, "/") }

func (s *Store) revisionKey() string { return s.key("meta", "revision") }

// A migration moves the stored data from version to-1 to version to. fn
// changes one batch of records (an etcd transaction has a bounded number of
// operations) and says whether it is done; each batch is a transaction, and
// the one that finishes also records the new version. A batch that changes
// records commits as a store revision, so that replicas already running
// see the change in their feed; one that changes none leaves the revision
// as it is.
type migration struct {
	to   uint64
	name string
	fn   func(t *tx) (changed int, done bool, err error)
}

// errBump: a migration's batch changed records, so it commits again as a
// store revision.
var errBump = errors.New("the batch changes records")

// renameBatch is how many nodes one transaction of the schema-2 migration
// renames: PutNode rewrites the node and its index entries, 7 operations
// for a node with two addresses, so 10 stay well under etcd's default
// --max-txn-ops of 128.
const renameBatch = 10

var migrations = []migration{
	// Version 1 is the layout in the package comment; an empty store
	// needs no keys to have it.
	{to: 1, name: "record the schema version", fn: func(*tx) (int, bool, error) { return 0, true, nil }},
	{to: 2, name: "rename nodes whose name has the form of a node ID", fn: func(t *tx) (int, bool, error) {
		renamed, err := store.RenameIDShapedNames(t, renameBatch)
		return len(renamed), len(renamed) < renameBatch, err
	}},
}

// SchemaVersion reads the schema version recorded in the store.
func (s *Store) SchemaVersion(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.get(ctx, s.key("meta", "schema"))
	if err != nil {
		return 0, s.unavailable("read the schema version", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return parseUint(resp.Kvs[0].Value)
}

func (s *Store) migrate(ctx context.Context) error {
	current, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > store.SchemaVersion {
		return fmt.Errorf("%w: schema version %d, this build knows up to %d; run a newer controller or restore a backup taken before the upgrade",
			store.ErrNewerSchema, current, store.SchemaVersion)
	}
	for _, m := range migrations {
		if m.to <= current {
			continue
		}
		total, ran, bump := 0, false, false
		for done := false; !done; {
			changed := 0
			_, err := s.update(ctx, bump, func(t *tx) error {
				changed, done = 0, true
				v, err := t.getUint(s.key("meta", "schema"))
				if err != nil || v >= m.to {
					return err // another replica ran it
				}
				if changed, done, err = m.fn(t); err != nil {
					return err
				}
				if changed > 0 && !bump {
					return errBump
				}
				if done {
					ran = true
					t.put(s.key("meta", "schema"), strconv.FormatUint(m.to, 10))
				}
				return nil
			})
			if errors.Is(err, errBump) {
				bump, done = true, false
				continue
			}
			if err != nil {
				return fmt.Errorf("migrate schema %d -> %d (%s): %w", m.to-1, m.to, m.name, err)
			}
			total += changed
		}
		if ran || total > 0 {
			s.migrated = append(s.migrated, fmt.Sprintf("%d: %s (%d records changed)", m.to, m.name, total))
		}
		current = m.to
	}
	if current != store.SchemaVersion {
		return fmt.Errorf("the store is at schema version %d and no migration takes it to %d", current, store.SchemaVersion)
	}
	return nil
}

// View implements store.Store: fn reads one consistent etcd revision.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	defer func() { s.m.latency.WithLabelValues("view").Observe(time.Since(start).Seconds()) }()
	resp, err := s.get(ctx, s.revisionKey())
	if err != nil {
		return s.unavailable("read", err)
	}
	rev, err := revisionOf(resp)
	if err != nil {
		return err
	}
	t := &tx{s: s, ctx: ctx, rev: rev, at: resp.Header.Revision, revMod: modRevisionOf(resp), readOnly: true}
	if err := fn(t); err != nil {
		return s.txErr(err)
	}
	return nil
}

// Update implements store.Store. It retries fn on a conflict with another
// Update (of this replica or another) until Options.Timeout.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.update(ctx, true, func(t *tx) error { return fn(t) })
}

// errConflict: another Update took the revision a transaction read at.
var errConflict = errors.New("conflict")

// update runs fn in an optimistic transaction. With bump (every Update) it
// commits as the next store revision; without (migrations) it leaves the
// revision as it is, and the change feed does not see it.
//
// Every request has Options.Attempt to answer (see get). A commit whose
// answer was lost may still land, so fn does not run again until the
// commit is known not to have landed: until then update sends the same
// Txn again (every send has the one condition, so at most one applies),
// and reads meta/txn to learn which Update took the revision (outcome).
func (s *Store) update(ctx context.Context, bump bool, fn func(*tx) error) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	defer func() { s.m.latency.WithLabelValues("update").Observe(time.Since(start).Seconds()) }()
	for {
		t, err := s.prepare(ctx, bump, fn)
		if errors.Is(err, errConflict) {
			s.m.conflicts.Inc()
			continue
		}
		if err != nil {
			return 0, err
		}
		rev, err := s.commit(ctx, bump, t)
		if errors.Is(err, errConflict) {
			s.m.conflicts.Inc()
			continue
		}
		return rev, err
	}
}

// prepare reads the state and runs fn on it: from the replica's copy of
// the data when it is current, else from etcd.
func (s *Store) prepare(ctx context.Context, bump bool, fn func(*tx) error) (*tx, error) {
	if bump && s.cache.rlockAt(ctx, s.lastAt.Load()) {
		s.m.reads.WithLabelValues("cache").Inc()
		c := s.cache
		t := &tx{s: s, ctx: ctx, rev: c.rev + 1, at: c.at, revMod: c.revMod, writes: map[string]*string{}, c: c}
		err := fn(t)
		t.c = nil // the copy moves on once unlocked
		c.mu.RUnlock()
		if err != nil {
			// A refusal stands only if the copy was current: a key
			// another replica has just written may not be in it yet.
			resp, gerr := s.get(ctx, s.revisionKey(), clientv3.WithKeysOnly())
			if gerr != nil {
				return nil, s.unavailable("read", gerr)
			}
			if mod := modRevisionOf(resp); mod != t.revMod {
				s.saw(mod)
				return nil, errConflict
			}
			return nil, s.txErr(err)
		}
		return t, nil
	}
	s.m.reads.WithLabelValues("etcd").Inc()
	resp, err := s.get(ctx, s.revisionKey())
	if err != nil {
		return nil, s.unavailable("read", err)
	}
	cur, err := revisionOf(resp)
	if err != nil {
		return nil, err
	}
	t := &tx{s: s, ctx: ctx, rev: cur + 1, at: resp.Header.Revision, revMod: modRevisionOf(resp), writes: map[string]*string{}}
	if err := fn(t); err != nil {
		return nil, s.txErr(err)
	}
	return t, nil
}

// commit commits t's writes on condition that the revision key is as t
// read it: t.rev, or errConflict when another Update took the revision.
func (s *Store) commit(ctx context.Context, bump bool, t *tx) (uint64, error) {
	id := randomID()
	if bump {
		t.put(s.revisionKey(), strconv.FormatUint(t.rev, 10))
		t.put(s.key("meta", "txn"), fmt.Sprintf("%d %s %d", t.rev, id, time.Now().UnixNano()))
	}
	ops := make([]clientv3.Op, 0, len(t.writes))
	for _, k := range slices.Sorted(maps.Keys(t.writes)) {
		if v := t.writes[k]; v != nil {
			ops = append(ops, clientv3.OpPut(k, *v))
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	delay := newRetry()
	sent := false // a send whose answer was lost
	for {
		actx, acancel := s.attemptCtx(ctx)
		tr, err := s.cli.Txn(actx).If(clientv3.Compare(clientv3.ModRevision(s.revisionKey()), "=", t.revMod)).Then(ops...).
			Else(clientv3.OpGet(s.revisionKey(), clientv3.WithKeysOnly())).Commit()
		acancel()
		if err == nil && tr.Succeeded {
			s.saw(tr.Header.Revision)
			return t.rev, nil
		}
		if err == nil {
			if rs := tr.Responses; len(rs) == 1 {
				if kvs := rs[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
					s.saw(kvs[0].ModRevision) // the commit that won
				}
			}
			if !sent {
				return 0, errConflict
			}
			// The revision is taken: perhaps by an earlier send.
			return s.settle(ctx, t, id, fmt.Errorf("%w: etcd commit: an earlier send's answer was lost, and which Update took revision %d could not be read in time", store.ErrUnknownOutcome, t.rev))
		}
		err = s.commitErr(err, len(ops))
		if !bump || !errors.Is(err, store.ErrUnknownOutcome) {
			return 0, err
		}
		sent = true
		switch s.outcome(ctx, t, id) {
		case committed:
			return t.rev, nil
		case notCommitted:
			return 0, errConflict
		}
		// No Update has taken the revision yet, or etcd did not say:
		// send the same Txn again.
		if ctx.Err() != nil || !sleep(ctx, delay.next()) {
			return 0, err
		}
		s.m.resent.WithLabelValues("commit").Inc()
	}
}

// settle learns whether t's commit (one of whose sends had its answer
// lost) took its revision, now that the revision is taken; err if it
// cannot tell by the deadline.
func (s *Store) settle(ctx context.Context, t *tx, id string, err error) (uint64, error) {
	delay := newRetry()
	for {
		switch s.outcome(ctx, t, id) {
		case committed:
			return t.rev, nil
		case notCommitted:
			return 0, errConflict
		}
		if !sleep(ctx, delay.next()) {
			return 0, err
		}
	}
}

// get is one read, sent again while etcd does not answer within
// Options.Attempt, or answers with an error that another member (or the
// same, after a new leader) may not give, until ctx is done. A read
// changes nothing, so sending it twice is safe.
func (s *Store) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	delay := newRetry()
	for {
		actx, cancel := s.attemptCtx(ctx)
		resp, err := s.cli.Get(actx, key, opts...)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return resp, err
		}
		s.m.errors.WithLabelValues(errKind(err)).Inc()
		if !sleep(ctx, delay.next()) {
			return nil, err
		}
		s.m.resent.WithLabelValues("read").Inc()
	}
}

// attemptCtx bounds one request: Options.Attempt, and the member must
// have a leader (a member cut off from the others says so at once rather
// than waiting for one).
func (s *Store) attemptCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), s.attempt)
}

// retryable: errors another attempt may not meet.
func retryable(err error) bool {
	switch errKind(err) {
	case "timeout", "unavailable", "leader":
		return true
	}
	return false
}

// loadChunk bounds the nodes (or keys, or counters) one transaction of
// Load writes, under etcd's default --max-txn-ops of 128.
const loadChunk = 12

// Load implements store.Loader: the records in transactions of a few each,
// which leave the revision at 0 (the change feed ignores them), then the
// revision, store.RestoredRevision(e, now), in a last one. Run it with no replica serving
// this prefix.
func (s *Store) Load(ctx context.Context, e *store.Exported) error {
	if err := s.View(ctx, store.CheckEmpty); err != nil {
		return err
	}
	write := func(bump bool, fn func(*tx) error) error {
		_, err := s.update(ctx, bump, func(t *tx) error {
			if t.rev != 1 {
				return fmt.Errorf("the store was written to during the restore (revision %d)", t.rev-1)
			}
			return fn(t)
		})
		return err
	}
	for i := 0; i < len(e.Nodes); i += loadChunk {
		if err := write(false, func(t *tx) error { return store.LoadInto(t, e.Nodes[i:min(i+loadChunk, len(e.Nodes))], nil, nil, nil) }); err != nil {
			return err
		}
	}
	for i := 0; i < len(e.AuthKeys); i += 5 * loadChunk {
		if err := write(false, func(t *tx) error {
			return store.LoadInto(t, nil, e.AuthKeys[i:min(i+5*loadChunk, len(e.AuthKeys))], nil, nil)
		}); err != nil {
			return err
		}
	}
	names := slices.Sorted(maps.Keys(e.Counters))
	for i := 0; i < len(names); i += 5 * loadChunk {
		chunk := map[string]uint64{}
		for _, n := range names[i:min(i+5*loadChunk, len(names))] {
			chunk[n] = e.Counters[n]
		}
		if err := write(false, func(t *tx) error { return store.LoadInto(t, nil, nil, chunk, nil) }); err != nil {
			return err
		}
	}
	return write(true, func(t *tx) error {
		t.rev = store.RestoredRevision(e, time.Now())
		return store.LoadInto(t, nil, nil, nil, e.Policy)
	})
}

// Backup implements store.Store: an etcd snapshot of the whole member's
// database (every key, not only this prefix), as `etcdutl snapshot
// restore` reads it. store.Export writes the logical form that restores
// into either store.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rc, err := s.cli.Snapshot(ctx)
	if err != nil {
		return 0, s.unavailable("snapshot", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("etcd snapshot: %w", err)
	}
	return n, nil
}

// Close implements store.Store: it ends the replica's session (its
// announcement and any leadership go at once). The client stays open.
func (s *Store) Close() error {
	err := s.sess.close()
	s.stop()
	return err
}

type result int

const (
	unknown result = iota
	committed
	notCommitted
	pending // no Update has taken the revision yet
)

// outcome learns whether t's commit, a send of which had its answer
// lost, took t's revision. meta/txn names the Update that wrote it last,
// and every Update is conditional on the revision key it read, so the
// first write of meta/txn after t.revMod is the one Update that took
// t.rev: if there is none yet, ours has not landed (and may still);
// otherwise it is ours (committed) or another's (ours never can).
func (s *Store) outcome(ctx context.Context, t *tx, id string) result {
	actx, cancel := s.attemptCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(actx, s.key("meta", "txn"))
	if err != nil {
		return unknown
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].ModRevision <= t.revMod {
		return pending
	}
	rev, by, ok := parseTxn(resp.Kvs[0].Value)
	if !ok {
		return unknown
	}
	if rev != t.rev {
		// Later Updates followed the one that took t.rev: read it
		// from the history.
		wch := s.cli.Watch(actx, s.key("meta", "txn"), clientv3.WithRev(t.revMod+1))
		wr, open := <-wch
		if !open || wr.Err() != nil || len(wr.Events) == 0 {
			return unknown
		}
		if rev, by, ok = parseTxn(wr.Events[0].Kv.Value); !ok || rev != t.rev {
			return unknown
		}
	}
	if by == id {
		return committed
	}
	return notCommitted
}

// parseTxn reads meta/txn: "<revision> <id> <commit time>".
func parseTxn(v []byte) (uint64, string, bool) {
	f := strings.Fields(string(v))
	if len(f) < 2 {
		return 0, "", false
	}
	rev, err := strconv.ParseUint(f[0], 10, 64)
	return rev, f[1], err == nil
}

// saw raises lastAt to at.
func (s *Store) saw(at int64) {
	for {
		cur := s.lastAt.Load()
		if at <= cur || s.lastAt.CompareAndSwap(cur, at) {
			return
		}
	}
}

// modRevisionOf is the mod revision of the revision key in resp (0: none).
func modRevisionOf(resp *clientv3.GetResponse) int64 {
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

func revisionOf(resp *clientv3.GetResponse) (uint64, error) {
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	v, err := parseUint(resp.Kvs[0].Value)
	if err != nil {
		return 0, fmt.Errorf("store revision: %w", err)
	}
	return v, nil
}

func parseUint(b []byte) (uint64, error) {
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stored value %q is not a decimal integer", truncate(string(b), 32))
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// unavailable wraps an error of a call that wrote nothing.
func (s *Store) unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	s.m.errors.WithLabelValues(errKind(err)).Inc()
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcd %s: %w", what, err)
	}
	return fmt.Errorf("%w: etcd %s: %v", store.ErrUnavailable, what, err)
}

// txErr passes fn's own errors through and wraps etcd's.
func (s *Store) txErr(err error) error {
	var e *etcdError
	if errors.As(err, &e) {
		return s.unavailable(e.what, e.err)
	}
	return err
}

// commitErr classifies an error of the commit Txn: those that etcd
// returns before applying anything are definite; any other may have
// committed.
func (s *Store) commitErr(err error, ops int) error {
	s.m.errors.WithLabelValues(errKind(err)).Inc()
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%w: %d operations: %v", store.ErrTooLarge, ops, err)
	case errors.Is(err, rpctypes.ErrNoSpace):
		return fmt.Errorf("%w: etcd's space quota is exhausted (raise --quota-backend-bytes, compact and defragment, then disarm the alarm): %v", store.ErrNoSpace, err)
	}
	return fmt.Errorf("%w: etcd commit: %v", store.ErrUnknownOutcome, err)
}

func errKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, rpctypes.ErrNoSpace):
		return "no_space"
	case errors.Is(err, rpctypes.ErrCompacted):
		return "compacted"
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return "too_large"
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged):
		return "leader"
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return "unavailable"
	}
	return "other"
}

// etcdError marks an etcd read failure inside a transaction function, so
// that it surfaces as store.ErrUnavailable even if fn wraps it.
type etcdError struct {
	what string
	err  error
}

func (e *etcdError) Error() string { return fmt.Sprintf("etcd %s: %v", e.what, e.err) }
func (e *etcdError) Unwrap() error { return store.ErrUnavailable }

// tx is a transaction: reads at one etcd revision, through its own
// buffered writes.
type tx struct {
	s        *Store
	ctx      context.Context
	rev      uint64
	at       int64
	revMod   int64 // mod revision of the revision key at at (0: none)
	readOnly bool
	// c, when set, is the replica's copy of the data at at, read-locked
	// for the transaction's reads (see cache).
	c      *cache
	writes map[string]*string // nil value: delete
}

func (t *tx) Revision() uint64 { return t.rev }

func (t *tx) put(k, v string) { t.writes[k] = &v }
func (t *tx) del(k string)    { t.writes[k] = nil }

func (t *tx) writable() error {
	if t.readOnly {
		return errors.New("write in a read-only transaction")
	}
	return nil
}

// read is a range read at the transaction's revision. The revision is
// history, the same on every member that has applied it, so the member the
// client asks serves it from its own copy (a serializable read, no round
// to the leader); a member that has not applied it yet refuses it as a
// future revision, and the read goes through the leader instead.
func (t *tx) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	opts = append(opts, clientv3.WithRev(t.at))
	resp, err := t.s.get(t.ctx, key, append(opts, clientv3.WithSerializable())...)
	if errors.Is(err, rpctypes.ErrFutureRev) {
		t.s.m.behind.Inc()
		resp, err = t.s.get(t.ctx, key, opts...)
	}
	return resp, err
}

// get reads one key: (nil, false) if it does not exist.
func (t *tx) get(k string) ([]byte, bool, error) {
	if v, ok := t.writes[k]; ok {
		if v == nil {
			return nil, false, nil
		}
		return []byte(*v), true, nil
	}
	if t.c != nil {
		v, ok := t.c.kv[k]
		return v, ok, nil
	}
	resp, err := t.read(k)
	if err != nil {
		return nil, false, &etcdError{what: "read " + strings.TrimPrefix(k, t.s.data), err: err}
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

func (t *tx) getUint(k string) (uint64, error) {
	v, ok, err := t.get(k)
	if err != nil || !ok {
		return 0, err
	}
	return parseUint(v)
}

func (t *tx) getJSON(k string, v any) error {
	data, ok, err := t.get(k)
	if err != nil {
		return err
	}
	if !ok {
		return store.ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func (t *tx) putJSON(k string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	t.put(k, string(data))
	return nil
}

// forEach calls fn for every key under prefix, in key order, as this
// transaction sees them (etcd's keys at its revision, then its writes).
func (t *tx) forEach(prefix string, fn func(k string, v []byte) error) error {
	var pending []string // written keys under prefix, in order
	for k := range t.writes {
		if strings.HasPrefix(k, prefix) {
			pending = append(pending, k)
		}
	}
	sort.Strings(pending)
	// emit passes on the written keys up to limit (all of them if all).
	emit := func(limit string, all bool) error {
		for len(pending) > 0 && (all || pending[0] <= limit) {
			k := pending[0]
			pending = pending[1:]
			if v := t.writes[k]; v != nil {
				if err := fn(k, []byte(*v)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	visit := func(k string, v []byte) error {
		if err := emit(k, false); err != nil {
			return err
		}
		if _, written := t.writes[k]; written {
			return nil // passed on (or deleted) from the writes
		}
		return fn(k, v)
	}
	if t.c != nil {
		if err := t.c.ascend(prefix, visit); err != nil {
			return err
		}
		return emit("", true)
	}
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		resp, err := t.read(from, clientv3.WithRange(end), clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return &etcdError{what: "range " + strings.TrimPrefix(prefix, t.s.data), err: err}
		}
		for _, kv := range resp.Kvs {
			if err := visit(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return emit("", true)
}

func (t *tx) nodeKey(id api.NodeID) string { return t.s.key("nodes", string(id)) }

func (t *tx) Node(id api.NodeID) (*store.Node, error) {
	var n store.Node
	if err := t.getJSON(t.nodeKey(id), &n); err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return &n, nil
}

var indexes = map[string]bool{store.IndexMachineKey: true, store.IndexNodeKey: true, store.IndexName: true, store.IndexAddress: true}

func (t *tx) indexKey(index, value string) string { return t.s.key("idx", index, value) }

func (t *tx) NodeIDBy(index, value string) (api.NodeID, error) {
	if !indexes[index] {
		return "", fmt.Errorf("unknown index %q", index)
	}
	v, ok, err := t.get(t.indexKey(index, value))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s %s: %w", index, value, store.ErrNotFound)
	}
	return api.NodeID(v), nil
}

// indexEntries lists the unique index entries of n.
func indexEntries(n *store.Node) map[string][]string {
	addrs := make([]string, len(n.Addresses))
	for i, p := range n.Addresses {
		addrs[i] = p.Addr().String()
	}
	return map[string][]string{
		store.IndexMachineKey: {n.MachineKey.String()},
		store.IndexNodeKey:    {n.NodeKey.String()},
		store.IndexName:       {n.Name},
		store.IndexAddress:    addrs,
	}
}

func (t *tx) PutNode(n *store.Node) error {
	if err := t.writable(); err != nil {
		return err
	}
	if n.ID == "" {
		return errors.New("put node: empty ID")
	}
	old, err := t.Node(n.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		return err
	}
	entries := indexEntries(n)
	for index, values := range entries {
		for _, v := range values {
			owner, ok, err := t.get(t.indexKey(index, v))
			if err != nil {
				return err
			}
			if ok && string(owner) != string(n.ID) {
				return &store.ConflictError{Field: index, Value: v, Owner: api.NodeID(owner)}
			}
		}
	}
	if old != nil {
		if err := t.deleteIndexEntries(old); err != nil {
			return err
		}
	}
	for index, values := range entries {
		for _, v := range values {
			t.put(t.indexKey(index, v), string(n.ID))
		}
	}
	return t.putJSON(t.nodeKey(n.ID), n)
}

func (t *tx) deleteIndexEntries(n *store.Node) error {
	for index, values := range indexEntries(n) {
		for _, v := range values {
			k := t.indexKey(index, v)
			owner, ok, err := t.get(k)
			if err != nil {
				return err
			}
			if ok && string(owner) == string(n.ID) {
				t.del(k)
			}
		}
	}
	return nil
}

func (t *tx) DeleteNode(id api.NodeID) error {
	if err := t.writable(); err != nil {
		return err
	}
	n, err := t.Node(id)
	if err != nil {
		return err
	}
	if err := t.deleteIndexEntries(n); err != nil {
		return err
	}
	t.del(t.nodeKey(id))
	return nil
}

func (t *tx) ForEachNode(fn func(*store.Node) error) error {
	prefix := t.s.key("nodes") + "/"
	return t.forEach(prefix, func(k string, v []byte) error {
		var n store.Node
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("node %s: decode: %w", strings.TrimPrefix(k, prefix), err)
		}
		return fn(&n)
	})
}

func (t *tx) authKeyKey(id string) string { return t.s.key("authkeys", id) }

func (t *tx) AuthKey(id string) (*store.AuthKey, error) {
	var k store.AuthKey
	if err := t.getJSON(t.authKeyKey(id), &k); err != nil {
		return nil, fmt.Errorf("auth key %s: %w", id, err)
	}
	return &k, nil
}

func (t *tx) PutAuthKey(k *store.AuthKey) error {
	if err := t.writable(); err != nil {
		return err
	}
	if k.ID == "" {
		return errors.New("put auth key: empty ID")
	}
	return t.putJSON(t.authKeyKey(k.ID), k)
}

func (t *tx) DeleteAuthKey(id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, ok, err := t.get(t.authKeyKey(id))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("auth key %s: %w", id, store.ErrNotFound)
	}
	t.del(t.authKeyKey(id))
	return nil
}

func (t *tx) ForEachAuthKey(fn func(*store.AuthKey) error) error {
	prefix := t.s.key("authkeys") + "/"
	return t.forEach(prefix, func(k string, v []byte) error {
		var a store.AuthKey
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("auth key %s: decode: %w", strings.TrimPrefix(k, prefix), err)
		}
		return fn(&a)
	})
}

func (t *tx) Policy() (*store.Policy, error) {
	var p store.Policy
	if err := t.getJSON(t.s.key("policy"), &p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &p, nil
}

func (t *tx) PutPolicy(p *store.Policy) error {
	if err := t.writable(); err != nil {
		return err
	}
	return t.putJSON(t.s.key("policy"), p)
}

func (t *tx) counterKey(name string) string { return t.s.key("meta", "counter", name) }

func (t *tx) Counter(name string) (uint64, error) {
	return t.getUint(t.counterKey(name))
}

func (t *tx) SetCounter(name string, v uint64) error {
	if err := t.writable(); err != nil {
		return err
	}
	t.put(t.counterKey(name), strconv.FormatUint(v, 10))
	return nil
}

func (t *tx) ForEachCounter(fn func(name string, v uint64) error) error {
	prefix := t.s.key("meta", "counter") + "/"
	return t.forEach(prefix, func(k string, v []byte) error {
		n, err := parseUint(v)
		if err != nil {
			return fmt.Errorf("counter %s: %w", strings.TrimPrefix(k, prefix), err)
		}
		return fn(strings.TrimPrefix(k, prefix), n)
	})
}
