// Package pq is the post-quantum preshared-key exchange that node pairs run
// over their WireGuard tunnel, in the manner of Rosenpass: an ML-KEM-768
// exchange (crypto/mlkem) whose secret, bound to both nodes' keys, becomes
// the pair's WireGuard preshared key (PSK). WireGuard mixes the PSK into
// every handshake, so traffic recorded today stays secret from an attacker
// who later breaks X25519 (harvest now, decrypt later), as long as ML-KEM
// holds; and it stays as secret as plain WireGuard if ML-KEM falls.
//
// One exchange is three messages over a TCP connection inside the tunnel,
// from the initiator (the node with the lower node key) to the responder's
// mesh address, port Port:
//
//	Init     epoch, initiator key, responder key, ML-KEM-768 encapsulation key (fresh each time)
//	Resp     epoch, ML-KEM ciphertext, responder's confirmation tag
//	Confirm  epoch, initiator's confirmation tag
//
// (or Refuse, with why, in place of Resp). The key schedule:
//
//	th  = SHA-256("rustynet pq-psk v1" || epoch || kI || kR || ek || ct)
//	prk = HKDF-Extract(SHA-256, secret = ML-KEM secret || X25519(node keys), salt = th)
//	psk = HKDF-Expand(prk, "psk", 32)
//	tag = HMAC-SHA-256(HKDF-Expand(prk, "responder confirm" | "initiator confirm", 32), th)
//
// The tunnel authenticates the messages (WireGuard delivers a packet from
// a peer's mesh address only if that peer's key sealed it), and the
// static-static X25519 secret of the two node keys binds the PSK to them
// as well: a party without either node's private key that relayed or
// altered the exchange (a relay, the controller) cannot compute the PSK,
// and the confirmation tags fail, so it cannot sit in the middle unseen.
// Each side installs the PSK only after checking the other's tag: the
// initiator on Resp, the responder on Confirm.
package pq

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/key"
)

// Scheme names this exchange where nodes advertise what they support
// (the registration's pq field, the netmap's peers).
const Scheme = "mlkem768-psk-v1"

// Port is the TCP port, on each node's mesh addresses, where the
// responder listens.
const Port = 5362

// Message types.
const (
	TypeInit    byte = 1
	TypeResp    byte = 2
	TypeConfirm byte = 3
	TypeRefuse  byte = 4
)

const (
	magic   = "RNPQ"
	version = 1
	// headerLen: magic, version, type, body length (uint16, big endian).
	headerLen = len(magic) + 1 + 1 + 2
	tagLen    = sha256.Size

	initLen    = 8 + 2*api.KeyLen + mlkem.EncapsulationKeySize768
	respLen    = 8 + mlkem.CiphertextSize768 + tagLen
	confirmLen = 8 + tagLen
	// MaxRefuseLen bounds a refusal's text.
	MaxRefuseLen = 200
)

// PSK is a pair's preshared key. It prints redacted; Fingerprint tells
// two apart without revealing either.
type PSK [32]byte

// String implements fmt.Stringer without the key.
func (p PSK) String() string { return "psk:<redacted>" }

// IsZero reports whether p is unset.
func (p PSK) IsZero() bool { return p == PSK{} }

// Fingerprint is the first 8 bytes of SHA-256 over the key, in hex: what
// status output and logs may show to say that a key changed, or that two
// nodes hold the same one.
func (p PSK) Fingerprint() string {
	h := sha256.Sum256(append([]byte("rustynet pq-psk fingerprint"), p[:]...))
	return hex.EncodeToString(h[:8])
}

// RefusedError is a refusal the responder sent, with its reason.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "the peer refused the exchange: " + e.Reason }

// Initiator is the initiator's side of one exchange.
type Initiator struct {
	self  key.NodePrivate
	peer  api.NodePublic
	epoch uint64
	dk    *mlkem.DecapsulationKey768
	ek    []byte
}

// NewInitiator starts an exchange of epoch with peer, and returns the Init
// message to send (header included).
func NewInitiator(self key.NodePrivate, peer api.NodePublic, epoch uint64) (*Initiator, []byte, error) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, nil, err
	}
	i := &Initiator{self: self, peer: peer, epoch: epoch, dk: dk, ek: dk.EncapsulationKey().Bytes()}
	body := make([]byte, 0, initLen)
	body = binary.BigEndian.AppendUint64(body, epoch)
	pub := self.Public()
	body = append(body, pub[:]...)
	body = append(body, peer[:]...)
	body = append(body, i.ek...)
	return i, frame(TypeInit, body), nil
}

// Finish reads the responder's answer (a whole message, header included):
// it returns the PSK and the Confirm message to send, or why not.
func (i *Initiator) Finish(msg []byte) (PSK, []byte, error) {
	typ, body, err := Parse(msg)
	if err != nil {
		return PSK{}, nil, err
	}
	switch typ {
	case TypeRefuse:
		return PSK{}, nil, &RefusedError{Reason: string(body)}
	case TypeResp:
	default:
		return PSK{}, nil, fmt.Errorf("pq: want a response (type %d), got type %d", TypeResp, typ)
	}
	if epoch := binary.BigEndian.Uint64(body); epoch != i.epoch {
		return PSK{}, nil, fmt.Errorf("pq: the response is for epoch %d, this exchange is epoch %d", epoch, i.epoch)
	}
	ct := body[8 : 8+mlkem.CiphertextSize768]
	tag := body[8+mlkem.CiphertextSize768:]
	ss, err := i.dk.Decapsulate(ct)
	if err != nil {
		return PSK{}, nil, fmt.Errorf("pq: decapsulate: %w", err)
	}
	pub := i.self.Public()
	ks, err := schedule(i.self, i.peer, ss, transcript(i.epoch, pub, i.peer, i.ek, ct))
	if err != nil {
		return PSK{}, nil, err
	}
	if !hmac.Equal(tag, ks.respTag) {
		return PSK{}, nil, errors.New("pq: the responder's confirmation does not match: it does not hold the responder's node key, or the exchange was altered")
	}
	confirm := binary.BigEndian.AppendUint64(make([]byte, 0, confirmLen), i.epoch)
	confirm = append(confirm, ks.initTag...)
	return ks.psk, frame(TypeConfirm, confirm), nil
}

// Responder is the responder's side of one exchange, between its Resp and
// the initiator's Confirm.
type Responder struct {
	epoch   uint64
	psk     PSK
	initTag []byte
}

// Epoch is the exchange's epoch.
func (r *Responder) Epoch() uint64 { return r.epoch }

// Respond answers an Init message (header included) that came from the
// mesh address of the node whose key is from. It returns the Resp message
// to send. The Init must name from as its initiator and this node as its
// responder.
func Respond(self key.NodePrivate, from api.NodePublic, msg []byte) (*Responder, []byte, error) {
	typ, body, err := Parse(msg)
	if err != nil {
		return nil, nil, err
	}
	if typ != TypeInit {
		return nil, nil, fmt.Errorf("pq: want an init (type %d), got type %d", TypeInit, typ)
	}
	epoch := binary.BigEndian.Uint64(body)
	kI := api.NodePublic(body[8 : 8+api.KeyLen])
	kR := api.NodePublic(body[8+api.KeyLen : 8+2*api.KeyLen])
	ekb := body[8+2*api.KeyLen:]
	if kI != from {
		return nil, nil, fmt.Errorf("pq: the init names %s as its initiator but came from the mesh address of %s", kI.String(), from.String())
	}
	if pub := self.Public(); kR != pub {
		return nil, nil, fmt.Errorf("pq: the init is for %s, not this node (%s)", kR.String(), pub.String())
	}
	ek, err := mlkem.NewEncapsulationKey768(ekb)
	if err != nil {
		return nil, nil, fmt.Errorf("pq: the encapsulation key: %w", err)
	}
	ss, ct := ek.Encapsulate()
	ks, err := schedule(self, from, ss, transcript(epoch, kI, kR, ekb, ct))
	if err != nil {
		return nil, nil, err
	}
	resp := binary.BigEndian.AppendUint64(make([]byte, 0, respLen), epoch)
	resp = append(resp, ct...)
	resp = append(resp, ks.respTag...)
	return &Responder{epoch: epoch, psk: ks.psk, initTag: ks.initTag}, frame(TypeResp, resp), nil
}

// Finish reads the initiator's Confirm (header included) and returns the
// PSK once the initiator has proved it derived the same.
func (r *Responder) Finish(msg []byte) (PSK, error) {
	typ, body, err := Parse(msg)
	if err != nil {
		return PSK{}, err
	}
	if typ != TypeConfirm {
		return PSK{}, fmt.Errorf("pq: want a confirm (type %d), got type %d", TypeConfirm, typ)
	}
	if epoch := binary.BigEndian.Uint64(body); epoch != r.epoch {
		return PSK{}, fmt.Errorf("pq: the confirm is for epoch %d, this exchange is epoch %d", epoch, r.epoch)
	}
	if !hmac.Equal(body[8:], r.initTag) {
		return PSK{}, errors.New("pq: the initiator's confirmation does not match: it does not hold the initiator's node key, or the exchange was altered")
	}
	return r.psk, nil
}

// Refusal is a Refuse message saying why.
func Refusal(reason string) []byte {
	if len(reason) > MaxRefuseLen {
		reason = reason[:MaxRefuseLen]
	}
	return frame(TypeRefuse, []byte(reason))
}

// Parse checks one whole message (header included) and returns its type
// and body. Every refusal says what is wrong.
func Parse(msg []byte) (byte, []byte, error) {
	if len(msg) < headerLen {
		return 0, nil, fmt.Errorf("pq: a message of %d bytes is shorter than its header (%d)", len(msg), headerLen)
	}
	if string(msg[:len(magic)]) != magic {
		return 0, nil, errors.New("pq: not a rustynet pq-psk message (bad magic)")
	}
	if v := msg[len(magic)]; v != version {
		return 0, nil, fmt.Errorf("pq: version %d, this build speaks %d", v, version)
	}
	typ := msg[len(magic)+1]
	n := int(binary.BigEndian.Uint16(msg[len(magic)+2:]))
	body := msg[headerLen:]
	if len(body) != n {
		return 0, nil, fmt.Errorf("pq: the header says %d bytes of body, the message has %d", n, len(body))
	}
	want := -1
	switch typ {
	case TypeInit:
		want = initLen
	case TypeResp:
		want = respLen
	case TypeConfirm:
		want = confirmLen
	case TypeRefuse:
		if n > MaxRefuseLen {
			return 0, nil, fmt.Errorf("pq: a refusal of %d bytes (at most %d)", n, MaxRefuseLen)
		}
		return typ, body, nil
	default:
		return 0, nil, fmt.Errorf("pq: unknown message type %d", typ)
	}
	if n != want {
		return 0, nil, fmt.Errorf("pq: a message of type %d has %d bytes of body, want %d", typ, n, want)
	}
	return typ, body, nil
}

// ReadMessage reads one whole message (header included) from r.
func ReadMessage(r io.Reader) ([]byte, error) {
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr[:len(magic)], []byte(magic)) {
		return nil, errors.New("pq: not a rustynet pq-psk message (bad magic)")
	}
	n := int(binary.BigEndian.Uint16(hdr[len(magic)+2:]))
	if n > initLen {
		return nil, fmt.Errorf("pq: a message of %d bytes of body (at most %d)", n, initLen)
	}
	msg := make([]byte, headerLen+n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[headerLen:]); err != nil {
		return nil, fmt.Errorf("pq: the message's body: %w", err)
	}
	return msg, nil
}

func frame(typ byte, body []byte) []byte {
	msg := make([]byte, 0, headerLen+len(body))
	msg = append(msg, magic...)
	msg = append(msg, version, typ)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(body)))
	return append(msg, body...)
}

func transcript(epoch uint64, kI, kR api.NodePublic, ek, ct []byte) []byte {
	h := sha256.New()
	h.Write([]byte("rustynet pq-psk v1"))
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	h.Write(kI[:])
	h.Write(kR[:])
	h.Write(ek)
	h.Write(ct)
	return h.Sum(nil)
}

type keys struct {
	psk              PSK
	respTag, initTag []byte
}

// schedule derives the PSK and both confirmation tags from the ML-KEM
// secret ss, the static-static X25519 secret of self and peer, and the
// transcript hash th.
func schedule(self key.NodePrivate, peer api.NodePublic, ss, th []byte) (*keys, error) {
	raw := self.Raw()
	priv, err := ecdh.X25519().NewPrivateKey(raw[:])
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, err
	}
	dh, err := priv.ECDH(pub) // fails on a low-order point (an all-zero result)
	if err != nil {
		return nil, fmt.Errorf("pq: X25519 with the peer's node key: %w", err)
	}
	prk, err := hkdf.Extract(sha256.New, append(append([]byte{}, ss...), dh...), th)
	if err != nil {
		return nil, err
	}
	expand := func(info string) []byte {
		b, _ := hkdf.Expand(sha256.New, prk, info, 32) // 32 bytes of SHA-256 cannot fail
		return b
	}
	ks := &keys{}
	copy(ks.psk[:], expand("psk"))
	ks.respTag = tag(expand("responder confirm"), th)
	ks.initTag = tag(expand("initiator confirm"), th)
	if subtle.ConstantTimeCompare(ks.psk[:], make([]byte, 32)) == 1 {
		return nil, errors.New("pq: derived an all-zero key") // never, short of a broken hash
	}
	return ks, nil
}

func tag(k, th []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write(th)
	return m.Sum(nil)
}

// Initiates reports whether self is the initiator of the pair (the lower
// node key, byte by byte).
func Initiates(self, peer api.NodePublic) bool { return bytes.Compare(self[:], peer[:]) < 0 }
