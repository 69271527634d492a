package controller

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// Replica work: what a controller does beside serving requests. Over a
// replicated store it announces its URL to the nodes, follows the other
// replicas' announcements, and competes in an election for the work that
// must happen once; a single controller always does that work.

// SweepRetention is how long an auth key is kept after it expired or was
// revoked; the sweep deletes it then.
const SweepRetention = 30 * 24 * time.Hour

// ReplicaConfig configures RunReplica.
type ReplicaConfig struct {
	// ID names this replica in the election and among the announced
	// replicas (unique per replica; the data dir's host name will do).
	ID string
	// URL is what nodes reach this replica at (https://HOST:PORT);
	// empty announces nothing.
	URL string
	// SweepEvery is how often the leader sweeps (default 1 h).
	SweepEvery time.Duration
}

// RunReplica does the replica's work until ctx is done.
func (s *Server) RunReplica(ctx context.Context, cfg ReplicaConfig) {
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Hour
	}
	if s.replicated == nil {
		s.metrics.leader.Set(1)
		s.sweepLoop(ctx, cfg.SweepEvery)
		s.metrics.leader.Set(0)
		return
	}
	done := make(chan struct{}, 2)
	if cfg.URL != "" {
		go func() {
			s.replicated.Announce(ctx, cfg.ID, cfg.URL)
			done <- struct{}{}
		}()
	}
	go func() {
		s.replicated.WatchReplicas(ctx, func(urls []string) {
			s.replicas.Store(&urls)
			s.log.Info("controller replicas", "urls", urls)
		})
		done <- struct{}{}
	}()
	for ctx.Err() == nil {
		leading, resign, err := s.replicated.Campaign(ctx, cfg.ID)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("election: campaign failed; retrying", "err", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		s.log.Info("elected to run the sweeps", "replica", cfg.ID)
		s.metrics.leader.Set(1)
		s.sweepLoop(leading, cfg.SweepEvery)
		s.metrics.leader.Set(0)
		resign()
		if ctx.Err() == nil {
			s.log.Warn("leadership lost (the replica's session with the store lapsed)", "replica", cfg.ID)
		}
	}
	<-done
	if cfg.URL != "" {
		<-done
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *Server) sweepLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("auth key sweep failed", "err", err)
		} else if n > 0 {
			s.log.Info("auth key sweep", "deleted", n, "retention", SweepRetention.String())
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// sweepBatch bounds the keys one sweep transaction deletes.
const sweepBatch = 50

// sweep deletes the auth keys that expired or were revoked more than
// SweepRetention ago, and returns how many.
func (s *Server) sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		// Look first, so that a sweep with nothing to do writes nothing
		// (a commit would advance the revision).
		due := false
		err := s.store.View(ctx, func(tx store.Tx) error {
			cutoff := s.now().Add(-SweepRetention)
			return tx.ForEachAuthKey(func(k *store.AuthKey) error {
				if k.ExpiresAt.Before(cutoff) || (k.RevokedAt != nil && k.RevokedAt.Before(cutoff)) {
					due = true
					return errEnough
				}
				return nil
			})
		})
		if err != nil && !errors.Is(err, errEnough) {
			return total, err
		}
		if !due {
			return total, nil
		}
		res, err := s.mutate(ctx, func(tx store.Tx) (effect, any, error) {
			cutoff := s.now().Add(-SweepRetention)
			var old []string
			err := tx.ForEachAuthKey(func(k *store.AuthKey) error {
				if k.ExpiresAt.Before(cutoff) || (k.RevokedAt != nil && k.RevokedAt.Before(cutoff)) {
					old = append(old, k.ID)
				}
				if len(old) == sweepBatch {
					return errEnough
				}
				return nil
			})
			if err != nil && !errors.Is(err, errEnough) {
				return effect{}, nil, err
			}
			for _, id := range old {
				if err := tx.DeleteAuthKey(id); err != nil {
					return effect{}, nil, err
				}
			}
			return effect{}, len(old), nil
		})
		if err != nil {
			return total, err
		}
		n := res.(int)
		total += n
		s.metrics.swept.Add(float64(n))
		if n < sweepBatch {
			return total, nil
		}
	}
}

var errEnough = errors.New("batch full")

// catchUp is how long a replica waits to apply a revision a node has seen
// on another replica (or a write it learned of from the store) before it
// answers.
const catchUp = 2 * time.Second

// authenticateFromStore is the replicated fallback of a credential the
// state does not know: the node may have registered through another
// replica a moment ago. If the store has it, wait for the state to apply
// it.
func (s *Server) authenticateFromStore(ctx context.Context, c credential) (*store.Node, error) {
	var rev uint64
	var found bool
	err := s.store.View(ctx, func(tx store.Tx) error {
		n, err := tx.Node(c.id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		found, rev = hashEqual(n.CredentialHash, c.hash), tx.Revision()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, catchUp)
	defer cancel()
	if !s.st.waitRev(wctx, rev) {
		return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: "this controller replica is catching up with the store; retry"}
	}
	n, _ := s.st.authenticate(c.id, c.hash)
	return n, nil
}

// Replicas returns the URLs of the replicas announced now (nil for a
// single controller).
func (s *Server) Replicas() []string {
	if p := s.replicas.Load(); p != nil {
		return *p
	}
	return nil
}
