package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
)

// presharedKeys reads `wg show IFACE preshared-keys` in n's namespace:
// each peer's key, "(none)" for none. The keys are compared, never
// logged.
func presharedKeys(t *testing.T, n *kernelNode) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, "wg", "show", n.iface, "preshared-keys").Output()
	if err != nil {
		t.Fatalf("wg show %s preshared-keys: %v", n.iface, err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			keys[f[0]] = f[1]
		}
	}
	return keys
}

// TestPQKernel: in a kernel-TUN mesh under pq: prefer, `wg show IFACE
// preshared-keys` shows a key for the pair on both nodes, the same, and
// another after each rotation period, while the pair passes traffic.
func TestPQKernel(t *testing.T) {
	require.Root(t)
	require.Command(t, "wg")
	buildBinaries(t)
	m := newKernelMesh(t, "wireguard", 3)
	policy := "acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\npq:\n  - nodes: [\"*\"]\n    mode: prefer\n"
	if _, err := m.Controller().Admin().SetPolicy(context.Background(), policy); err != nil {
		t.Fatal(err)
	}
	key := m.AuthKey()
	a := m.newNode("alpha", key, "--pq-period", "3s")
	b := m.newNode("bravo", key, "--pq-period", "3s")
	sa, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// wg names peers by their key in base64, as the status does.
	pairKey := func() (string, error) {
		ka, kb := presharedKeys(t, a)[sb.NodeKey.String()], presharedKeys(t, b)[sa.NodeKey.String()]
		switch {
		case ka == "" || ka == "(none)":
			return "", fmt.Errorf("alpha has no preshared key for bravo")
		case ka != kb:
			return "", fmt.Errorf("alpha and bravo hold different preshared keys for their pair")
		}
		return ka, nil
	}
	var first string
	eventually(t, 30*time.Second, "a preshared key for the pair on both nodes", func() error {
		k, err := pairKey()
		first = k
		return err
	})
	if err := transfer(t, a, b, 256<<10); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{first: true}
	for i := range 2 {
		eventually(t, 20*time.Second, fmt.Sprintf("rotation %d: a new key on both nodes", i+1), func() error {
			k, err := pairKey()
			if err != nil {
				return err
			}
			if seen[k] {
				return fmt.Errorf("still a key seen before")
			}
			seen[k] = true
			return nil
		})
		if err := transfer(t, b, a, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
}
