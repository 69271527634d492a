package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
)

// Proof of the machine key.
//
// A node proves that it holds the private half of the machine key it
// registers with, so that nobody can register (or take back) a machine key
// they merely know. The controller hands out a challenge and an ephemeral
// X25519 public key (GET PathRegisterChallenge); the node computes the
// X25519 shared secret of its machine private key and that public key, and
// sends MachineProof(shared, ...) with the registration. The controller
// computes the same secret from its ephemeral private key and the machine
// public key. The proof binds the challenge, the machine key and the node
// key, so it cannot be replayed for another registration.
//
// Since capability version 3 a registration carries a proof; a
// registration whose machine key is already registered (a retry after a
// lost answer) is answered with the same node only when it carries one.

// PathRegisterChallenge is GET -> RegisterChallenge. Since capability 3.
const PathRegisterChallenge = "/v1/register/challenge"

// ChallengeTTL is how long a challenge may be used after it was issued.
const ChallengeTTL = 5 * time.Minute

// MaxChallengeLen bounds the text of a challenge.
const MaxChallengeLen = 128

// RegisterChallenge is the answer to GET PathRegisterChallenge.
type RegisterChallenge struct {
	// Challenge is opaque; send it back unchanged in
	// RegisterRequest.Challenge.
	Challenge string `json:"challenge"`
	// Key is the controller's ephemeral X25519 public key for this
	// challenge.
	Key MachinePublic `json:"key"`
	// ExpiresAt is when the challenge stops being accepted.
	ExpiresAt time.Time `json:"expires_at"`
}

// ProofLen is the length of a machine proof.
const ProofLen = sha256.Size

// MachineProof returns the proof that the holder of the machine key
// machine, which shares the secret shared with the controller's challenge
// key, asks to register node key nodeKey under challenge.
func MachineProof(shared [32]byte, challenge string, machine MachinePublic, nodeKey NodePublic) [ProofLen]byte {
	mac := hmac.New(sha256.New, shared[:])
	mac.Write([]byte("rustynet machine proof v1\x00"))
	mac.Write([]byte(challenge))
	mac.Write([]byte{0})
	mac.Write(machine[:])
	mac.Write(nodeKey[:])
	return [ProofLen]byte(mac.Sum(nil))
}

// EncodeProof is the wire form of a proof (standard base64).
func EncodeProof(p [ProofLen]byte) string { return base64.StdEncoding.EncodeToString(p[:]) }

// DecodeProof parses the wire form of a proof.
func DecodeProof(s string) ([ProofLen]byte, error) {
	var p [ProofLen]byte
	if len(s) != base64.StdEncoding.EncodedLen(ProofLen) {
		return p, fmt.Errorf("machine_proof must be %d bytes in standard base64", ProofLen)
	}
	var buf [ProofLen + 1]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != ProofLen {
		return p, fmt.Errorf("machine_proof is not valid standard base64")
	}
	copy(p[:], buf[:ProofLen])
	return p, nil
}
