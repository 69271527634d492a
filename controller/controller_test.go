package controller_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/insecure"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// poll long-polls the netmap and fails the test on any status but 200.
func poll(t *testing.T, c *controllertest.Controller, cred string, since uint64, wait int) *api.MapResponse {
	t.Helper()
	var m api.MapResponse
	path := fmt.Sprintf("%s?since=%d&wait=%d", api.PathNetmap, since, wait)
	if status, body := c.Do(http.MethodGet, path, cred, nil, &m); status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return &m
}

func peerIDs(nodes []api.Node) []api.NodeID {
	ids := make([]api.NodeID, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...api.NodeID) []api.NodeID {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

func TestRegisterAndFullNetmap(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true, "tag:web")
	a := c.Register(key, "Alpha.example.com")
	b := c.Register(key, "alpha")
	if a.Node.Name != "alpha" || b.Node.Name != "alpha-2" {
		t.Errorf("names = %q, %q; want alpha, alpha-2", a.Node.Name, b.Node.Name)
	}
	// A freed suffix is not reused before the others.
	if err := c.Admin.RemoveNode(ctx(t), "alpha-2"); err != nil {
		t.Fatal(err)
	}
	b = c.Register(key, "alpha")
	if b.Node.Name != "alpha-3" {
		t.Errorf("third alpha named %q, want alpha-3", b.Node.Name)
	}
	if !strings.HasPrefix(a.Credential, api.CredentialPrefix) {
		t.Errorf("credential %q lacks prefix %q", a.Credential, api.CredentialPrefix)
	}
	for _, r := range []*api.RegisterResponse{a, b} {
		if len(r.Node.Addresses) != 2 || !r.Node.Addresses[0].Addr().Is4() || !r.Node.Addresses[1].Addr().Is6() {
			t.Errorf("node %s addresses = %v, want one IPv4 and one IPv6", r.Node.ID, r.Node.Addresses)
		}
		if !slices.Equal(r.Node.Tags, []string{"tag:web"}) {
			t.Errorf("node %s tags = %v, want the key's [tag:web]", r.Node.ID, r.Node.Tags)
		}
	}
	m := poll(t, c, a.Credential, 0, 0)
	if !m.Full || m.Self == nil || m.Self.ID != a.Node.ID {
		t.Fatalf("first netmap: full=%v self=%v, want a full map for %s", m.Full, m.Self, a.Node.ID)
	}
	if got := peerIDs(m.Peers); !slices.Equal(got, []api.NodeID{b.Node.ID}) {
		t.Errorf("peers = %v, want [%s]", got, b.Node.ID)
	}
	p := m.Peers[0]
	if p.NodeKey != b.Node.NodeKey || !slices.Equal(p.AllowedIPs, b.Node.Addresses) || !p.AllowIn || !p.AllowOut {
		t.Errorf("peer entry = %+v, want %s's key, its addresses as allowed IPs, both directions", p, b.Node.ID)
	}
	nodes, err := c.Admin.Nodes(ctx(t))
	if err != nil || len(nodes) != 2 {
		t.Fatalf("node list = %v, %v; want 2 nodes", nodes, err)
	}
}

// TestChangeReachesWaitingNodes checks the long-poll: a registration, a key
// rotation, an endpoint report and a removal each reach every waiting peer
// as a delta, and only what changed is sent.
func TestChangeReachesWaitingNodes(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	const n = 5
	nodes := make([]*api.RegisterResponse, n)
	for i := range nodes {
		nodes[i] = c.Register(key, fmt.Sprintf("node%d", i))
	}
	revs := make([]uint64, n)
	for i, nd := range nodes {
		revs[i] = poll(t, c, nd.Credential, 0, 0).Revision
	}

	// waitAll long-polls every node but the first from its last revision,
	// runs change, and returns what each received.
	waitAll := func(change func()) []*api.MapResponse {
		t.Helper()
		got := make([]*api.MapResponse, n)
		var wg sync.WaitGroup
		for i := 1; i < n; i++ {
			wg.Go(func() { got[i] = poll(t, c, nodes[i].Credential, revs[i], 20) })
		}
		c.WaitPolls(n - 1)
		change()
		wg.Wait()
		for i := 1; i < n; i++ {
			if got[i].Full {
				t.Errorf("node %d got a full netmap, want a delta", i)
			}
			revs[i] = got[i].Revision
		}
		return got
	}

	var newcomer *api.RegisterResponse
	got := waitAll(func() { newcomer = c.Register(key, "newcomer") })
	for i := 1; i < n; i++ {
		if ids := peerIDs(got[i].PeersChanged); !slices.Equal(ids, []api.NodeID{newcomer.Node.ID}) {
			t.Errorf("after a registration node %d got changed peers %v, want [%s]", i, ids, newcomer.Node.ID)
		}
	}

	newKey := controllertest.Key[api.NodePublic]()
	got = waitAll(func() {
		if status, body := c.Do(http.MethodPost, api.PathRotateKey, nodes[0].Credential, api.RotateKeyRequest{NodeKey: newKey}, nil); status != 200 {
			t.Errorf("rotate-key: %d %s", status, body)
		}
	})
	for i := 1; i < n; i++ {
		if len(got[i].PeersChanged) != 1 || got[i].PeersChanged[0].NodeKey != newKey {
			t.Errorf("after a key rotation node %d got %+v, want node0 with the new key", i, got[i].PeersChanged)
		}
	}

	ep := netip.MustParseAddrPort("192.0.2.10:41641")
	got = waitAll(func() {
		var self api.Node
		if status, body := c.Do(http.MethodPost, api.PathEndpoints, nodes[0].Credential,
			api.EndpointsRequest{Endpoints: []netip.AddrPort{ep}, ListenPort: 41641}, &self); status != 200 {
			t.Errorf("endpoints: %d %s", status, body)
		}
		// The controller adds the address it saw the report come from.
		want := []netip.AddrPort{ep, netip.MustParseAddrPort("127.0.0.1:41641")}
		if !slices.Equal(self.Endpoints, want) {
			t.Errorf("endpoints after report = %v, want %v", self.Endpoints, want)
		}
	})
	for i := 1; i < n; i++ {
		if len(got[i].PeersChanged) != 1 || !slices.Contains(got[i].PeersChanged[0].Endpoints, ep) {
			t.Errorf("after an endpoint report node %d got %+v, want node0 with endpoint %s", i, got[i].PeersChanged, ep)
		}
	}

	got = waitAll(func() {
		if err := c.Admin.RemoveNode(ctx(t), string(newcomer.Node.ID)); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	for i := 1; i < n; i++ {
		if !slices.Equal(got[i].PeersRemoved, []api.NodeID{newcomer.Node.ID}) || len(got[i].PeersChanged) != 0 {
			t.Errorf("after a removal node %d got removed %v changed %v, want removed [%s]", i, got[i].PeersRemoved, peerIDs(got[i].PeersChanged), newcomer.Node.ID)
		}
	}
	if status, _ := c.Do(http.MethodGet, api.PathNetmap, newcomer.Credential, nil, nil); status != http.StatusUnauthorized {
		t.Errorf("netmap with a removed node's credential: %d, want 401", status)
	}
}

// TestLongPollTimesOutWithEmptyDelta: with nothing to say, a long-poll
// answers an empty delta at the revision it was asked for when wait runs out.
func TestLongPollTimesOutWithEmptyDelta(t *testing.T) {
	c := controllertest.Start(t)
	a := c.Register(c.AuthKey(false), "a")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	start := time.Now()
	m := poll(t, c, a.Credential, rev, 1)
	if m.Full || m.Self != nil || len(m.PeersChanged)+len(m.PeersRemoved) != 0 || m.Revision != rev {
		t.Errorf("timed-out poll = %+v, want an empty delta at revision %d", m, rev)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("poll with wait=1 answered after %v, before its wait ran out", el)
	}
}

// TestIrrelevantChangeDoesNotWake: a change a node may not see must not
// wake it or reveal anything.
func TestIrrelevantChangeDoesNotWake(t *testing.T) {
	c := controllertest.Start(t)
	if _, err := c.Admin.SetPolicy(ctx(t), "acls:\n  - action: accept\n    src: [\"tag:a\"]\n    dst: [\"tag:a\"]\n"); err != nil {
		t.Fatal(err)
	}
	a := c.Register(c.AuthKey(false, "tag:a"), "a")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	done := make(chan *api.MapResponse, 1)
	go func() { done <- poll(t, c, a.Credential, rev, 2) }()
	c.WaitPolls(1)
	c.Register(c.AuthKey(false, "tag:b"), "b")
	m := <-done
	if m.Full || m.Self != nil || len(m.PeersChanged)+len(m.PeersRemoved) != 0 {
		t.Errorf("a node of another tag registered and tag:a received %+v, want an empty delta", m)
	}
}

func TestACLPolicy(t *testing.T) {
	c := controllertest.Start(t)
	web := c.Register(c.AuthKey(false, "tag:web"), "web")
	db := c.Register(c.AuthKey(false, "tag:db"), "db")
	other := c.Register(c.AuthKey(false), "other")
	ops := c.Register(c.NamedAuthKey("ops"), "laptop")

	// No policy: everyone sees everyone.
	if got := peerIDs(poll(t, c, other.Credential, 0, 0).Peers); len(got) != 3 {
		t.Fatalf("default policy: other sees %v, want 3 peers", got)
	}
	policy := `acls:
  - action: accept
    src: ["tag:web"]
    dst: ["tag:db"]
  - action: accept
    src: ["node:ops"]
    dst: ["*"]
`
	if _, err := c.Admin.SetPolicy(ctx(t), policy); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		node *api.RegisterResponse
		want []api.NodeID
	}{
		{"web", web, sorted(db.Node.ID, ops.Node.ID)},
		{"db", db, sorted(web.Node.ID, ops.Node.ID)},
		{"other", other, sorted(ops.Node.ID)},
		{"ops", ops, sorted(web.Node.ID, db.Node.ID, other.Node.ID)},
	} {
		m := poll(t, c, tc.node.Credential, 0, 0)
		if got := peerIDs(m.Peers); !slices.Equal(got, tc.want) {
			t.Errorf("%s's peers = %v, want %v", tc.name, got, tc.want)
		}
		if tc.name == "db" {
			for _, p := range m.Peers {
				if p.ID == web.Node.ID && (p.AllowOut || !p.AllowIn) {
					t.Errorf("db's entry for web: allow_out=%v allow_in=%v, want only allow_in", p.AllowOut, p.AllowIn)
				}
			}
		}
	}

	// An invalid policy is refused with its line, and the old one stays.
	_, err := c.Admin.SetPolicy(ctx(t), "acls:\n  - action: accept\n    src: [\"tag:web\"]\n    dst: [\"group:x\"]\n")
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("SetPolicy(invalid) error = %v, want a refusal naming line 4", err)
	}
	p, err := c.Admin.Policy(ctx(t))
	if err != nil || p.Policy != policy || p.Default {
		t.Errorf("policy after a refused update = %+v, %v; want the previous one", p, err)
	}
	if got := peerIDs(poll(t, c, other.Credential, 0, 0).Peers); !slices.Equal(got, []api.NodeID{ops.Node.ID}) {
		t.Errorf("after a refused update other sees %v, want [%s]", got, ops.Node.ID)
	}
}

// TestPolicySizeLimit: a policy of api.MaxPolicyBytes is accepted even when
// every byte of it is escaped in the JSON body (encoding/json writes '<' as
// "\u003c", six bytes), and one byte more is refused with a message naming
// the limit; a body too large for any allowed policy is refused with 413,
// also naming it.
func TestPolicySizeLimit(t *testing.T) {
	c := controllertest.Start(t)
	const head = "acls: []\n#"
	atLimit := head + strings.Repeat("<", api.MaxPolicyBytes-len(head))
	if body, _ := json.Marshal(api.SetPolicyRequest{Policy: atLimit}); len(body) <= api.MaxBodyBytes {
		t.Fatalf("the policy at the limit encodes to %d bytes, want more than api.MaxBodyBytes (%d) to test the escaping", len(body), api.MaxBodyBytes)
	}
	if _, err := c.Admin.SetPolicy(ctx(t), atLimit); err != nil {
		t.Fatalf("SetPolicy(%d bytes) error = %v, want it accepted", len(atLimit), err)
	}
	if p, err := c.Admin.Policy(ctx(t)); err != nil || p.Policy != atLimit {
		t.Errorf("policy after setting %d bytes: %d bytes, %v; want the same text", len(atLimit), len(p.Policy), err)
	}

	want := fmt.Sprintf("at most %d allowed", api.MaxPolicyBytes)
	_, err := c.Admin.SetPolicy(ctx(t), atLimit+"<")
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != api.CodeBadRequest || !strings.Contains(e.Message, want) {
		t.Errorf("SetPolicy(%d bytes) error = %#v, want 400 %s containing %q", len(atLimit)+1, err, api.CodeBadRequest, want)
	}

	// A body larger than any allowed policy needs: 413, naming the limit.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(c.DataDir, controller.AdminSocket))
	}}}
	big := `{"policy":"` + strings.Repeat(`\u003c`, api.MaxPolicyBodyBytes/6+1) + `"}`
	req, _ := http.NewRequest(http.MethodPut, "http://controller"+api.AdminPathPolicy, strings.NewReader(big))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || eb.Error == nil ||
		eb.Error.Code != api.CodeBodyTooLarge || !strings.Contains(eb.Error.Message, fmt.Sprintf("at most %d bytes", api.MaxPolicyBytes)) {
		t.Errorf("PUT %s with %d bytes = %d %+v (%v), want 413 %s naming %d", api.AdminPathPolicy, len(big), resp.StatusCode, eb.Error, err, api.CodeBodyTooLarge, api.MaxPolicyBytes)
	}
	if p, err := c.Admin.Policy(ctx(t)); err != nil || p.Policy != atLimit {
		t.Errorf("policy after refused updates: %d bytes, %v; want the one at the limit", len(p.Policy), err)
	}
}

// TestPolicyChangeSendsFullNetmaps: a waiting node gets a full netmap with
// its new peer set when the policy changes.
func TestPolicyChangeSendsFullNetmaps(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	a, b := c.Register(key, "a"), c.Register(key, "b")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	done := make(chan *api.MapResponse, 1)
	go func() { done <- poll(t, c, a.Credential, rev, 20) }()
	c.WaitPolls(1)
	if _, err := c.Admin.SetPolicy(ctx(t), "acls: []\n"); err != nil {
		t.Fatal(err)
	}
	m := <-done
	if !m.Full || len(m.Peers) != 0 {
		t.Errorf("after a deny-all policy a got full=%v peers=%v, want a full map with no peers", m.Full, peerIDs(m.Peers))
	}
	_ = b
}

func TestAuthKeys(t *testing.T) {
	c := controllertest.Start(t)

	// A single-use key registers exactly one node, however many try at once.
	single := c.AuthKey(false)
	var ok, refused int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			req := api.RegisterRequest{AuthKey: single, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: controllertest.Key[api.MachinePublic]()}
			status, body := c.Do(http.MethodPost, api.PathRegister, "", req, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case status == 200:
				ok++
			case status == 401 && bytes.Contains(body, []byte("already used")):
				refused++
			default:
				t.Errorf("register: %d %s", status, body)
			}
		})
	}
	wg.Wait()
	if ok != 1 || refused != 15 {
		t.Errorf("16 concurrent uses of a single-use key: %d succeeded, %d refused; want 1 and 15", ok, refused)
	}

	// A revoked key is refused and says so.
	key := c.AuthKey(true)
	id := strings.SplitN(strings.TrimPrefix(key, api.AuthKeyPrefix), "_", 2)[0]
	if _, err := c.Admin.RevokeAuthKey(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: controllertest.Key[api.MachinePublic]()}
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, nil); status != 401 || !bytes.Contains(body, []byte("revoked")) {
		t.Errorf("register with a revoked key: %d %s, want 401 saying revoked", status, body)
	}
	// A wrong secret for a real key ID is "unknown", like a made-up key.
	req.AuthKey = key[:len(key)-4] + "aaaa"
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, nil); status != 401 || !bytes.Contains(body, []byte("unknown auth key")) {
		t.Errorf("register with a wrong secret: %d %s, want 401 unknown auth key", status, body)
	}
	if _, err := c.Admin.RevokeAuthKey(ctx(t), "ffffffffffff"); err == nil {
		t.Error("revoking a missing key succeeded")
	}
	keys, err := c.Admin.AuthKeys(ctx(t))
	if err != nil || len(keys) != 2 {
		t.Fatalf("AuthKeys = %v, %v; want 2", keys, err)
	}
	now := time.Now()
	if keys[0].State(now) != "used" || keys[1].State(now) != "revoked" {
		t.Errorf("key states = %s, %s; want used, revoked", keys[0].State(now), keys[1].State(now))
	}
}

// TestSecretsAreHashedAtRest: neither an auth key's secret nor a node
// credential's appears anywhere in the store file.
func TestSecretsAreHashedAtRest(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(false)
	reg := c.Register(key, "a")
	c.Stop()
	db, err := os.ReadFile(filepath.Join(c.DataDir, controller.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	keySecret := key[strings.LastIndexByte(key, '_')+1:]
	credSecret := reg.Credential[strings.LastIndexByte(reg.Credential, '_')+1:]
	for name, secret := range map[string]string{"auth key": keySecret, "credential": credSecret} {
		if bytes.Contains(db, []byte(secret)) {
			t.Errorf("the store file contains the %s secret in clear", name)
		}
	}
}

// TestReRegistration: the same machine key with the node's credential keeps
// the node's ID and addresses; without it, or with another node's, it is
// refused.
func TestReRegistration(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	mk := controllertest.Key[api.MachinePublic]()
	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: mk, Hostname: "m"}
	var first api.RegisterResponse
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, &first); status != 200 {
		t.Fatalf("register: %d %s", status, body)
	}
	other := c.Register(key, "other")

	req.NodeKey = controllertest.Key[api.NodePublic]()
	// A client of version 2 proves nothing: it may not take the machine
	// key back without the credential, and the refusal names no node.
	if status, body := c.DoAs(2, http.MethodPost, api.PathRegister, "", req, nil); status != http.StatusConflict ||
		bytes.Contains(body, []byte(first.Node.ID)) || bytes.Contains(body, []byte(`"m"`)) {
		t.Errorf("re-register without a credential or proof: %d %s, want 409 naming no node", status, body)
	}
	if status, body := c.Do(http.MethodPost, api.PathRegister, other.Credential, req, nil); status != http.StatusForbidden {
		t.Errorf("re-register with another node's credential: %d %s, want 403", status, body)
	}
	var second api.RegisterResponse
	if status, body := c.Do(http.MethodPost, api.PathRegister, first.Credential, req, &second); status != 200 {
		t.Fatalf("re-register with the credential: %d %s", status, body)
	}
	if second.Node.ID != first.Node.ID || !slices.Equal(second.Node.Addresses, first.Node.Addresses) || second.Node.NodeKey != req.NodeKey {
		t.Errorf("re-registration gave %+v, want ID %s and addresses %v with the new key", second.Node, first.Node.ID, first.Node.Addresses)
	}
	if status, _ := c.Do(http.MethodGet, api.PathNetmap, first.Credential, nil, nil); status != 401 {
		t.Errorf("old credential after re-registration: %d, want 401", status)
	}
	// A node key held by another node is refused.
	req2 := api.RegisterRequest{AuthKey: key, NodeKey: other.Node.NodeKey, MachineKey: controllertest.Key[api.MachinePublic]()}
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req2, nil); status != http.StatusConflict || !bytes.Contains(body, []byte("node key")) {
		t.Errorf("register with another node's node key: %d %s, want 409", status, body)
	}
}

func TestLogout(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	a, b := c.Register(key, "a"), c.Register(key, "b")
	rev := poll(t, c, b.Credential, 0, 0).Revision
	if status, body := c.Do(http.MethodPost, api.PathLogout, a.Credential, nil, nil); status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", status, body)
	}
	if m := poll(t, c, b.Credential, rev, 0); !slices.Equal(m.PeersRemoved, []api.NodeID{a.Node.ID}) {
		t.Errorf("after a's logout b got removed %v, want [%s]", m.PeersRemoved, a.Node.ID)
	}
	if status, _ := c.Do(http.MethodPost, api.PathLogout, a.Credential, nil, nil); status != http.StatusUnauthorized {
		t.Errorf("second logout: %d, want 401", status)
	}
	// The address is free again for a new node (the pool moves on first).
	nodes, _ := c.Admin.Nodes(ctx(t))
	if len(nodes) != 1 {
		t.Errorf("nodes after logout = %d, want 1", len(nodes))
	}
}

// TestAddressesUnique registers many nodes concurrently and checks that no
// address is handed out twice.
func TestAddressesUnique(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.Register(key, fmt.Sprintf("h%d", i)) })
	}
	wg.Wait()
	nodes, err := c.Admin.Nodes(ctx(t))
	if err != nil || len(nodes) != n {
		t.Fatalf("node list: %d nodes, %v; want %d", len(nodes), err, n)
	}
	seen := map[netip.Addr]api.NodeID{}
	for _, nd := range nodes {
		for _, a := range nd.Addresses {
			if prev, dup := seen[a.Addr()]; dup {
				t.Errorf("address %s given to %s and %s", a.Addr(), prev, nd.ID)
			}
			seen[a.Addr()] = nd.ID
		}
	}
}

// TestBadRequests: every refusal has the right status and a JSON error body
// with a code and a message that says why.
func TestBadRequests(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	a := c.Register(key, "a")
	nk, mk := controllertest.Key[api.NodePublic](), controllertest.Key[api.MachinePublic]()
	valid := fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q}`, key, nk, mk)
	// b's machine key is known, for the refusals that need it.
	bMK := controllertest.Key[api.MachinePublic]()
	var b api.RegisterResponse
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: bMK, Hostname: "b"}, &b); status != 200 {
		t.Fatalf("register b: %d %s", status, body)
	}

	for _, tc := range []struct {
		name, method, path, version, cred string
		body                              []byte
		status                            int
		code, msg                         string
	}{
		{"unknown route", "GET", "/v2/nothing", "1", "", nil, 404, api.CodeNotFound, "no route"},
		{"wrong method", "PUT", api.PathRegister, "1", "", []byte(valid), 405, api.CodeMethodNotAllowed, "use POST"},
		{"no version", "POST", api.PathRegister, "", "", []byte(valid), 400, api.CodeBadRequest, api.HeaderCapabilityVersion},
		{"bad version", "POST", api.PathRegister, "one", "", []byte(valid), 400, api.CodeBadRequest, "not a non-negative decimal integer"},
		{"signed version", "POST", api.PathRegister, "+2", "", []byte(valid), 400, api.CodeBadRequest, "digits only"},
		{"padded version", "POST", api.PathRegister, "02", "", []byte(valid), 400, api.CodeBadRequest, "digits only"},
		{"GET with a body", "GET", api.PathHealthz, "1", "", []byte("{}"), 400, api.CodeBadRequest, "a GET request has no body"},
		{"GET netmap with a body", "GET", api.PathNetmap, "1", a.Credential, []byte("{}"), 400, api.CodeBadRequest, "a GET request has no body"},
		{"metadata endpoint", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":["169.254.169.254:80"]}`), 400, api.CodeBadRequest, "link-local"},
		{"IPv6 link-local endpoint", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":["[fe80::1]:5"]}`), 400, api.CodeBadRequest, "link-local"},
		{"broadcast endpoint", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":["255.255.255.255:5"]}`), 400, api.CodeBadRequest, "broadcast"},
		{"mesh endpoint", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":["100.64.0.9:5"]}`), 400, api.CodeBadRequest, "mesh addresses"},
		{"mapped link-local endpoint", "POST", api.PathRegister, "1", "", []byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q,"endpoints":["[::ffff:169.254.1.1]:5"]}`, key, nk, mk)), 400, api.CodeBadRequest, "link-local"},
		{"old client", "POST", api.PathRegister, "0", "", []byte(valid), 426, api.CodeUpgradeRequired, "upgrade rustynetd"},
		{"empty body", "POST", api.PathRegister, "1", "", nil, 400, api.CodeBadRequest, "empty"},
		{"malformed JSON", "POST", api.PathRegister, "1", "", []byte(`{"auth_key":`), 400, api.CodeBadRequest, "JSON"},
		{"not an object", "POST", api.PathRegister, "1", "", []byte(`[1,2]`), 400, api.CodeBadRequest, "want a JSON object"},
		{"unknown field", "POST", api.PathRegister, "1", "", []byte(`{"auth_key":"x","admin":true}`), 400, api.CodeBadRequest, `unknown field "admin"`},
		{"trailing data", "POST", api.PathRegister, "1", "", []byte(valid + valid), 400, api.CodeBadRequest, "after the JSON object"},
		{"wrong type", "POST", api.PathRegister, "1", "", []byte(`{"listen_port":"x"}`), 400, api.CodeBadRequest, "listen_port"},
		{"bad node key", "POST", api.PathRegister, "1", "", []byte(`{"auth_key":"x","node_key":"abc"}`), 400, api.CodeBadRequest, "node key"},
		{"missing machine key", "POST", api.PathRegister, "1", "", []byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q}`, key, nk)), 400, api.CodeBadRequest, "machine_key is required"},
		{"bad endpoint", "POST", api.PathRegister, "1", "", []byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q,"endpoints":["0.0.0.0:1"]}`, key, nk, mk)), 400, api.CodeBadRequest, "unspecified"},
		{"bad backend", "POST", api.PathRegister, "1", "", []byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q,"backends":["Wire Guard"]}`, key, nk, mk)), 400, api.CodeBadRequest, "backend"},
		{"malformed auth key", "POST", api.PathRegister, "1", "", []byte(fmt.Sprintf(`{"auth_key":"hello","node_key":%q,"machine_key":%q}`, nk, mk)), 401, api.CodeInvalidAuthKey, "malformed auth key"},
		{"too large", "POST", api.PathRegister, "1", "", []byte(`{"auth_key":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`), 413, api.CodeBodyTooLarge, "larger than"},
		{"no credential", "GET", api.PathNetmap, "1", "", nil, 401, api.CodeUnauthorized, "missing credential"},
		{"malformed credential", "GET", api.PathNetmap, "1", "garbage", nil, 401, api.CodeUnauthorized, "malformed credential"},
		{"unknown credential", "GET", api.PathNetmap, "1", api.CredentialPrefix + "n0123456789abcdef_" + strings.Repeat("a", 52), nil, 401, api.CodeUnauthorized, "unknown credential"},
		{"bad since", "GET", api.PathNetmap + "?since=-1", "1", a.Credential, nil, 400, api.CodeBadRequest, "since"},
		{"wait too long", "GET", api.PathNetmap + "?wait=100000", "1", a.Credential, nil, 400, api.CodeBadRequest, "wait"},
		{"re-register another node", "POST", api.PathRegister, "1", a.Credential, []byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q}`, key, nk, bMK)), 403, api.CodeForbidden,
			"the credential does not belong to the node that holds this machine key"},
		{"rotate to own machine key", "POST", api.PathRotateKey, "1", b.Credential, []byte(`{"node_key":"` + bMK.String() + `"}`), 400, api.CodeBadRequest, "node_key must differ from the machine key"},
		{"endpoints not a list", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":5}`), 400, api.CodeBadRequest, "endpoints"},
		{"too many endpoints", "POST", api.PathEndpoints, "1", a.Credential, []byte(`{"endpoints":[` + strings.Repeat(`"192.0.2.1:1",`, 16) + `"192.0.2.1:1"]}`), 400, api.CodeBadRequest, "at most 16"},
		{"logout with junk", "POST", api.PathLogout, "1", a.Credential, []byte(`{"x":1}`), 400, api.CodeBadRequest, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, c.URL+tc.path, bytes.NewReader(tc.body))
			if tc.version != "" {
				req.Header.Set(api.HeaderCapabilityVersion, tc.version)
			}
			if tc.cred != "" {
				req.Header.Set("Authorization", "Bearer "+tc.cred)
			}
			resp, err := c.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q, want application/json", tc.method, tc.path, ct)
			}
			// The body is exactly {"error":{"code":"...","message":"..."}}.
			var eb api.ErrorBody
			dec := json.NewDecoder(resp.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil {
				t.Errorf("%s %s: error body: %v", tc.method, tc.path, err)
			}
			if resp.StatusCode != tc.status || eb.Error == nil || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.msg) {
				t.Errorf("%s %s = %d %+v, want %d %s containing %q", tc.method, tc.path, resp.StatusCode, eb.Error, tc.status, tc.code, tc.msg)
			}
			if got := resp.Header.Get(api.HeaderCapabilityVersion); got != api.CurrentCapabilityVersion.String() {
				t.Errorf("response %s header = %q, want %d", api.HeaderCapabilityVersion, got, api.CurrentCapabilityVersion)
			}
		})
	}
}

// TestRotateKeyToAnotherMachineKey: a node may take a node key that is
// another node's machine key; only its own machine key is refused (see
// TestBadRequests).
func TestRotateKeyToAnotherMachineKey(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	a := c.Register(key, "a")
	bMK := controllertest.Key[api.MachinePublic]()
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: bMK, Hostname: "b"}, nil); status != 200 {
		t.Fatalf("register b: %d %s", status, body)
	}
	nk := api.NodePublic(bMK)
	var n api.Node
	if status, body := c.Do(http.MethodPost, api.PathRotateKey, a.Credential, api.RotateKeyRequest{NodeKey: nk}, &n); status != 200 || n.NodeKey != nk {
		t.Errorf("rotate a to b's machine key: %d %s, node key %s; want 200 and %s", status, body, n.NodeKey, nk)
	}
}

// TestNewerClientIsServed: a client newer than the controller is served at
// the controller's version.
func TestNewerClientIsServed(t *testing.T) {
	c := controllertest.Start(t)
	req, _ := http.NewRequest("GET", c.URL+api.PathHealthz, nil)
	req.Header.Set(api.HeaderCapabilityVersion, "999")
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz from a newer client: %d, want 200", resp.StatusCode)
	}
}

// waitOnline waits until node id holds a long-poll open.
func waitOnline(t *testing.T, c *controllertest.Controller, id api.NodeID) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		nodes, err := c.Admin.Nodes(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.ID == id && n.Online {
				return
			}
		}
	}
	t.Fatalf("node %s opened no long-poll within 10s", id)
}

// TestShutdownAnswersLongPolls: stopping the controller answers open
// long-polls at once instead of waiting out their wait.
func TestShutdownAnswersLongPolls(t *testing.T) {
	c := controllertest.Start(t)
	a := c.Register(c.AuthKey(false), "a")
	rev := poll(t, c, a.Credential, 0, 0).Revision
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?since=%d&wait=100", c.URL, api.PathNetmap, rev), nil)
		req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
		req.Header.Set("Authorization", "Bearer "+a.Credential)
		resp, err := c.Client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitOnline(t, c, a.Node.ID)
	start := time.Now()
	c.Stop()
	select {
	case status := <-done:
		if status != 200 {
			t.Errorf("long-poll during shutdown answered %d, want 200", status)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll still open 15s after shutdown began")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown took %v with a long-poll open", el)
	}
}

// TestRestartKeepsState: nodes, keys, policy and the revision survive a
// restart: a node whose netmap is current is told nothing changed (no storm
// of full netmaps after a restart), and an older one gets a full map.
func TestRestartKeepsState(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true, "tag:x")
	a, b := c.Register(key, "a"), c.Register(key, "b")
	if _, err := c.Admin.SetPolicy(ctx(t), "acls:\n  - action: accept\n    src: [\"tag:x\"]\n    dst: [\"tag:x\"]\n"); err != nil {
		t.Fatal(err)
	}
	rev := poll(t, c, a.Credential, 0, 0).Revision
	c.Restart()
	if m := poll(t, c, a.Credential, rev, 0); m.Full || m.Revision != rev || len(m.PeersChanged)+len(m.PeersRemoved) != 0 {
		t.Errorf("current node after restart got %+v, want an empty delta at revision %d", m, rev)
	}
	m := poll(t, c, a.Credential, rev-1, 0)
	if !m.Full || !slices.Equal(peerIDs(m.Peers), []api.NodeID{b.Node.ID}) {
		t.Errorf("older node after restart: full=%v peers=%v, want a full map with [%s]", m.Full, peerIDs(m.Peers), b.Node.ID)
	}
	c3 := c.Register(key, "c")
	if c3.Node.Addresses[0] == a.Node.Addresses[0] || c3.Node.Addresses[0] == b.Node.Addresses[0] {
		t.Errorf("a node registered after restart got an address in use: %v", c3.Node.Addresses)
	}
}

func TestBackupAndRestore(t *testing.T) {
	c := controllertest.Start(t)
	a := c.Register(c.AuthKey(false), "a")
	var buf bytes.Buffer
	if _, err := c.Admin.Backup(ctx(t), &buf); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.db"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The backup is a store another controller can start from.
	c.DataDir = dir
	os.Rename(filepath.Join(dir, "b.db"), filepath.Join(dir, controller.StoreFile))
	c.Restart()
	nodes, err := c.Admin.Nodes(ctx(t))
	if err != nil || len(nodes) != 1 || nodes[0].ID != a.Node.ID {
		t.Errorf("nodes after restoring the backup = %v, %v; want [%s]", nodes, err, a.Node.ID)
	}
}

// TestLogicalRestoreAnswersAnotherHistoryInFull: the nodes run on while
// the control plane is lost, and hold revisions newer than the backup (or
// of an earlier restore's history). However far the restored controller
// has written since, such a revision gets a full netmap of the restored
// state, never a delta computed from the restored history as if it were
// the node's (which would keep the nodes the backup never held, and miss
// the changes made since).
func TestLogicalRestoreAnswersAnotherHistoryInFull(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	a, b := c.Register(key, "a"), c.Register(key, "b")
	var buf bytes.Buffer
	if _, err := c.Admin.BackupAs(ctx(t), "logical", &buf); err != nil {
		t.Fatal(err)
	}
	exported, err := store.ParseExport(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// Written after the backup: lost with the control plane.
	lost := []api.NodeID{c.Register(key, "lost1").Node.ID, c.Register(key, "lost2").Node.ID}
	seen := poll(t, c, a.Credential, 0, 0).Revision // what node a holds at the loss
	restore := func(prefix string) {
		c.Stop()
		dir := t.TempDir()
		controllertest.CopyCA(t, c.DataDir, dir)
		st, err := bolt.Open(filepath.Join(dir, controller.StoreFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Import(ctx(t), st, bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatal(err)
		}
		st.Close()
		c.DataDir = dir
		c.Restart()
		// The restored controller writes, as far as the revision node a
		// holds would be under a restore that went on from the backup's.
		want := []api.NodeID{b.Node.ID}
		n := min(seen-exported.Revision, 40)
		if seen > exported.Revision+store.RestoreGap {
			n = min(seen-exported.Revision-store.RestoreGap+1, 40)
		}
		for i := uint64(0); i < n; i++ {
			want = append(want, c.Register(key, fmt.Sprintf("%s%d", prefix, i)).Node.ID)
		}
		m := poll(t, c, a.Credential, seen, 0)
		got := peerIDs(m.Peers)
		slices.Sort(got)
		slices.Sort(want)
		if !m.Full || !slices.Equal(got, want) || m.Revision <= seen {
			t.Errorf("node a, at revision %d of another history, after restoring the backup (%s): full=%v revision %d peers %v changed %d removed %v; want a full netmap past it with %v (not %v)",
				seen, prefix, m.Full, m.Revision, got, len(m.PeersChanged), m.PeersRemoved, want, lost)
		}
		seen = m.Revision
		// More writes, which the next restore of the backup will not hold.
		lost = append(lost, c.Register(key, prefix+"-lost").Node.ID)
		seen = poll(t, c, a.Credential, seen, 0).Revision
	}
	restore("first")
	// The same backup again: node a now holds a revision of the first
	// restore's history, which the second must not take for its own.
	restore("second")
}

func TestAdminSocketIsPrivate(t *testing.T) {
	c := controllertest.Start(t)
	fi, err := os.Stat(filepath.Join(c.DataDir, controller.AdminSocket))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("admin socket mode = %o, want 600", mode)
	}
	for _, f := range []string{"ca.key", "server.key"} {
		fi, err := os.Stat(filepath.Join(c.DataDir, controller.TLSDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s mode = %o, want 600", f, mode)
		}
	}
	// A second controller on the same data dir refuses to start.
	err = controller.Run(context.Background(), controller.RunConfig{DataDir: c.DataDir, Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "another") {
		t.Errorf("second controller on the same data dir: %v, want a refusal", err)
	}
}

// TestTLS12 checks the controller-tls12 insecure mode: TLS 1.2 is refused
// by default and with an expired exception, and accepted with one in force.
func TestTLS12(t *testing.T) {
	dial := func(c *controllertest.Controller) error {
		pem, _ := os.ReadFile(c.CAFile)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		conn, err := tls.Dial("tcp", strings.TrimPrefix(c.URL, "https://"), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
		if err == nil {
			conn.Close()
		}
		return err
	}
	// The crypto policy grants the mode for 3 days.
	grants := []insecure.Grant{{Mode: "controller-tls12", Owner: "ops@example.com", Ticket: "OPS-1",
		Expires: time.Now().UTC().Add(72 * time.Hour).Truncate(24 * time.Hour), Source: "test"}}
	for _, tc := range []struct {
		env    string
		accept bool
	}{
		{"", false},
		{"controller-tls12@" + time.Now().Add(-24*time.Hour).Format(time.DateOnly), false},
		{"controller-tls12@" + time.Now().Add(48*time.Hour).Format(time.DateOnly), true},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("RUSTYNET_INSECURE", tc.env)
			c := controllertest.StartWith(t, func(cfg *controller.RunConfig) { cfg.Exceptions, cfg.CryptoPolicy = grants, "test" })
			if err := dial(c); (err == nil) != tc.accept {
				t.Errorf("RUSTYNET_INSECURE=%q: a TLS 1.2 handshake gave %v, want accepted=%v", tc.env, err, tc.accept)
			}
		})
	}
}
