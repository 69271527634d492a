package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/control"
	"github.com/rustynet/rustynet/node/key"
	"github.com/rustynet/rustynet/node/localapi"
)

// Key rotation is crash-safe and idempotent. The new key is saved in
// state.json as pending before it is sent; the controller's confirmation
// (its answer, or a netmap that shows the key) promotes it to the node's
// own. A lost answer leaves the key pending: the node sends it again
// between netmap polls and when it starts, and the controller answers at
// once for a key it already holds. A netmap that shows a key for this node
// that the node neither uses nor has pending (a state dir restored from
// before a rotation) makes the node restore its key at the controller.
// One rotation runs at a time.

// The steps of a rotation, as the test hook sees them (SetRotationHook in
// export_test.go).
const (
	// stepPendingSaved: the new key is in state.json as pending; nothing
	// was sent.
	stepPendingSaved = "pending-saved"
	// stepSent: the controller answered the request 200: it holds the
	// key. The answer is not checked yet.
	stepSent = "sent"
	// stepConfirmed: the answer names the pending key.
	stepConfirmed = "confirmed"
	// stepPromoted: state.json holds the key as the node's own; the
	// dataplane still runs the old one.
	stepPromoted = "promoted"
)

// step runs the test hook for a step of a rotation. The hook's error
// stands for a crash there: the node writes nothing more and keeps the
// rotation slot, as a killed process would.
func (n *Node) step(name string) error {
	h := n.hook.Load()
	if h == nil {
		return nil
	}
	if err := (*h)(name); err != nil {
		n.crashed.Store(true)
		return fmt.Errorf("key rotation stopped at %s: %w", name, err)
	}
	return nil
}

var errCrashed = errors.New("not written: the node crashed at a test hook")

// save writes a file of the state dir, unless a test hook crashed the
// node.
func (n *Node) save(name string, v any) error {
	if n.crashed.Load() {
		return errCrashed
	}
	return saveJSON(n.cfg.StateDir, name, v)
}

// updateStateLocked saves a copy of the state changed by change, and
// makes it the node's state once it is on disk.
func (n *Node) updateStateLocked(change func(p *persistent)) error {
	next := *n.st
	change(&next)
	if err := n.save(stateFile, &next); err != nil {
		return err
	}
	n.st = &next
	return nil
}

// beginRotation takes the rotation slot, waiting for a rotation under way
// to end.
func (n *Node) beginRotation(ctx context.Context) error {
	select {
	case n.rotation <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("another key rotation is under way: %w", ctx.Err())
	}
	n.mu.Lock()
	n.rotating = true
	n.mu.Unlock()
	return nil
}

// tryBeginRotation takes the rotation slot if it is free.
func (n *Node) tryBeginRotation() bool {
	select {
	case n.rotation <- struct{}{}:
	default:
		return false
	}
	n.mu.Lock()
	n.rotating = true
	n.mu.Unlock()
	return true
}

// endRotation gives the slot back, and promotes the pending key if a
// netmap that arrived during the rotation shows the controller holds it.
// A node that crashed at a test hook keeps the slot: it does nothing more.
func (n *Node) endRotation() {
	if n.crashed.Load() {
		return
	}
	n.mu.Lock()
	n.rotating = false
	if promoted, err := n.promoteHeldLocked(); err != nil {
		n.log.Error("promoting the pending node key", "err", err)
	} else if promoted {
		if err := n.reconfigureLocked(); err != nil {
			n.log.Error("switching the dataplane to the new node key", "err", err)
		}
	}
	n.mu.Unlock()
	<-n.rotation
}

// RotateKey implements localapi.Agent: a new node key, saved as pending,
// then sent to the controller (which pushes it to the peers), then the
// node's own. A pending key from an earlier rotation is sent again rather
// than a new one. If the controller's answer is lost, the key stays
// pending and the error wraps localapi.ErrRotationPending; the node
// completes the rotation when the controller answers.
func (n *Node) RotateKey(ctx context.Context) (api.NodePublic, error) {
	if wait := n.client.RetryIn(api.PathRotateKey); wait > 0 {
		return api.NodePublic{}, fmt.Errorf("the controller asked this node to wait before it rotates its key again: retry in %d s", int((wait+time.Second-1)/time.Second))
	}
	if err := n.beginRotation(ctx); err != nil {
		return api.NodePublic{}, err
	}
	defer n.endRotation()
	n.mu.Lock()
	switch {
	case n.st == nil:
		n.mu.Unlock()
		return api.NodePublic{}, errors.New("the node is not running")
	case n.st.Credential == "":
		n.mu.Unlock()
		return api.NodePublic{}, errors.New("the node is not registered: the controller holds no key of it to rotate")
	}
	nk := n.st.PendingNodeKey
	if nk.IsZero() {
		nk = key.NewNode()
		if err := n.updateStateLocked(func(p *persistent) { p.PendingNodeKey = nk }); err != nil {
			n.mu.Unlock()
			return api.NodePublic{}, fmt.Errorf("save the new node key before sending it: %w", err)
		}
	} else {
		n.log.Info("completing the pending key rotation", "node_key", nk.Public().String())
	}
	n.mu.Unlock()
	if err := n.step(stepPendingSaved); err != nil {
		return api.NodePublic{}, err
	}
	if err := n.sendRotation(ctx, nk); err != nil {
		if errors.Is(err, localapi.ErrRotationPending) {
			return nk.Public(), err
		}
		return api.NodePublic{}, err
	}
	return nk.Public(), nil
}

// sendRotation sends the pending key nk to the controller and promotes it
// when the controller confirms it. A refusal drops the pending key (the
// controller kept the key it had); a lost answer keeps it and returns an
// error that wraps localapi.ErrRotationPending. The caller holds the
// rotation slot.
func (n *Node) sendRotation(ctx context.Context, nk key.NodePrivate) error {
	self, err := n.client.RotateKey(ctx, nk.Public(), n.backendKeys(nk))
	if err != nil {
		var held *control.RateLimitedError
		if errors.As(err, &held) && held.NotSent {
			// Held back for a 429 earlier: this says nothing of what the
			// controller holds.
			return fmt.Errorf("%w: node key %s is pending and was not sent again: %w", localapi.ErrRotationPending, nk.Public(), err)
		}
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Status < 500 {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.st.PendingNodeKey.Equal(nk) {
				if serr := n.updateStateLocked(func(p *persistent) { p.PendingNodeKey = key.NodePrivate{} }); serr != nil {
					// It stays pending: sent again, it is refused again.
					n.log.Warn("dropping the refused node key", "err", serr)
				}
			}
			n.keyErr = ""
			return fmt.Errorf("the controller refused the new node key, and holds the one this node uses: %w", err)
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.self != nil && n.self.NodeKey == nk.Public() {
			// A netmap that came meanwhile shows the controller holds it.
			if err := n.promoteLocked(nk); err != nil {
				return err
			}
			return n.reconfigureLocked()
		}
		n.keyErr = err.Error()
		return fmt.Errorf("%w: node key %s was sent, but the controller's answer did not arrive (%w); the node keeps the key and completes the rotation when the controller answers",
			localapi.ErrRotationPending, nk.Public(), err)
	}
	if err := n.step(stepSent); err != nil {
		return err
	}
	if self.NodeKey != nk.Public() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.keyErr = fmt.Sprintf("the controller answered with node key %s", self.NodeKey)
		return fmt.Errorf("%w: the controller answered the rotation to node key %s with node key %s; the node sends it again after the next netmap",
			localapi.ErrRotationPending, nk.Public(), self.NodeKey)
	}
	if err := n.step(stepConfirmed); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.promoteLocked(nk); err != nil {
		return err
	}
	return n.reconfigureLocked()
}

// promoteLocked makes the pending key nk the node's own, on disk first,
// and the view's self key. The caller switches the dataplane to it.
func (n *Node) promoteLocked(nk key.NodePrivate) error {
	if n.st.PendingNodeKey.IsZero() && n.st.NodeKey.Equal(nk) {
		return nil // promoted already
	}
	if !n.st.PendingNodeKey.Equal(nk) {
		return fmt.Errorf("node key %s is not pending: not promoted", nk.Public())
	}
	if err := n.updateStateLocked(func(p *persistent) { p.NodeKey, p.PendingNodeKey = nk, key.NodePrivate{} }); err != nil {
		return fmt.Errorf("save the new node key: %w", err)
	}
	n.keyErr = ""
	if n.self != nil && n.self.NodeKey != nk.Public() {
		self := *n.self
		self.NodeKey = nk.Public()
		n.self = &self
	}
	n.log.Info("node key rotated", "node_key", nk.Public().String())
	return n.step(stepPromoted)
}

// promoteHeldLocked promotes the pending key when the view shows the
// controller holds it: the answer to its rotation was lost, or the node
// stopped before it read it. The view may be the cached netmap: the
// controller's key for this node changes only by this node's rotations,
// which are pending before they are sent. It does nothing while a rotation
// is under way; that rotation settles its key itself.
func (n *Node) promoteHeldLocked() (bool, error) {
	if n.rotating || n.st == nil || n.st.PendingNodeKey.IsZero() || n.self == nil || n.self.NodeKey != n.st.PendingNodeKey.Public() {
		return false, nil
	}
	return true, n.promoteLocked(n.st.PendingNodeKey)
}

// reconfigureLocked applies the view to the dataplane, if there is one.
func (n *Node) reconfigureLocked() error {
	if n.dp == nil || n.self == nil {
		return nil
	}
	return n.applyLocked()
}

// reconcileKey settles the node key with the controller between netmap
// polls. It sends a pending key again, which completes a rotation whose
// answer was lost. When the controller's netmap holds a key for this node
// that the node neither uses nor has pending, it restores the node's key
// at the controller (which answers at once if it holds that key already,
// as after a netmap that was overtaken by a rotation). It does nothing
// while a rotation is under way.
func (n *Node) reconcileKey(ctx context.Context) error {
	if !n.tryBeginRotation() {
		return nil
	}
	defer n.endRotation()
	n.mu.Lock()
	pending, cur := n.st.PendingNodeKey, n.st.NodeKey
	var held api.NodePublic
	if n.synced && n.self != nil {
		held = n.self.NodeKey
	}
	n.mu.Unlock()
	switch {
	case !pending.IsZero():
		n.log.Info("completing the pending key rotation", "node_key", pending.Public().String())
		return n.sendRotation(ctx, pending)
	case !held.IsZero() && held != cur.Public():
		n.log.Warn("the controller holds a node key this node does not have; restoring the node's key at the controller",
			"controller_key", held.String(), "node_key", cur.Public().String())
		self, err := n.client.RotateKey(ctx, cur.Public(), n.backendKeys(cur))
		n.mu.Lock()
		defer n.mu.Unlock()
		if err != nil {
			n.keyErr = err.Error()
			return fmt.Errorf("restore the node key at the controller: %w", err)
		}
		n.keyErr = ""
		if n.self != nil && self.NodeKey == cur.Public() && n.st.NodeKey.Equal(cur) {
			s := *n.self
			s.NodeKey = cur.Public()
			n.self = &s
		}
	}
	return nil
}

// keyMismatchLocked says how the node and the controller disagree on the
// node's key, by the last netmap, or "" if they agree.
func (n *Node) keyMismatchLocked() string {
	cur := n.st.NodeKey.Public()
	var held api.NodePublic
	if n.self != nil {
		held = n.self.NodeKey
	}
	pending := n.st.PendingNodeKey
	var msg string
	switch {
	case !pending.IsZero() && held == pending.Public():
		msg = fmt.Sprintf("the controller holds the new node key %s; this node still uses %s until it promotes it", held, cur)
	case !pending.IsZero():
		msg = fmt.Sprintf("the new node key %s was sent to the controller, which has not confirmed it; this node uses %s until it does", pending.Public(), cur)
	case !held.IsZero() && held != cur:
		msg = fmt.Sprintf("the controller holds node key %s, which this node does not have; it uses %s and is restoring that at the controller", held, cur)
	default:
		return ""
	}
	if n.keyErr != "" {
		msg += " (last attempt: " + n.keyErr + ")"
	}
	return msg
}
