package wireguard

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

// syncBuffer is a log's output, safe to read while wireguard-go logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoEndpointLoggedOnce: wireguard-go tries a handshake every 5 s with
// a peer it has no endpoint for, and says "no known endpoint for peer" each
// time; the node's log has it once, at warning level, until the peer's
// state changes (here: it is removed and added again), and the repeats at
// debug level.
func TestNoEndpointLoggedOnce(t *testing.T) {
	var out syncBuffer
	ct := tuntest.NewChannelTUN()
	b, err := New(backend.Options{Device: ct.TUN(), Logger: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	self, peerKey := key.NewNode(), key.NewNode()
	// The keepalive makes wireguard-go start a handshake at once.
	offline := backend.Peer{PublicKey: peerKey.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}, Keepalive: time.Second}
	if err := b.Reconfig(&backend.Config{PrivateKey: self, Peers: []backend.Peer{offline}}); err != nil {
		t.Fatal(err)
	}
	warnings := func() int {
		n := 0
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "no known endpoint") {
				n++
			}
		}
		return n
	}
	attempts := func() int { return strings.Count(out.String(), "Failed to send handshake initiation") }
	start := time.Now()
	// A second attempt comes after wireguard-go's 5 s rekey timeout.
	waitFor(t, 10*time.Second, "two handshake attempts", func() bool { return attempts() >= 2 })
	t.Logf("%d attempts in %v", attempts(), time.Since(start).Round(time.Millisecond))
	if n := warnings(); n != 1 {
		t.Errorf("%d warnings for %d attempts, want 1:\n%s", n, attempts(), out.String())
	}
	if err := b.Reconfig(&backend.Config{PrivateKey: self}); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconfig(&backend.Config{PrivateKey: self, Peers: []backend.Peer{offline}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a warning for the peer added again", func() bool { return warnings() == 2 })
	if name := peerName(peerKey.Public()); !strings.Contains(out.String(), "peer="+name) && !strings.Contains(out.String(), fmt.Sprintf("peer=%q", name)) {
		t.Errorf("the warning does not name %s:\n%s", name, out.String())
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
