package controller

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Registration challenges are stateless: the challenge is a random nonce,
// its issue time and a MAC over both, and the controller's ephemeral
// X25519 key for it is derived from the challenge with a secret of this
// process. A challenge therefore holds for the lifetime of the process
// that issued it only; a node whose challenge is refused asks for a new
// one.

const challengePrefix = "c1."

// challenger issues and checks registration challenges.
type challenger struct {
	secret [32]byte
	now    func() time.Time
	recent recentKeys
}

// recentKeys remembers the ephemeral keys of the challenges issued last,
// for their proofs: deriving a key computes its public half too, so a
// proof checked with a remembered key costs one X25519 multiplication
// rather than two. It is a memo only: a challenge it no longer holds (a
// retry, many challenges issued since, a proof sent to another replica's
// challenge) has its key derived again, as the challenge is stateless.
// Its size bounds the memory whatever the rate of challenges; a node
// answers its challenge within a round trip, so the last few hundred
// cover the proofs in flight.
type recentKeys struct {
	mu   sync.Mutex
	keys map[[challengeRaw]byte]*ecdh.PrivateKey
	ring [recentKeysSize][challengeRaw]byte
	next int
}

const recentKeysSize = 256

func (r *recentKeys) add(raw []byte, k *ecdh.PrivateKey) {
	id := [challengeRaw]byte(raw)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = make(map[[challengeRaw]byte]*ecdh.PrivateKey, recentKeysSize)
	}
	delete(r.keys, r.ring[r.next])
	r.ring[r.next] = id
	r.next = (r.next + 1) % recentKeysSize
	r.keys[id] = k
}

// take returns the remembered key of raw and forgets it, or nil.
func (r *recentKeys) take(raw []byte) *ecdh.PrivateKey {
	id := [challengeRaw]byte(raw)
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys[id]
	delete(r.keys, id)
	return k
}

const (
	challengeBody = 24 // nonce and issue time
	challengeTag  = 16
	challengeRaw  = challengeBody + challengeTag
)

// tag is the MAC of a challenge's body.
func (c *challenger) tag(body []byte) []byte {
	mac := hmac.New(sha256.New, c.secret[:])
	mac.Write([]byte("rustynet register challenge tag v1\x00"))
	mac.Write(body)
	return mac.Sum(nil)[:challengeTag]
}

// key derives the ephemeral private key of a raw challenge.
func (c *challenger) key(raw []byte) *ecdh.PrivateKey {
	mac := hmac.New(sha256.New, c.secret[:])
	mac.Write([]byte("rustynet register challenge key v1\x00"))
	mac.Write(raw)
	k, err := ecdh.X25519().NewPrivateKey(mac.Sum(nil))
	if err != nil {
		panic(err) // every 32-byte string is an X25519 private key
	}
	return k
}

func (c *challenger) issue() api.RegisterChallenge {
	raw := make([]byte, challengeBody, challengeRaw)
	copy(raw, randomBytes(16))
	now := c.now()
	binary.BigEndian.PutUint64(raw[16:], uint64(now.Unix()))
	raw = append(raw, c.tag(raw)...)
	k := c.key(raw)
	c.recent.add(raw, k)
	return api.RegisterChallenge{
		Challenge: challengePrefix + base64.RawURLEncoding.EncodeToString(raw),
		Key:       api.MachinePublic(k.PublicKey().Bytes()),
		ExpiresAt: time.Unix(now.Unix(), 0).Add(api.ChallengeTTL).UTC(),
	}
}

// verify checks that proof proves the machine key of req under its
// challenge. The refusal says why.
func (c *challenger) verify(req *api.RegisterRequest) error {
	refuse := func(format string, args ...any) error {
		return unauthorized("machine proof refused: "+format+"; ask %s for a new challenge", append(args, api.PathRegisterChallenge)...)
	}
	enc, ok := strings.CutPrefix(req.Challenge, challengePrefix)
	raw, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if !ok || err != nil || len(raw) != challengeRaw || !hmac.Equal(raw[challengeBody:], c.tag(raw[:challengeBody])) {
		return refuse("the challenge is not one this controller issued (or it was issued before a restart)")
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[16:challengeBody])), 0)
	now := c.now()
	if now.Sub(issued) > api.ChallengeTTL || issued.Sub(now) > time.Minute {
		return refuse("the challenge expired (it is valid for %s)", api.ChallengeTTL)
	}
	proof, err := api.DecodeProof(req.MachineProof)
	if err != nil {
		return badRequest("%s", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(req.MachineKey[:])
	if err != nil {
		return refuse("the machine key is not an X25519 public key")
	}
	k := c.recent.take(raw)
	if k == nil {
		k = c.key(raw)
	}
	shared, err := k.ECDH(pub)
	if err != nil {
		// A low-order point: no one holds a private key for it.
		return refuse("the machine key is not usable for a proof")
	}
	want := api.MachineProof([32]byte(shared), req.Challenge, req.MachineKey, req.NodeKey)
	if !hmac.Equal(want[:], proof[:]) {
		return refuse("it does not match the machine key and node key")
	}
	return nil
}

func (s *Server) registerChallenge(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.challenges.issue())
}

// needProof is the refusal of a client of capability 3 or later that sent
// no machine proof.
func needProof() error {
	return badRequest("a registration from capability version 3 on carries challenge and machine_proof: GET %s first", api.PathRegisterChallenge)
}
