// Package key holds a node's private keys. They are distinct types so that
// a node key cannot be used where a machine key is meant, they cannot be
// compared with ==, and they never print their secret.
package key

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/rustynet/rustynet/controller/api"
)

// private is a Curve25519 private key.
type private struct {
	_ [0]func() // not comparable
	k [32]byte
}

func newPrivate() private {
	sk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	var p private
	copy(p.k[:], sk.Bytes())
	return p
}

func (p *private) public() [32]byte {
	sk, err := ecdh.X25519().NewPrivateKey(p.k[:])
	if err != nil {
		panic(err) // every 32-byte string is a valid X25519 private key
	}
	return [32]byte(sk.PublicKey().Bytes())
}

func (p *private) isZero() bool { return subtle.ConstantTimeCompare(p.k[:], make([]byte, 32)) == 1 }

func (p *private) equal(o *private) bool { return subtle.ConstantTimeCompare(p.k[:], o.k[:]) == 1 }

func (p *private) marshal(prefix string) []byte {
	return []byte(prefix + base64.StdEncoding.EncodeToString(p.k[:]))
}

func (p *private) unmarshal(prefix string, b []byte) error {
	s := string(b)
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return fmt.Errorf("private key: want the prefix %q", prefix)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s[len(prefix):])
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("private key: want 32 bytes of standard base64 after %q", prefix)
	}
	copy(p.k[:], raw)
	if p.isZero() {
		return fmt.Errorf("private key is all zeros")
	}
	return nil
}

// NodePrivate is a node's WireGuard private key.
type NodePrivate struct{ p private }

// NewNode generates a node key.
func NewNode() NodePrivate { return NodePrivate{newPrivate()} }

// Public returns the public half.
func (k NodePrivate) Public() api.NodePublic { return api.NodePublic(k.p.public()) }

// IsZero reports whether the key is unset.
func (k NodePrivate) IsZero() bool { return k.p.isZero() }

// Equal reports whether k and o are the same key, in constant time.
func (k NodePrivate) Equal(o NodePrivate) bool { return k.p.equal(&o.p) }

// UAPI returns the key in the hex form of the WireGuard UAPI.
func (k NodePrivate) UAPI() string { return hex.EncodeToString(k.p.k[:]) }

// Raw returns the key bytes, for a backend's own crypto.
func (k NodePrivate) Raw() [32]byte { return k.p.k }

// String never shows the secret.
func (k NodePrivate) String() string { return "nodeprivate:<redacted>" }

// MarshalText implements encoding.TextMarshaler ("privkey:" and base64).
func (k NodePrivate) MarshalText() ([]byte, error) { return k.p.marshal("privkey:"), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *NodePrivate) UnmarshalText(b []byte) error { return k.p.unmarshal("privkey:", b) }

// MachinePrivate is a node's long-lived machine key.
type MachinePrivate struct{ p private }

// NewMachine generates a machine key.
func NewMachine() MachinePrivate { return MachinePrivate{newPrivate()} }

// Public returns the public half.
func (k MachinePrivate) Public() api.MachinePublic { return api.MachinePublic(k.p.public()) }

// IsZero reports whether the key is unset.
func (k MachinePrivate) IsZero() bool { return k.p.isZero() }

// String never shows the secret.
func (k MachinePrivate) String() string { return "machineprivate:<redacted>" }

// Prove answers a registration challenge: the proof that the holder of k
// registers node key nodeKey (see api.MachineProof).
func (k MachinePrivate) Prove(ch *api.RegisterChallenge, nodeKey api.NodePublic) (string, error) {
	sk, err := ecdh.X25519().NewPrivateKey(k.p.k[:])
	if err != nil {
		return "", err
	}
	peer, err := ecdh.X25519().NewPublicKey(ch.Key[:])
	if err != nil {
		return "", fmt.Errorf("challenge key: %w", err)
	}
	shared, err := sk.ECDH(peer)
	if err != nil {
		return "", fmt.Errorf("challenge key: %w", err)
	}
	return api.EncodeProof(api.MachineProof([32]byte(shared), ch.Challenge, k.Public(), nodeKey)), nil
}

// MarshalText implements encoding.TextMarshaler ("mkey:" and base64).
func (k MachinePrivate) MarshalText() ([]byte, error) { return k.p.marshal("mkey:"), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *MachinePrivate) UnmarshalText(b []byte) error { return k.p.unmarshal("mkey:", b) }
