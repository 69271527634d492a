package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node/localapi"
)

// pqOf is what a's status says of its pair with b: the protection and
// the key's fingerprint.
func pqOf(t *testing.T, a, b meshNode) (string, string, string) {
	t.Helper()
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Name == b.Name() {
			return p.PQ, p.PQKey, p.PQReason
		}
	}
	return "", "", "not a peer"
}

// waitPQ waits until a's pair with b has protection want, and returns the
// key's fingerprint.
func waitPQ(t *testing.T, a, b meshNode, want string) string {
	t.Helper()
	var key string
	eventually(t, 20*time.Second, fmt.Sprintf("%s's pair with %s is %s", a.Name(), b.Name(), want), func() error {
		got, k, why := pqOf(t, a, b)
		if got != want {
			return fmt.Errorf("%s (%s)", got, why)
		}
		key = k
		return nil
	})
	return key
}

// TestPQNetstack: on the WireGuard backend, a pair of prefer nodes agrees
// a post-quantum preshared key (the same on both sides), passes traffic on
// it, and agrees a new one every period; a prefer node stays classical
// with a node that does not run the exchange; a require node agrees a key
// with a node that can, and passes nothing to and from one that cannot
// (the capability stripped, as an attacker or an old release would).
func TestPQNetstack(t *testing.T) {
	ctl := controllertest.Start(t)
	policy := "acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\n" +
		"pq:\n  - nodes: [\"tag:strict\"]\n    mode: require\n  - nodes: [\"*\"]\n    mode: prefer\n"
	if _, err := ctl.Admin.SetPolicy(context.Background(), policy); err != nil {
		t.Fatal(err)
	}
	m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: "wireguard"}
	key, strict := m.AuthKey(), m.AuthKey("tag:strict")
	start := func(name, key string, noPQ bool) meshNode {
		cfg := m.config(name, key)
		cfg.NoPQ, cfg.PQPeriod = noPQ, 2*time.Second
		return startNetstackNode(t, cfg)
	}
	alpha, bravo := start("alpha", key, false), start("bravo", key, false)
	charlie := start("charlie", key, true) // runs no exchange
	delta := start("delta", strict, false)

	ka := waitPQ(t, alpha, bravo, localapi.PQPSK)
	if kb := waitPQ(t, bravo, alpha, localapi.PQPSK); ka == "" || kb != ka {
		t.Fatalf("alpha holds key %q with bravo, bravo %q with alpha: want one key", ka, kb)
	}
	if err := transfer(t, alpha, bravo, 64<<10); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "alpha and bravo agree a new key", func() error {
		state, k, why := pqOf(t, alpha, bravo)
		if state != localapi.PQPSK || k == ka {
			return fmt.Errorf("%s, key %s (%s)", state, k, why)
		}
		return nil
	})
	if err := transfer(t, bravo, alpha, 64<<10); err != nil {
		t.Fatal(err)
	}

	waitPQ(t, alpha, charlie, localapi.PQClassical)
	if err := transfer(t, alpha, charlie, 64<<10); err != nil {
		t.Fatalf("prefer with a node that runs no exchange: %v", err)
	}

	waitPQ(t, delta, alpha, localapi.PQPSK)
	if err := transfer(t, delta, alpha, 64<<10); err != nil {
		t.Fatalf("require with a node that runs the exchange: %v", err)
	}
	waitPQ(t, delta, charlie, localapi.PQRefused)
	if err := unreachable(t, delta, charlie); err != nil {
		t.Error(err)
	}
	if err := unreachable(t, charlie, delta); err != nil {
		t.Error(err)
	}
}
