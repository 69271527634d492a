package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node"
	"github.com/rustynet/rustynet/node/localapi"
)

// pendingOrDone fails the test unless err is nil (the rotation was
// confirmed) or says that the rotation is pending: a lost answer is not a
// refusal.
func pendingOrDone(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, localapi.ErrRotationPending) {
		t.Errorf("RotateKey with its answer lost = %v, want success or %v", err, localapi.ErrRotationPending)
	}
}

// TestRotateKeyAnswerLost: the controller stores a node's new key, but its
// answer is lost on the way back. The node must not keep its old key (the
// peers get the new one), nor call that a refusal: it completes the
// rotation, and traffic passes again.
func TestRotateKeyAnswerLost(t *testing.T) {
	m := newLossMesh(t)
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
	keysAgree(t, m.netstackMesh, a, b)
	m.proxy.DropAnswers(api.PathRotateKey, 1)
	k, err := b.RotateKey(ctxT(t, 40*time.Second))
	pendingOrDone(t, err)
	if ex := m.proxy.Exchanges(api.PathRotateKey); len(ex) == 0 || ex[0].Action != controllertest.DroppedAnswer || ex[0].Status != 200 {
		t.Fatalf("rotate-key exchanges %+v, want the first answered 200 and dropped", ex)
	}
	if held := keysAgree(t, m.netstackMesh, a, b); err == nil && held != k {
		t.Errorf("RotateKey returned %s; the controller holds %s", k, held)
	}
}

// TestRotateKeyAnswerLostThenRestart: the answer to a rotation is lost and
// the node stops before it learns the outcome (as a crash between the
// controller's answer and saving the key would leave it). Restarted, it
// must come to agree with the controller.
func TestRotateKeyAnswerLostThenRestart(t *testing.T) {
	m := newLossMesh(t)
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
	keysAgree(t, m.netstackMesh, a, b)
	m.proxy.DropAnswers(api.PathRotateKey, 1)
	_, err := b.RotateKey(ctxT(t, 40*time.Second))
	pendingOrDone(t, err)
	b.Stop()
	b.Start()
	keysAgree(t, m.netstackMesh, a, b)
}

// TestRotateKeyRequestLost: the request of a rotation never reaches the
// controller. The node says the rotation is pending (not refused), keeps
// the key and completes the rotation once the controller can be reached.
func TestRotateKeyRequestLost(t *testing.T) {
	m := newLossMesh(t)
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
	keysAgree(t, m.netstackMesh, a, b)
	m.proxy.DropRequests(api.PathRotateKey, -1)
	// Through the local API, as `rustynet rotate-key` asks.
	k, err := localapi.NewClient(b.cfg.StateDir).RotateKey(ctxT(t, 40*time.Second))
	if !errors.Is(err, localapi.ErrRotationPending) {
		t.Fatalf("RotateKey with its request lost = %v, want %v", err, localapi.ErrRotationPending)
	}
	if !strings.Contains(err.Error(), "completes the rotation when the controller answers") {
		t.Errorf("RotateKey with its request lost = %q, want it to say the rotation completes when the controller answers", err)
	}
	// While every request to rotate is lost, the node keeps the key
	// pending, and says so.
	st, _ := b.Status(context.Background())
	if st.State != "rotating" || st.PendingNodeKey != k || st.KeyMismatch == "" {
		t.Errorf("status with a rotation pending: state %s, pending key %s (%s), want rotating, %s and why", st.State, st.PendingNodeKey, st.KeyMismatch, k)
	}
	m.proxy.Reset(api.PathRotateKey)
	if held := keysAgree(t, m.netstackMesh, a, b); held != k {
		t.Errorf("the pending key was %s; the controller holds %s", k, held)
	}
}

// TestRestoredStateRepaired: a node restarts from a copy of its state
// taken before its last rotation, so the controller holds a key the node
// does not have. The node must notice from its netmap and repair it.
func TestRestoredStateRepaired(t *testing.T) {
	m := newLossMesh(t)
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
	keysAgree(t, m.netstackMesh, a, b)
	stateFile := filepath.Join(b.cfg.StateDir, "state.json")
	old, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RotateKey(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	if err := os.WriteFile(stateFile, old, 0o600); err != nil {
		t.Fatal(err)
	}
	b.Start()
	keysAgree(t, m.netstackMesh, a, b)
}

// TestRotateKeyCrashAtEachStep: the node dies at each step of a rotation
// (the test hook stops it there and it writes nothing more) and a new
// node starts on its state dir. Each time the node and the controller
// come to agree on its key, and traffic passes.
func TestRotateKeyCrashAtEachStep(t *testing.T) {
	for _, step := range []string{"pending-saved", "sent", "confirmed", "promoted"} {
		t.Run(step, func(t *testing.T) {
			m := newLossMesh(t)
			key := m.AuthKey()
			a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
			before := keysAgree(t, m.netstackMesh, a, b)
			var (
				mu   sync.Mutex
				seen []string
			)
			errKilled := errors.New("killed by the test")
			node.SetRotationHook(b.node(), func(s string) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, s)
				if s == step {
					return errKilled
				}
				return nil
			})
			_, err := b.RotateKey(ctxT(t, 40*time.Second))
			mu.Lock()
			steps := slices.Clone(seen)
			mu.Unlock()
			if !errors.Is(err, errKilled) {
				t.Fatalf("RotateKey = %v after steps %v, want it killed at %s", err, steps, step)
			}
			b.Stop()
			b.Start()
			if after := keysAgree(t, m.netstackMesh, a, b); after == before {
				t.Errorf("after a crash at %s the node key is still %s, want the new one (the rotation completes)", step, before)
			}
		})
	}
}

// TestRotateKeyOneAtATime: rotations asked for at once run one after the
// other, each confirmed, and leave the node and the controller agreeing
// on the last key.
func TestRotateKeyOneAtATime(t *testing.T) {
	m := newLossMesh(t)
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
	keysAgree(t, m.netstackMesh, a, b)
	const n = 3
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		keys []api.NodePublic
		errs []error
	)
	for range n {
		wg.Go(func() {
			k, err := b.RotateKey(ctxT(t, 40*time.Second))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			keys = append(keys, k)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent rotations: %v", err)
	}
	slices.SortFunc(keys, func(x, y api.NodePublic) int { return strings.Compare(x.String(), y.String()) })
	if len(slices.Compact(keys)) != n {
		t.Errorf("%d concurrent rotations gave keys %v, want %d distinct", n, keys, n)
	}
	held := keysAgree(t, m.netstackMesh, a, b)
	if !slices.Contains(keys, held) {
		t.Errorf("the controller holds %s, none of the keys the rotations returned (%v)", held, keys)
	}
}
