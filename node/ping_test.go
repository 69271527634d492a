package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node"
)

// TestPingReplyBeforeRead: a reply that is back before Ping starts
// waiting for it still counts. Here Ping is held up for 200 ms after it
// sends each echo, as a loaded machine can hold it up for the round trip
// of a fast link (under a millisecond); wireguard-go's netstack ping
// endpoint wakes a reader only for packets that arrive while it waits, so
// reading the reply from it lost such a reply and Ping timed out (0.2% of
// the echoes of `rustynet ping` between two node containers).
func TestPingReplyBeforeRead(t *testing.T) {
	m := &netstackMesh{t: t, ctl: controllertest.Start(t), reg: backends(), backend: "wireguard"}
	key := m.AuthKey()
	cfg := m.config("alpha", key)
	cfg.ProbeInterval = -1
	a := startNetstackNode(t, cfg)
	cfg = m.config("bravo", key)
	cfg.ProbeInterval = -1
	b := startNetstackNode(t, cfg)
	// The first echo brings the WireGuard session up; the hold-up
	// applies from the second on.
	if _, err := a.node().Ping(context.Background(), b.Name(), 5*time.Second); err != nil {
		t.Fatalf("first ping: %v", err)
	}
	node.SetEchoSentHook(a.node(), func() { time.Sleep(200 * time.Millisecond) })
	for _, peer := range []string{b.Name(), b.Addr().String(), b.Addr6().String()} {
		res, err := a.node().Ping(context.Background(), peer, 2*time.Second)
		if err != nil {
			t.Errorf("Ping(%s) with the reply back before Ping waits: %v", peer, err)
			continue
		}
		if res.RTT <= 0 || res.RTT > 2*time.Second {
			t.Errorf("Ping(%s) RTT = %v, want more than 0, within the 2 s timeout", peer, res.RTT)
		}
	}
}
