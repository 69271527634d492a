/* SPDX-License-Identifier: MIT
 *
 * Rustynet patch test: crossed initiations consumed by two handshake
 * workers at once.
 */

package device

import (
	"bytes"
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

// TestCrossedInitiationsOneCompletes sends an initiation from each of two
// devices at once, each crossing the other's on the wire. The device with
// the lower static key keeps its own and drops the other's; the other
// answers it; the answer completes a handshake, so a session exists at
// once and nothing waits for the 5 s retry. Unpatched, each consumes the
// other's initiation, each refuses the answer to its own, and neither
// holds a session to send on.
//
// An initiation of its own sent longer ago than RekeyTimeout is not in
// flight any more: then the lower device answers the other's as well.
func TestCrossedInitiationsOneCompletes(t *testing.T) {
	for _, inFlight := range []bool{true, false} {
		a, b := randDevice(t), randDevice(t)
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
		lo, hi, peerHi, peerLo := a, b, peerB, peerA // lo's peer hi, hi's peer lo
		if bytes.Compare(a.staticIdentity.publicKey[:], b.staticIdentity.publicKey[:]) > 0 {
			lo, hi, peerHi, peerLo = b, a, peerA, peerB
		}
		sent := time.Now()
		if !inFlight {
			sent = sent.Add(-RekeyTimeout - time.Second)
		}
		for _, p := range []*Peer{peerHi, peerLo} {
			p.handshake.mutex.Lock()
			p.handshake.lastSentHandshake = sent // as SendHandshakeInitiation does
			p.handshake.mutex.Unlock()
		}
		initLo, err := lo.CreateMessageInitiation(peerHi)
		if err != nil {
			t.Fatal(err)
		}
		initHi, err := hi.CreateMessageInitiation(peerLo)
		if err != nil {
			t.Fatal(err)
		}

		// The initiations cross: each device receives the other's.
		loTook := lo.ConsumeMessageInitiation(initHi) == peerHi
		hiTook := hi.ConsumeMessageInitiation(initLo) == peerLo
		if !hiTook {
			t.Fatalf("in flight %v: the device with the higher key refused the crossing initiation", inFlight)
		}
		if loTook != !inFlight {
			t.Fatalf("in flight %v: the device with the lower key consumed the crossing initiation: %v", inFlight, loTook)
		}
		if !inFlight {
			a.Close()
			b.Close()
			continue
		}
		resp, err := hi.CreateMessageResponse(peerLo)
		if err != nil {
			t.Fatal(err)
		}
		if err := peerLo.BeginSymmetricSession(); err != nil {
			t.Fatal(err)
		}
		if lo.ConsumeMessageResponse(resp) != peerHi {
			t.Fatal("the device with the lower key refused the answer to its own initiation")
		}
		if err := peerHi.BeginSymmetricSession(); err != nil {
			t.Fatal(err)
		}
		peerHi.keypairs.RLock()
		cur := peerHi.keypairs.current
		peerHi.keypairs.RUnlock()
		peerLo.keypairs.RLock()
		next := peerLo.keypairs.next.Load()
		peerLo.keypairs.RUnlock()
		if cur == nil || !cur.isInitiator || next == nil || cur.remoteIndex != next.localIndex {
			t.Fatalf("no matching session: initiator %+v, responder %+v", cur, next)
		}
		a.Close()
		b.Close()
	}
}
