package controller

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// A proof verifies whether its challenge's key is remembered or derived
// again, once only from the memo, and the memo stays bounded.
func TestChallengeRecentKeys(t *testing.T) {
	now := time.Now()
	c := &challenger{now: func() time.Time { return now }}
	copy(c.secret[:], randomBytes(32))
	m, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ch := c.issue()
	if len(c.recent.keys) != 1 {
		t.Fatalf("%d keys remembered, want 1", len(c.recent.keys))
	}
	req := proveFor(t, ch, m, api.NodePublic{1})
	if err := c.verify(req); err != nil {
		t.Fatal(err)
	}
	if len(c.recent.keys) != 0 {
		t.Fatalf("%d keys remembered after the proof, want 0", len(c.recent.keys))
	}
	if err := c.verify(req); err != nil { // derived again
		t.Fatal(err)
	}
	bad := proveFor(t, ch, m, api.NodePublic{2})
	bad.NodeKey = api.NodePublic{3}
	if err := c.verify(bad); err == nil {
		t.Fatal("a proof for another node key verified")
	}
	for range 3 * recentKeysSize {
		c.issue()
	}
	if len(c.recent.keys) != recentKeysSize {
		t.Fatalf("%d keys remembered, want %d", len(c.recent.keys), recentKeysSize)
	}
	// A challenge issued long ago, forgotten: still verifies.
	old := c.issue()
	for range recentKeysSize {
		c.issue()
	}
	if err := c.verify(proveFor(t, old, m, api.NodePublic{4})); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkChallengeVerify(b *testing.B) {
	c := &challenger{now: time.Now}
	copy(c.secret[:], randomBytes(32))
	m, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for b.Loop() {
		req := proveFor(b, c.issue(), m, api.NodePublic{1})
		if err := c.verify(req); err != nil {
			b.Fatal(err)
		}
	}
}
