package etcd

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// cache is this replica's copy of every data key, kept by Follow from the
// snapshot and the watch that feed the controller. An Update reads from it
// instead of asking etcd a key at a time: its transaction reads the copy at
// the etcd revision the copy has reached, and commits on condition that
// the revision key is still the one the copy holds, exactly the condition
// of an Update that reads from etcd. A copy that is behind only makes the
// condition fail; the Update then waits for the watch to bring the copy up
// to the commit that won and tries again. Without a follower (a Store that
// only writes, or one whose watch has stopped for longer than
// cacheWait) Updates read from etcd.
//
// With the copy a registration is one etcd round trip (the commit) instead
// of a dozen reads and the commit; the copy costs the replica about the
// size of its data in etcd.
type cache struct {
	mu        sync.RWMutex
	followers int               // Follow calls applying to the copy
	kv        map[string][]byte // data keys, full names
	at        int64             // etcd revision the copy is complete to (0: none yet)
	revMod    int64             // mod revision of the revision key in the copy (0: none)
	rev       uint64            // store revision in the copy
	moved     chan struct{}     // closed (and replaced) when at advances
}

// cacheWait bounds how long an Update waits for the copy to reach a
// revision before it reads from etcd instead.
const cacheWait = time.Second

func newCache() *cache { return &cache{moved: make(chan struct{})} }

func (c *cache) advanced() {
	close(c.moved)
	c.moved = make(chan struct{})
}

// follow counts a follower in; the func it returns counts it out. The
// copy is used while at least one follower applies to it.
func (c *cache) follow() func() {
	c.mu.Lock()
	c.followers++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.followers--
		if c.followers == 0 {
			// Nothing keeps it now; a later Follow starts afresh.
			c.kv, c.at, c.revMod, c.rev = nil, 0, 0, 0
		}
		c.advanced() // wake waiters: the copy may no longer be used
		c.mu.Unlock()
	}
}

// reset replaces the copy with a snapshot at etcd revision at, unless the
// copy is already further along (another follower's).
func (c *cache) reset(kv map[string][]byte, at, revMod int64, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at <= c.at {
		return
	}
	c.kv, c.at, c.revMod, c.rev = kv, at, revMod, rev
	c.advanced()
}

// apply adds one etcd revision's events (all with ModRevision at). A
// revision the copy has already applied is skipped.
func (c *cache) apply(s *Store, evs []*clientv3.Event, at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv == nil || at <= c.at {
		return
	}
	for _, ev := range evs {
		k := string(ev.Kv.Key)
		if ev.Type == mvccpb.DELETE {
			delete(c.kv, k)
			if k == s.revisionKey() {
				c.revMod, c.rev = 0, 0
			}
			continue
		}
		c.kv[k] = ev.Kv.Value
		if k == s.revisionKey() {
			if v, err := parseUint(ev.Kv.Value); err == nil {
				c.revMod, c.rev = ev.Kv.ModRevision, v
			}
		}
	}
	c.at = at
	c.advanced()
}

// rlockAt waits until the copy is in use and has applied etcd revision at
// (within cacheWait and ctx), and returns true with the read lock held.
func (c *cache) rlockAt(ctx context.Context, at int64) bool {
	timer := time.NewTimer(cacheWait)
	defer timer.Stop()
	for {
		c.mu.RLock()
		if c.followers == 0 || c.kv == nil {
			c.mu.RUnlock()
			return false
		}
		if c.at >= at {
			return true
		}
		moved := c.moved
		c.mu.RUnlock()
		select {
		case <-moved:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// ascend calls fn for every key of the copy under prefix, in key order.
// The caller holds the read lock.
func (c *cache) ascend(prefix string, fn func(k string, v []byte) error) error {
	var keys []string
	for k := range c.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(k, c.kv[k]); err != nil {
			return err
		}
	}
	return nil
}
