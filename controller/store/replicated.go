package store

import (
	"context"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Replicated is a Store that several controllers share (store/etcd). A
// controller over one cannot derive its in-memory state from its own
// commits, since the other replicas commit too: it follows the store's
// change feed instead, and learns of its own commits from it as well.
type Replicated interface {
	Store
	// Follow calls fn with the store's whole state (a Change with Reset
	// set) and then with every committed Update, in revision order, each
	// exactly once, until ctx is done or fn returns an error. When the
	// feed cannot resume where it stopped (the store compacted the
	// history it needed), fn gets a new Reset: nothing is lost, and no
	// change is delivered twice. Follow returns ctx's error or fn's.
	Follow(ctx context.Context, fn func(*Change) error) error
	// Campaign blocks until this replica is elected to do the work that
	// must happen once (expiry sweeps, key cleanup), or ctx is done. The
	// returned context is canceled when the leadership is lost (the
	// replica's session with the store lapsed) or resign is called.
	Campaign(ctx context.Context, id string) (leading context.Context, resign func(), err error)
	// Announce publishes this replica's URL for as long as ctx lasts and
	// the replica's session with the store lives; Replicas lists the
	// URLs announced now, sorted.
	Announce(ctx context.Context, id, url string) error
	Replicas(ctx context.Context) ([]string, error)
	// WatchReplicas calls fn with the announced URLs now and whenever
	// they change, until ctx is done.
	WatchReplicas(ctx context.Context, fn func([]string)) error
}

// Change is what one committed Update changed that the controller serves
// from memory (nodes and the policy), or the whole of it (Reset).
type Change struct {
	// Rev is the revision the Update committed as (Tx.Revision).
	Rev uint64
	// At is when the Update committed, by the clock of the replica that
	// committed it (zero in a Reset).
	At time.Time
	// Reset: Nodes is every node and Policy the policy in force (nil:
	// never set); the receiver replaces what it holds.
	Reset bool
	// Nodes were created or replaced; Deleted were removed.
	Nodes   []*Node
	Deleted []api.NodeID
	// Policy, when not nil, is the policy the Update set.
	Policy *Policy
}
