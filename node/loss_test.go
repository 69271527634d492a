package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// lossMesh is a controller with a proxy in front of it that can lose
// requests and answers, and nodes of one backend that reach the
// controller directly or through the proxy.
type lossMesh struct {
	*netstackMesh
	proxy *controllertest.Proxy
}

func newLossMesh(t *testing.T) *lossMesh {
	ctl := controllertest.Start(t)
	return &lossMesh{
		netstackMesh: &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: "wireguard"},
		proxy:        controllertest.NewProxy(t, ctl),
	}
}

// viaProxy starts a node that reaches the controller through the proxy,
// polling every 2s so that what it does between polls shows soon.
func (m *lossMesh) viaProxy(name, key string) *netstackNode {
	cfg := m.config(name, key)
	cfg.ControllerURL, cfg.ControllerCA = m.proxy.URL, m.proxy.CAFile
	cfg.PollWait = 2 * time.Second
	return startNetstackNode(m.t, cfg)
}

// controllerNode returns the controller's record of the node with id.
func controllerNode(t testing.TB, m *netstackMesh, id api.NodeID) (*api.AdminNode, error) {
	nodes, err := m.ctl.Admin.Nodes(ctxT(t, 5*time.Second))
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return &n, nil
		}
	}
	return nil, fmt.Errorf("the controller has no node %s", id)
}

// keysAgree waits until b and the controller agree on b's node key and a
// holds that key for b, then checks that TCP passes both ways between a
// and b. It returns the key.
func keysAgree(t *testing.T, m *netstackMesh, a, b *netstackNode) api.NodePublic {
	t.Helper()
	var held api.NodePublic
	eventually(t, 20*time.Second, "the controller, "+b.Name()+" and "+a.Name()+" agree on "+b.Name()+"'s key", func() error {
		st, err := b.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Self == nil {
			return errors.New(b.Name() + " has no netmap")
		}
		cn, err := controllerNode(t, m, st.Self.ID)
		if err != nil {
			return err
		}
		held = cn.NodeKey
		if st.State != "running" || st.NodeKey != held || !st.PendingNodeKey.IsZero() || st.KeyMismatch != "" {
			return fmt.Errorf("%s is %s (%s) with node key %s, pending %s (%s); the controller holds %s",
				b.Name(), st.State, st.LastError, st.NodeKey, st.PendingNodeKey, st.KeyMismatch, held)
		}
		keys, err := a.DataplanePeers(context.Background())
		if err != nil {
			return err
		}
		if !slices.Contains(keys, held) {
			return fmt.Errorf("the controller holds %s for %s; %s's dataplane has %v", held, b.Name(), a.Name(), keys)
		}
		return nil
	})
	for _, p := range [][2]*netstackNode{{a, b}, {b, a}} {
		// A peer that learns a new key before its holder switches to it
		// loses that handshake and retries it 5s later (WireGuard's
		// REKEY_TIMEOUT); on a loaded machine one transfer's 10s may see
		// the retry lost too. Not a speed test: each attempt dials anew.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := transfer(t, p[0], p[1], 16<<10)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("with the controller holding %s for %s: %v", held, b.Name(), err)
			}
		}
	}
	return held
}
