/* SPDX-License-Identifier: MIT
 *
 * Rustynet patch test: crossed initiations consumed by two handshake
 * workers at once.
 */

package device

import (
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tai64n"
)

// TestCrossedResponseKeepsIndex crosses two initiations between devices a
// and b and lets b consume a's response and a's own initiation at the same
// time, as two of its handshake workers would. Whatever order wins, a
// session b derives as initiator must be reachable through b's index table:
// otherwise b can send on it but drops everything a sends back.
//
// Without the re-check under the write lock in ConsumeMessageResponse, the
// initiation's write lands between the response's read-locked checks and
// its write in a good share of the rounds.
func TestCrossedResponseKeepsIndex(t *testing.T) {
	a, b := randDevice(t), randDevice(t)
	defer a.Close()
	defer b.Close()
	peerB, err := a.NewPeer(b.staticIdentity.privateKey.publicKey())
	if err != nil {
		t.Fatal(err)
	}
	peerA, err := b.NewPeer(a.staticIdentity.privateKey.publicKey())
	if err != nil {
		t.Fatal(err)
	}
	peerA.Start()
	peerB.Start()

	var refused int
	for round := range 300 {
		// b initiates; a answers it, then initiates too (its answer was
		// created first, so the response is for b's initiation).
		initB, err := b.CreateMessageInitiation(peerA)
		if err != nil {
			t.Fatal(err)
		}
		if a.ConsumeMessageInitiation(initB) != peerB {
			t.Fatalf("round %d: a refused b's initiation", round)
		}
		resp, err := a.CreateMessageResponse(peerB)
		if err != nil {
			t.Fatal(err)
		}
		if err := peerB.BeginSymmetricSession(); err != nil {
			t.Fatal(err)
		}
		initA, err := a.CreateMessageInitiation(peerB)
		if err != nil {
			t.Fatal(err)
		}

		// b takes both at once.
		var wg sync.WaitGroup
		var gotResp bool
		var respSessionErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			if b.ConsumeMessageResponse(resp) == peerA {
				gotResp = true
				respSessionErr = peerA.BeginSymmetricSession()
			}
		}()
		go func() {
			defer wg.Done()
			if b.ConsumeMessageInitiation(initA) == peerA {
				if _, err := b.CreateMessageResponse(peerA); err == nil {
					peerA.BeginSymmetricSession()
				}
			}
		}()
		wg.Wait()

		peerA.keypairs.RLock()
		cur := peerA.keypairs.current
		peerA.keypairs.RUnlock()
		if gotResp && respSessionErr == nil {
			if cur == nil || !cur.isInitiator {
				t.Fatalf("round %d: b accepted the response but holds no initiator session", round)
			}
			if got := b.indexTable.Lookup(cur.localIndex).keypair; got != cur {
				t.Fatalf("round %d: b's session from the response has local index %#x, which its index table does not map to it: b would drop all a sends on it", round, cur.localIndex)
			}
		}
		if !gotResp {
			refused++
		}
		// Start the next round from no sessions on either side, and let
		// the next initiations through the replay and flood checks.
		for _, p := range []*Peer{peerA, peerB} {
			p.ZeroAndFlushAll()
			p.handshake.mutex.Lock()
			p.handshake.lastTimestamp = tai64n.Timestamp{}
			p.handshake.lastInitiationConsumption = time.Time{}
			p.handshake.mutex.Unlock()
		}
	}
	t.Logf("rounds where b refused the response because a's initiation came first: %d of 300", refused)
}
