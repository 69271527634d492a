package api

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// KeyLen is the length of every public key on the wire (Curve25519).
const KeyLen = 32

// NodePublic is a node's WireGuard (data plane) public key. Its text form is
// the standard base64 that `wg pubkey` prints, so keys can be pasted between
// wireguard-tools and the API.
type NodePublic [KeyLen]byte

// MachinePublic is a node's long-lived machine identity key. It names a
// machine across re-registrations and is distinct from NodePublic, which
// rotates. Its text form is standard base64.
type MachinePublic [KeyLen]byte

var errZeroKey = errors.New("key is all zeros")

// ParseNodePublic parses the base64 text form of a node key.
func ParseNodePublic(s string) (NodePublic, error) {
	var k NodePublic
	err := parseKey(k[:], s)
	return k, err
}

// ParseMachinePublic parses the base64 text form of a machine key.
func ParseMachinePublic(s string) (MachinePublic, error) {
	var k MachinePublic
	err := parseKey(k[:], s)
	return k, err
}

func parseKey(dst []byte, s string) error {
	if len(s) != base64.StdEncoding.EncodedLen(KeyLen) {
		return fmt.Errorf("key must be %d bytes in standard base64 (%d characters), got %d characters",
			KeyLen, base64.StdEncoding.EncodedLen(KeyLen), len(s))
	}
	// 44 base64 characters decode to at most 33 bytes; decode into a
	// buffer that size, not into dst.
	var buf [KeyLen + 1]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != KeyLen {
		return fmt.Errorf("key is not valid standard base64")
	}
	if [KeyLen]byte(buf[:KeyLen]) == [KeyLen]byte{} {
		return errZeroKey
	}
	copy(dst, buf[:KeyLen])
	return nil
}

// IsZero reports whether k is unset.
func (k NodePublic) IsZero() bool { return k == NodePublic{} }

// String returns the base64 form.
func (k NodePublic) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k NodePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *NodePublic) UnmarshalText(b []byte) error {
	p, err := ParseNodePublic(string(b))
	if err != nil {
		return fmt.Errorf("node key: %w", err)
	}
	*k = p
	return nil
}

// IsZero reports whether k is unset.
func (k MachinePublic) IsZero() bool { return k == MachinePublic{} }

// String returns the base64 form.
func (k MachinePublic) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k MachinePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *MachinePublic) UnmarshalText(b []byte) error {
	p, err := ParseMachinePublic(string(b))
	if err != nil {
		return fmt.Errorf("machine key: %w", err)
	}
	*k = p
	return nil
}
