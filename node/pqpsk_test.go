package node

import (
	"testing"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/pq"
)

// TestPairPQ: what a pair runs, for every mode on this side, the peer's
// mode and scheme, and the backend's kind.
func TestPairPQ(t *testing.T) {
	capable := func(mode string) *api.Node { return &api.Node{PQ: []string{pq.Scheme, "later-scheme"}, PQMode: mode} }
	old := &api.Node{} // an earlier release: no scheme, no mode
	for _, c := range []struct {
		name        string
		self        string
		peer        *api.Node
		psk, native bool
		want        pqWant
	}{
		{"off", api.PQOff, capable(api.PQPrefer), true, false, pqWantClassical},
		{"unset is off", "", capable(api.PQRequire), true, false, pqWantClassical},
		{"prefer, capable", api.PQPrefer, capable(api.PQPrefer), true, false, pqWantPSK},
		{"prefer, peer requires", api.PQPrefer, capable(api.PQRequire), true, false, pqWantPSK},
		{"prefer, peer off", api.PQPrefer, capable(api.PQOff), true, false, pqWantClassical},
		{"prefer, old peer", api.PQPrefer, old, true, false, pqWantClassical},
		{"prefer, unknown scheme only", api.PQPrefer, &api.Node{PQ: []string{"later-scheme"}, PQMode: api.PQPrefer}, true, false, pqWantClassical},
		{"require, capable", api.PQRequire, capable(api.PQPrefer), true, false, pqWantPSK},
		{"require, old peer", api.PQRequire, old, true, false, pqWantRefuse},
		{"require, peer off", api.PQRequire, capable(api.PQOff), true, false, pqWantRefuse},
		{"require, backend without preshared keys", api.PQRequire, capable(api.PQPrefer), false, false, pqWantRefuse},
		{"prefer, backend without preshared keys", api.PQPrefer, capable(api.PQPrefer), false, false, pqWantClassical},
		{"require, post-quantum backend", api.PQRequire, old, false, true, pqWantNative},
	} {
		got, why := pairPQ(c.self, c.peer, c.psk, c.native)
		if got != c.want {
			t.Errorf("%s: %v (%s), want %v", c.name, got, why, c.want)
		}
		if got != pqWantPSK && got != pqWantNative && why == "" {
			t.Errorf("%s: no reason given for %v", c.name, got)
		}
	}
}
