package controller_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store/etcd/etcdtest"
)

// replicas starts n controller replicas over one etcd cluster of members
// members, the second and later taking the first's CA.
func replicas(t *testing.T, members, n int) (*etcdtest.Cluster, []*controllertest.Controller) {
	t.Helper()
	cluster := etcdtest.NewCluster(t, members, etcdtest.Options{})
	cfg := controller.EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/mesh/"}
	var cs []*controllertest.Controller
	for i := range n {
		from := ""
		if i > 0 {
			from = cs[0].DataDir
		}
		cs = append(cs, controllertest.StartReplica(t, cfg, from))
	}
	return cluster, cs
}

// TestReplicasServeOneMesh: nodes registered through different replicas
// see each other; a change made through one replica reaches a long-poll
// held on another; a node that moves replicas with its revision gets a
// delta, not a full netmap; every replica's admin socket works, and the
// netmap lists the replicas.
func TestReplicasServeOneMesh(t *testing.T) {
	_, cs := replicas(t, 1, 2)
	a, b := cs[0], cs[1]
	r1 := a.Register(a.AuthKey(false), "one")
	m := poll(t, a, r1.Credential, 0, 0)
	if !m.Full || len(m.Peers) != 0 {
		t.Fatalf("first netmap on a: %+v", m)
	}
	// node one moves to b with its revision and waits there.
	got := make(chan *api.MapResponse, 1)
	go func() { got <- poll(t, b, r1.Credential, m.Revision, 20) }()
	b.WaitPolls(1)
	r2 := b.Register(b.AuthKey(false), "two") // a key made through b's admin socket
	select {
	case d := <-got:
		if d.Full || len(d.PeersChanged) != 1 || d.PeersChanged[0].ID != r2.Node.ID {
			t.Fatalf("node one's delta on b after two registered there: %+v", d)
		}
		m = d
	case <-time.After(15 * time.Second):
		t.Fatal("the registration through b did not reach the long-poll on b")
	}
	// And back to a, which learns of b's change from etcd's watch: a
	// long-poll, as a node makes, since a may not have seen that
	// revision yet (a netmap is never ahead of its replica's feed).
	d := poll(t, a, r1.Credential, m.Revision-1, 20)
	if d.Full || len(d.PeersChanged) != 1 || d.PeersChanged[0].ID != r2.Node.ID {
		t.Fatalf("node one's delta on a from revision %d: %+v", m.Revision-1, d)
	}
	// The netmap lists both replicas once they have announced.
	want := []string{a.URL, b.URL}
	slices.Sort(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := poll(t, b, r2.Credential, 0, 0)
		if slices.Equal(d.Controllers, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("netmap controllers = %q, want %q", d.Controllers, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Both replicas' admin sockets list both nodes.
	for _, c := range cs {
		nodes, err := c.Admin.Nodes(ctx(t))
		if err != nil || len(nodes) != 2 {
			t.Errorf("admin node list on %s: %d nodes, %v", c.URL, len(nodes), err)
		}
	}
}

// waitReplicas waits until c's netmap for the node with cred lists the
// replicas want.
func waitReplicas(t *testing.T, c *controllertest.Controller, cred string, want []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if d := poll(t, c, cred, 0, 0); slices.Equal(d.Controllers, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed the replicas %q", c.URL, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRegistrationsGoThroughOneWriter: the replicas hand registrations to
// one of them, the first announced URL, which commits them; each is
// answered once the replica the node asked serves the new node, so the
// node's next request there succeeds. Once the writer stops, the others
// commit their own.
func TestRegistrationsGoThroughOneWriter(t *testing.T) {
	_, cs := replicas(t, 1, 3)
	want := []string{cs[0].URL, cs[1].URL, cs[2].URL}
	slices.Sort(want)
	seed := cs[0].Register(cs[0].AuthKey(false), "seed")
	for _, c := range cs {
		waitReplicas(t, c, seed.Credential, want)
	}
	// A node, credential and all, cannot hand a replica a write.
	for _, c := range cs {
		forged := map[string]any{"register": map[string]any{"machine_key": controllertest.Key[api.MachinePublic](), "node_key": controllertest.Key[api.NodePublic](),
			"auth_key_id": "x", "new_id": "n0123456789abcdef"}}
		if status, body := c.Do(http.MethodPost, controller.PathReplicaCommit, seed.Credential, forged, nil); status != http.StatusForbidden {
			t.Fatalf("a node handing %s a write: %d %s, want 403", c.URL, status, body)
		}
	}
	var writer *controllertest.Controller
	for _, c := range cs {
		if c.URL == want[0] {
			writer = c
		}
	}
	scrape := func(c *controllertest.Controller, series string) float64 {
		v, err := controllertest.Scrape(c.MetricsURL, series)
		if err != nil {
			return 0 // not exported until first counted
		}
		return v
	}
	// (The seed may have been handed on, or not, as the replicas were
	// announcing themselves: count from here.)
	before := map[*controllertest.Controller]float64{}
	for _, c := range cs {
		before[c] = scrape(c, `rustynet_controller_writes_forwarded_total{result="ok"}`)
	}
	taken := scrape(writer, "rustynet_controller_writes_for_replicas_total")
	const perReplica = 5
	for i, c := range cs {
		key := c.AuthKey(true)
		for j := range perReplica {
			r := c.Register(key, fmt.Sprintf("w%d-%d", i, j))
			// At once, on the same replica: it must know the node.
			poll(t, c, r.Credential, 0, 0)
			if j == 0 {
				// An endpoint report, handed over too: the answer and
				// the replica's netmap have it at once.
				ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)}), 41641)
				var v api.Node
				if status, body := c.Do(http.MethodPost, api.PathEndpoints, r.Credential, api.EndpointsRequest{Endpoints: []netip.AddrPort{ep}}, &v); status != http.StatusOK || !slices.Contains(v.Endpoints, ep) {
					t.Fatalf("endpoint report through %s: %d %s", c.URL, status, body)
				}
				if m := poll(t, c, r.Credential, 0, 0); !slices.Contains(m.Self.Endpoints, ep) {
					t.Errorf("%s's netmap right after the report: endpoints %v, want %v", c.URL, m.Self.Endpoints, ep)
				}
			}
		}
	}
	var forwarded float64
	for _, c := range cs {
		f := scrape(c, `rustynet_controller_writes_forwarded_total{result="ok"}`) - before[c]
		if c == writer && f != 0 {
			t.Errorf("the writer %s handed %v registrations on", c.URL, f)
		}
		forwarded += f
	}
	taken = scrape(writer, "rustynet_controller_writes_for_replicas_total") - taken
	if want := float64(2*perReplica + 2); forwarded != want || taken != want { // and 2 endpoint reports
		t.Errorf("registrations handed to the writer: %v sent, %v taken; want %v", forwarded, taken, want)
	}

	// The writer goes; the others move on to the next writer or commit
	// their own, and registrations go on.
	writer.Stop()
	var rest []*controllertest.Controller
	for _, c := range cs {
		if c != writer {
			rest = append(rest, c)
		}
	}
	for _, c := range rest {
		r := c.Register(c.AuthKey(false), "after")
		poll(t, c, r.Credential, 0, 0)
	}
	// Every replica has every node (the other's last one through etcd's
	// watch, a moment later).
	for _, c := range rest {
		deadline := time.Now().Add(10 * time.Second)
		for {
			nodes, err := c.Admin.Nodes(ctx(t))
			if err == nil && len(nodes) == 1+3*perReplica+len(rest) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("admin node list on %s: %d nodes, %v; want %d", c.URL, len(nodes), err, 1+3*perReplica+len(rest))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestManyEndpointReportsAtOnce: endpoint reports from many nodes at
// once, coalesced into one batch and handed to the writer, exceed what one
// etcd transaction may hold (--max-txn-ops, 128 by default: 6 per changed
// node): every report is still stored, on both sides of the hand-over.
func TestManyEndpointReportsAtOnce(t *testing.T) {
	_, cs := replicas(t, 1, 2)
	seed := cs[0].Register(cs[0].AuthKey(false), "seed")
	want := []string{cs[0].URL, cs[1].URL}
	slices.Sort(want)
	waitReplicas(t, cs[1], seed.Credential, want)
	for _, c := range cs { // through the writer, and through the other
		key := c.AuthKey(true)
		const n = 60
		creds := make([]string, n)
		for i := range creds {
			creds[i] = c.Register(key, fmt.Sprintf("many-%d", i)).Credential
		}
		var wg sync.WaitGroup
		status := make([]int, n)
		body := make([][]byte, n)
		for i := range creds {
			wg.Go(func() {
				ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)}), 41641)
				status[i], body[i] = c.Do(http.MethodPost, api.PathEndpoints, creds[i], api.EndpointsRequest{Endpoints: []netip.AddrPort{ep}}, nil)
			})
		}
		wg.Wait()
		for i := range status {
			if status[i] != http.StatusOK {
				t.Fatalf("endpoint report %d through %s: %d %s", i, c.URL, status[i], body[i])
			}
		}
	}
}

// TestSingleUseKeyAcrossReplicas: two replicas race to register two
// different machines with one single-use key, many times over: each key
// registers exactly one node.
func TestSingleUseKeyAcrossReplicas(t *testing.T) {
	_, cs := replicas(t, 3, 2)
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	wins := [2]int{}
	for i := range rounds {
		key := cs[0].AuthKey(false)
		var status [2]int
		var body [2][]byte
		var wg sync.WaitGroup
		for j, c := range cs {
			wg.Go(func() {
				req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](),
					MachineKey: controllertest.Key[api.MachinePublic](), Hostname: fmt.Sprintf("r%d-%d", i, j)}
				status[j], body[j] = c.Do(http.MethodPost, api.PathRegister, "", req, nil)
			})
		}
		wg.Wait()
		ok := 0
		for j := range status {
			switch status[j] {
			case http.StatusOK:
				ok++
				wins[j]++
			case http.StatusUnauthorized:
			default:
				t.Fatalf("round %d: replica %d answered %d %s", i, j, status[j], body[j])
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d registrations with one single-use key succeeded (%d %s / %d %s)", i, ok, status[0], body[0], status[1], body[1])
		}
	}
	t.Logf("%d rounds: replica a registered %d, b %d", rounds, wins[0], wins[1])
}

// TestEtcdDown: without etcd, a replica answers writes 503 with
// Retry-After and a JSON error that says why, never a hang or a 500; its
// health check says so; a node's long-poll is still answered from memory.
func TestEtcdDown(t *testing.T) {
	cluster, cs := replicas(t, 1, 1)
	c := cs[0]
	key := c.AuthKey(true)
	r1 := c.Register(key, "one")
	m := poll(t, c, r1.Credential, 0, 0)
	cluster.Members[0].Stop()

	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: controllertest.Key[api.MachinePublic](), Hostname: "two"}
	start := time.Now()
	status, body := c.Do(http.MethodPost, api.PathRegister, "", req, nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("register with etcd down: %d %s, want 503", status, body)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil || eb.Error.Code != api.CodeUnavailable {
		t.Errorf("503 body %s: want an error of code %q", body, api.CodeUnavailable)
	}
	t.Logf("503 after %v: %s", time.Since(start).Round(time.Millisecond), body)

	hreq, _ := http.NewRequest(http.MethodGet, c.URL+api.PathHealthz, nil)
	resp, err := c.Client.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("healthz with etcd down: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := poll(t, c, r1.Credential, m.Revision, 0); d.Revision != m.Revision {
		t.Errorf("long-poll with etcd down: revision %d, want %d", d.Revision, m.Revision)
	}
}

// TestSweepLeaderMoves: one replica at a time leads (runs the sweep); when
// it stops, another takes over.
func TestSweepLeaderMoves(t *testing.T) {
	_, cs := replicas(t, 1, 2)
	leaders := func() []int {
		var l []int
		for i, c := range cs {
			if c.MetricsURL == "" {
				continue
			}
			if v, err := controllertest.Scrape(c.MetricsURL, "rustynet_controller_leader"); err == nil && v == 1 {
				l = append(l, i)
			}
		}
		return l
	}
	waitLeaders := func(ok func([]int) bool, what string) []int {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			l := leaders()
			if ok(l) {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("leaders %v: want %s", l, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	l := waitLeaders(func(l []int) bool { return len(l) == 1 }, "exactly one")
	first := l[0]
	cs[first].Stop()
	cs[first].MetricsURL = ""
	waitLeaders(func(l []int) bool { return len(l) == 1 && l[0] != first }, "the other replica")
}
