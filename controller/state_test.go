package controller

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/controller/acl"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/controller/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testNode(i int, tags ...string) *store.Node {
	n := storetest.Node(i)
	n.Tags = tags
	n.CredentialHash = store.Hash{byte(i)}
	return n
}

func TestNetmapDeltaWindow(t *testing.T) {
	a, b, c := testNode(1), testNode(2), testNode(3)
	st := newState(10, map[api.NodeID]*store.Node{a.ID: a, b.ID: b}, acl.AllowAll(), nil)
	at := time.Now()

	// Unchanged since 10: an empty delta.
	m, _, _, err := st.netmap(a.ID, a.CredentialHash, 10, api.CurrentCapabilityVersion)
	if err != nil || m.Full || m.Revision != 10 || len(m.PeersChanged)+len(m.PeersRemoved) != 0 {
		t.Fatalf("netmap(since=10) = %+v, %v; want an empty delta at 10", m, err)
	}
	// Older than the log: a full map.
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 9, api.CurrentCapabilityVersion); !m.Full || len(m.Peers) != 1 {
		t.Errorf("netmap(since=9) full=%v peers=%d, want a full map with 1 peer", m.Full, len(m.Peers))
	}
	// From the future (another controller's revision): a full map.
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 99, api.CurrentCapabilityVersion); !m.Full {
		t.Errorf("netmap(since=99) is not full")
	}
	// A wrong credential hash is refused.
	if _, _, _, err := st.netmap(a.ID, store.Hash{9}, 10, api.CurrentCapabilityVersion); err != errNodeGone {
		t.Errorf("netmap with a wrong credential: %v, want errNodeGone", err)
	}

	_, wake, _, _ := st.netmap(a.ID, a.CredentialHash, 10, api.CurrentCapabilityVersion)
	st.apply(11, at, []effect{{nodes: []nodeUpdate{{c.ID, c}}}})
	select {
	case <-wake:
	default:
		t.Fatal("a change did not wake waiters")
	}
	st.apply(12, at, []effect{{nodes: []nodeUpdate{{b.ID, nil}}}})
	m, _, changedAt, _ := st.netmap(a.ID, a.CredentialHash, 10, api.CurrentCapabilityVersion)
	if m.Full || m.Revision != 12 || len(m.PeersChanged) != 1 || m.PeersChanged[0].ID != c.ID ||
		!slices.Equal(m.PeersRemoved, []api.NodeID{b.ID}) || !changedAt.Equal(at) {
		t.Errorf("netmap(since=10) after add c, remove b = %+v; want c changed, b removed at 12", m)
	}
	// A node added and removed within the window was never seen: nothing.
	d := testNode(4)
	st.apply(13, at, []effect{{nodes: []nodeUpdate{{d.ID, d}}}})
	st.apply(14, at, []effect{{nodes: []nodeUpdate{{d.ID, nil}}}})
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 12, api.CurrentCapabilityVersion); len(m.PeersChanged)+len(m.PeersRemoved) != 0 {
		t.Errorf("a node that came and went between polls showed up: %+v", m)
	}
	// A change to the receiver's own tags needs a full map.
	a2 := a.Clone()
	a2.Tags = []string{"tag:new"}
	st.apply(15, at, []effect{{nodes: []nodeUpdate{{a.ID, a2}}}})
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 14, api.CurrentCapabilityVersion); !m.Full {
		t.Errorf("own tags changed: got a delta, want a full map")
	}
}

// TestNetmapHidesUnpermittedPeers: a delta never names a node the receiver
// may not see, not even as removed.
func TestNetmapHidesUnpermittedPeers(t *testing.T) {
	p, err := acl.Parse([]byte("acls:\n  - action: accept\n    src: [\"tag:a\"]\n    dst: [\"tag:a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := testNode(1, "tag:a"), testNode(2, "tag:b")
	st := newState(1, map[api.NodeID]*store.Node{a.ID: a}, p, nil)
	st.apply(2, time.Now(), []effect{{nodes: []nodeUpdate{{b.ID, b}}}})
	st.apply(3, time.Now(), []effect{{nodes: []nodeUpdate{{b.ID, nil}}}})
	for since := uint64(1); since <= 2; since++ {
		m, _, _, _ := st.netmap(a.ID, a.CredentialHash, since, api.CurrentCapabilityVersion)
		if len(m.PeersChanged)+len(m.PeersRemoved) != 0 {
			t.Errorf("netmap(since=%d) for tag:a mentions tag:b's node: %+v", since, m)
		}
	}
	// A peer whose tags change out of view is removed; into view, added.
	a2 := testNode(3, "tag:a")
	st.apply(4, time.Now(), []effect{{nodes: []nodeUpdate{{a2.ID, a2}}}})
	moved := a2.Clone()
	moved.Tags = []string{"tag:b"}
	st.apply(5, time.Now(), []effect{{nodes: []nodeUpdate{{a2.ID, moved}}}})
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 4, api.CurrentCapabilityVersion); !slices.Equal(m.PeersRemoved, []api.NodeID{a2.ID}) {
		t.Errorf("peer moved out of view: removed = %v, want [%s]", m.PeersRemoved, a2.ID)
	}
}

// TestNetmapBackends: peers that run different backends are stubs for a
// client of capability 2 (saying why, with no keys or endpoints) and absent
// for a client of capability 1; the policy chooses the backend.
func TestNetmapBackends(t *testing.T) {
	a, b := testNode(1), testNode(2)
	b.Backends = []string{"quic"}
	st := newState(1, map[api.NodeID]*store.Node{a.ID: a, b.ID: b}, acl.AllowAll(), nil)
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 0, 1); len(m.Peers) != 0 {
		t.Errorf("a capability-1 wireguard node got a quic-only peer: %v", m.Peers)
	}
	m, _, _, _ := st.netmap(a.ID, a.CredentialHash, 0, 2)
	if len(m.Peers) != 1 || m.Peers[0].Unreachable == "" || !m.Peers[0].NodeKey.IsZero() || len(m.Peers[0].Addresses) != 0 || len(m.Peers[0].Endpoints) != 0 {
		t.Errorf("capability 2: peers = %+v, want one stub without key, addresses or endpoints", m.Peers)
	}
	// A policy that moves a (which supports both) to quic makes b a full
	// peer and says so in a's self.
	a.Backends = []string{"wireguard", "quic"}
	p, err := acl.Parse([]byte("acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\nbackends:\n  - nodes: [\"*\"]\n    backend: quic\n"))
	if err != nil {
		t.Fatal(err)
	}
	st = newState(1, map[api.NodeID]*store.Node{a.ID: a, b.ID: b}, p, nil)
	m, _, _, _ = st.netmap(a.ID, a.CredentialHash, 0, 2)
	if len(m.Peers) != 1 || m.Peers[0].Unreachable != "" || m.Peers[0].NodeKey != b.NodeKey || !slices.Equal(m.Self.Backends, []string{"quic"}) {
		t.Errorf("with a quic policy: self backends %v, peers %+v; want quic and b as a full peer", m.Self.Backends, m.Peers)
	}
}

func TestLogTrimming(t *testing.T) {
	a := testNode(1)
	st := newState(0, map[api.NodeID]*store.Node{a.ID: a}, acl.AllowAll(), nil)
	for rev := uint64(1); rev <= maxLogEntries+10; rev++ {
		n := testNode(int(rev%1000) + 2)
		st.apply(rev, time.Now(), []effect{{nodes: []nodeUpdate{{n.ID, n}}}})
	}
	if len(st.log) > maxLogEntries || st.logFrom == 0 {
		t.Fatalf("log holds %d entries from %d, want at most %d and a raised floor", len(st.log), st.logFrom, maxLogEntries)
	}
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, st.logFrom-1, api.CurrentCapabilityVersion); !m.Full {
		t.Error("a revision that fell off the log got a delta, want a full map")
	}
	if m, _, _, _ := st.netmap(a.ID, a.CredentialHash, st.logFrom, api.CurrentCapabilityVersion); m.Full {
		t.Error("the oldest revision the log covers got a full map, want a delta")
	}
}

// TestMetricsLint exercises every metric and runs promlint over them.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _, cred := testServer(t, reg)
	h := s.Handler()
	for _, target := range []string{api.PathHealthz, api.PathNetmap + "?wait=0", "/nope"} {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set(api.HeaderCapabilityVersion, "1")
		req.Header.Set("Authorization", "Bearer "+cred)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if !strings.HasPrefix(mf.GetName(), "rustynet_controller_") {
			t.Errorf("metric %s lacks the rustynet_controller_ prefix", mf.GetName())
		}
	}
	for _, want := range []string{"rustynet_controller_http_requests_total", "rustynet_controller_nodes",
		"rustynet_controller_netmap_polls_open", "rustynet_controller_registrations_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s missing (have %v)", want, names)
		}
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("unmatched", "404")); got != 1 {
		t.Errorf("requests_total{route=unmatched,code=404} = %v, want 1", got)
	}
}

// TestExpiredAuthKeyRefused moves the controller's clock past a key's
// expiry and registers with it.
func TestExpiredAuthKeyRefused(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{Store: st, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", api.AdminPathAuthKeys, strings.NewReader(`{"ttl_seconds":60}`)))
	var ak api.CreateAuthKeyResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ak); err != nil {
		t.Fatalf("create key: %s", rec.Body)
	}
	now = now.Add(61 * time.Second)
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("POST", api.PathRegister, strings.NewReader(`{"auth_key":"`+ak.Key+`","node_key":"`+fuzzNK+`","machine_key":"`+fuzzMK+`"}`))
	req.Header.Set(api.HeaderCapabilityVersion, "1")
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "expired at 2026-11-25T12:01:00Z") {
		t.Errorf("register with an expired key: %d %s, want 401 saying when it expired", rec.Code, rec.Body)
	}
}
