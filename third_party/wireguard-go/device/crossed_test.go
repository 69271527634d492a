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

// TestCrossedInitiationsReinitiate crosses an initiation from each of two
// devices: each consumes the other's and answers it, and each refuses the
// answer to its own, as the index it names is gone. Unpatched, neither
// holds a session it may send on until RekeyTimeout (5 s) lets a new
// initiation out. With the patch, the device with the lower static key
// initiates again after crossedRetry; the other does not, so the new
// initiation does not cross again. When a handshake completes after the
// crossing (the other side took our answer), nobody initiates again.
func TestCrossedInitiationsReinitiate(t *testing.T) {
	for _, completes := range []bool{false, true} {
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

		// The initiations cross: each device consumes the other's and
		// answers it, and refuses the answer to its own.
		if lo.ConsumeMessageInitiation(initHi) != peerHi || hi.ConsumeMessageInitiation(initLo) != peerLo {
			t.Fatal("a crossing initiation was refused")
		}
		// Answer as SendHandshakeResponse does (which cannot hand us the
		// message): it stamps lastSentHandshake, creates the response and
		// derives the responder session.
		answer := func(d *Device, p *Peer) *MessageResponse {
			p.handshake.mutex.Lock()
			p.handshake.lastSentHandshake = time.Now()
			p.handshake.mutex.Unlock()
			resp, err := d.CreateMessageResponse(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.BeginSymmetricSession(); err != nil {
				t.Fatal(err)
			}
			return resp
		}
		respLo, respHi := answer(lo, peerHi), answer(hi, peerLo)
		if completes {
			// hi took lo's answer; lo's session confirms when hi's first
			// packet arrives, as the data path does.
			peerHi.lastHandshakeNano.Store(time.Now().UnixNano())
		} else {
			if lo.ConsumeMessageResponse(respHi) != nil || hi.ConsumeMessageResponse(respLo) != nil {
				t.Fatal("an answer to a replaced initiation was taken")
			}
		}

		state := func(p *Peer) handshakeState {
			p.handshake.mutex.RLock()
			defer p.handshake.mutex.RUnlock()
			return p.handshake.state
		}
		// Wait for the retry, or for long enough that it would have come.
		deadline := time.Now().Add(10 * crossedRetry)
		for time.Now().Before(deadline) {
			if state(peerHi) == handshakeInitiationCreated {
				break
			}
			time.Sleep(crossedRetry / 10)
		}
		loState, hiState := state(peerHi), state(peerLo)
		if completes {
			if loState == handshakeInitiationCreated {
				t.Errorf("a handshake completed, yet the lower key initiated again")
			}
		} else if loState != handshakeInitiationCreated {
			t.Errorf("the lower key did not initiate again after the crossing (state %v)", loState)
		}
		if hiState == handshakeInitiationCreated {
			t.Errorf("the higher key initiated again: its initiation would cross the lower key's")
		}
		a.Close()
		b.Close()
	}
}
