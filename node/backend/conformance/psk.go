package conformance

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/node/backend"
)

// The cases of backends that carry preshared keys (Spec.PresharedKeys),
// which the node's post-quantum exchange (node/pq) installs and rotates.

// pskPeer is in's peer entry with preshared key k.
func pskPeer(in *instance, k [32]byte) backend.Peer {
	p := in.peer()
	p.PresharedKey = k
	return p
}

// rehandshake asks in's backend for a handshake with peer now, when it can
// (backend.Rehandshaker); otherwise the next rekey moves the session.
func rehandshake(t *testing.T, in, peer *instance) {
	t.Helper()
	rh, ok := in.b.(backend.Rehandshaker)
	if !ok {
		return
	}
	if err := in.host.Do(func() error { return rh.Rehandshake(peer.key.Public()) }); err != nil {
		t.Fatalf("Rehandshake: %v", err)
	}
}

// testPresharedKeyRotation: a preshared key installed on both sides, then
// replaced twice, MUST move the session onto each (a handshake completes
// after each install) and MUST NOT lose a packet of a stream across the
// rotations; a new pair whose preshared keys differ MUST NOT pass a packet.
func testPresharedKeyRotation(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	connect(a, b)
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	b.drain()

	// A numbered stream from a to b, one packet every 5 ms.
	const every = 5 * time.Millisecond
	stop := make(chan struct{})
	var sent, got int
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := uint32(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if a.inject(packet(a.ip, b.ip, 100, seq)) == nil {
				sent++
			}
		}
	})
	done := make(chan struct{})
	var counted sync.WaitGroup
	counted.Go(func() {
		for {
			select {
			case p := <-b.recv:
				if len(p) == 100 && binary.BigEndian.Uint32(p[28:32]) > 0 {
					got++
				}
			case <-done:
				return
			}
		}
	})
	start := time.Now()
	for i, k := range [][32]byte{{1}, {2}, {3}} {
		before, _ := handshakeOf(t, b, a)
		a.set(pskPeer(b, k)) // as the node does: the initiator installs first
		b.set(pskPeer(a, k))
		// WireGuard sends no initiation within 5 s of its last: ask
		// again until one completes, as the node does.
		deadline, asked := time.Now().Add(15*time.Second), time.Time{}
		for {
			if hs, ok := handshakeOf(t, b, a); ok && hs.After(before) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rotation %d: no handshake on the new key within 15s", i+1)
			}
			if time.Since(asked) > time.Second {
				rehandshake(t, b, a)
				asked = time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the last packets in flight
	close(done)
	counted.Wait()
	metric(t, "psk_rotation_lost", float64(sent-got), "packets")
	t.Logf("%d packets sent over %v and 3 rotations, %d delivered", sent, time.Since(start).Round(time.Millisecond), got)
	if got != sent {
		t.Errorf("%d packets sent across 3 preshared-key rotations, %d delivered: want none lost", sent, got)
	}

	c, d := e.instance(t, 2), e.instance(t, 3)
	c.set(pskPeer(d, [32]byte{4}))
	d.set(pskPeer(c, [32]byte{5}))
	p := packet(c.ip, d.ip, 100, 1)
	for range 4 {
		if err := c.inject(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.quiet(3*time.Second, p); err != nil {
		t.Errorf("peers whose preshared keys differ: %v", err)
	}
	if hs, _ := handshakeOf(t, c, d); !hs.IsZero() {
		t.Error("peers whose preshared keys differ completed a handshake")
	}
}

// testRefusedDowngrade: a peer configured with a preshared key MUST NOT
// exchange a packet with one that has none, in either direction: stripping
// the key on one side (a peer of an older release, or one an attacker
// reconfigured) cannot downgrade the pair to a classical session.
func testRefusedDowngrade(t *testing.T, e *env) {
	a, b := e.instance(t, 0), e.instance(t, 1)
	a.set(pskPeer(b, [32]byte{9}))
	b.set(a.peer())
	for _, dir := range [][2]*instance{{a, b}, {b, a}} {
		from, to := dir[0], dir[1]
		p := packet(from.ip, to.ip, 100, 7)
		for range 4 {
			if err := from.inject(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := to.quiet(3*time.Second, p); err != nil {
			t.Errorf("%s -> %s with a preshared key on one side only: %v", from.ip, to.ip, err)
		}
	}
	for _, in := range []*instance{a, b} {
		if hs, _ := handshakeOf(t, in, map[*instance]*instance{a: b, b: a}[in]); !hs.IsZero() {
			t.Errorf("%s completed a handshake with a peer whose preshared key differs", in.ip)
		}
	}
	if t.Failed() {
		return
	}
	// With the same key on both sides the pair works: the refusal was
	// the key's doing.
	b.set(pskPeer(a, [32]byte{9}))
	if err := send(a, b, 100, 10*time.Second); err != nil {
		t.Error(fmt.Errorf("with the same preshared key on both sides: %w", err))
	}
}
