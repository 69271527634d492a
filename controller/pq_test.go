package controller_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// TestPQFields: a node of capability 4 announces its post-quantum schemes
// in an endpoints report; its peers of capability 4 see them and each
// node's mode from the policy's pq rules, peers of an older version see
// neither; a report of an older client clears the schemes; malformed
// schemes are refused with why.
func TestPQFields(t *testing.T) {
	c := controllertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Admin.SetPolicy(ctx, "acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\npq:\n  - nodes: [\"tag:db\"]\n    mode: require\n  - nodes: [\"*\"]\n    mode: prefer\n"); err != nil {
		t.Fatal(err)
	}
	a := c.Register(c.AuthKey(true, "tag:db"), "alpha")
	b := c.Register(c.AuthKey(true), "bravo")

	report := func(v api.CapabilityVersion, cred string, schemes []string) (int, []byte) {
		return c.DoAs(v, http.MethodPost, api.PathEndpoints, cred, api.EndpointsRequest{PQ: schemes}, nil)
	}
	if status, body := report(4, a.Credential, []string{"mlkem768-psk-v1"}); status != 200 {
		t.Fatalf("endpoints with pq: %d %s", status, body)
	}
	peerOf := func(v api.CapabilityVersion, cred string, id api.NodeID) (api.Node, *api.Node) {
		t.Helper()
		var m api.MapResponse
		if status, body := c.DoAs(v, http.MethodGet, api.PathNetmap+"?since=0&wait=0", cred, nil, &m); status != 200 {
			t.Fatalf("netmap at version %d: %d %s", v, status, body)
		}
		for _, p := range m.Peers {
			if p.ID == id {
				return p, m.Self
			}
		}
		t.Fatalf("no peer %s in the netmap", id)
		return api.Node{}, nil
	}
	p, self := peerOf(4, b.Credential, a.Node.ID)
	if !slices.Equal(p.PQ, []string{"mlkem768-psk-v1"}) || p.PQMode != api.PQRequire || self.PQMode != api.PQPrefer {
		t.Errorf("capability 4: peer pq %v mode %q, self mode %q; want the scheme, require, prefer", p.PQ, p.PQMode, self.PQMode)
	}
	p, self = peerOf(3, b.Credential, a.Node.ID)
	if p.PQ != nil || p.PQMode != "" || self.PQMode != "" {
		t.Errorf("capability 3: peer pq %v mode %q, self mode %q; want none of them", p.PQ, p.PQMode, self.PQMode)
	}

	// The node restarted on a build of capability 3: its report clears
	// the schemes, even if it sends the field.
	if status, body := report(3, a.Credential, nil); status != 200 {
		t.Fatalf("endpoints at capability 3: %d %s", status, body)
	}
	if p, _ := peerOf(4, b.Credential, a.Node.ID); p.PQ != nil {
		t.Errorf("after a report of capability 3, the schemes are %v, want none", p.PQ)
	}

	for _, bad := range [][]string{{"ML-KEM!"}, {"a", "a"}, {"1", "2", "3", "4", "5", "6", "7", "8", "9"}} {
		if status, _ := report(4, a.Credential, bad); status != http.StatusBadRequest {
			t.Errorf("pq %q: %d, want 400", bad, status)
		}
	}
}
