package controller

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

func proveFor(t testing.TB, ch api.RegisterChallenge, m *ecdh.PrivateKey, nk api.NodePublic) *api.RegisterRequest {
	t.Helper()
	peer, err := ecdh.X25519().NewPublicKey(ch.Key[:])
	if err != nil {
		t.Fatal(err)
	}
	shared, err := m.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	mk := api.MachinePublic(m.PublicKey().Bytes())
	return &api.RegisterRequest{MachineKey: mk, NodeKey: nk, Challenge: ch.Challenge,
		MachineProof: api.EncodeProof(api.MachineProof([32]byte(shared), ch.Challenge, mk, nk))}
}

// TestChallengeLifetime: a proof holds while its challenge is fresh, and
// not after api.ChallengeTTL, nor under another process's secret.
func TestChallengeLifetime(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	c := &challenger{now: func() time.Time { return now }}
	copy(c.secret[:], randomBytes(32))
	m, _ := ecdh.X25519().GenerateKey(rand.Reader)
	req := proveFor(t, c.issue(), m, api.NodePublic{1})
	if err := c.verify(req); err != nil {
		t.Fatalf("fresh proof refused: %v", err)
	}
	now = now.Add(api.ChallengeTTL + time.Second)
	if err := c.verify(req); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("proof past the challenge's life: %v, want a refusal saying it expired", err)
	}
	other := &challenger{now: c.now}
	copy(other.secret[:], randomBytes(32))
	now = now.Add(-api.ChallengeTTL)
	var e *api.Error
	if err := other.verify(req); !errors.As(err, &e) || !strings.Contains(e.Message, "not one this controller issued") {
		t.Errorf("proof under another secret: %v, want a refusal", err)
	}
}

// FuzzMachineProof: whatever challenge and proof a client sends, verify
// refuses with an *api.Error and never panics; only the genuine one passes.
func FuzzMachineProof(f *testing.F) {
	c := &challenger{now: time.Now}
	copy(c.secret[:], randomBytes(32))
	m, _ := ecdh.X25519().GenerateKey(rand.Reader)
	good := proveFor(f, c.issue(), m, api.NodePublic{1})
	f.Add(good.Challenge, good.MachineProof, good.MachineKey[:])
	f.Add("c1.", "", []byte{})
	f.Add("c1."+strings.Repeat("_", 54), strings.Repeat("A", 44), make([]byte, 32))
	f.Fuzz(func(t *testing.T, challenge, proof string, mk []byte) {
		req := &api.RegisterRequest{Challenge: challenge, MachineProof: proof, NodeKey: api.NodePublic{1}}
		copy(req.MachineKey[:], mk)
		err := c.verify(req)
		if err == nil {
			if challenge != good.Challenge || proof != good.MachineProof || req.MachineKey != good.MachineKey {
				t.Fatalf("verify accepted a proof that is not the genuine one: %q %q %x", challenge, proof, mk)
			}
			return
		}
		var e *api.Error
		if !errors.As(err, &e) || e.Status/100 != 4 {
			t.Fatalf("verify(%q, %q) = %v, want a 4xx *api.Error", challenge, proof, err)
		}
	})
}
