package quic

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/rustynet/rustynet/node/key"
)

// alpn is the only application protocol spoken; a bump means an
// incompatible change of what the datagrams carry.
const alpn = "rustynet-quic/1"

// HKDF info strings. Changing one changes every node's identity on this
// backend, so they carry a version.
const (
	signingInfo = "rustynet quic ed25519 v1"
	resetInfo   = "rustynet quic stateless reset v1"
)

// edKey is an Ed25519 public key, comparable so it can key a map.
type edKey [ed25519.PublicKeySize]byte

var (
	errUnknownPeer  = errors.New("peer certificate key is not a configured peer's")
	errNotPQ        = errors.New("key exchange is not X25519MLKEM768")
	errNoDatagrams  = errors.New("peer does not support QUIC datagrams")
	errBadProtocol  = fmt.Errorf("application protocol is not %s", alpn)
	errNoCert       = errors.New("peer sent no certificate")
	errNotEd25519   = errors.New("peer certificate key is not Ed25519")
	errMalformedKey = errors.New("want 32 bytes of standard base64")
)

// signingKey derives the node's Ed25519 key on this backend:
// HKDF-SHA256(secret = the X25519 private key, no salt, info =
// "rustynet quic ed25519 v1") gives the 32-byte seed.
func signingKey(k key.NodePrivate) ed25519.PrivateKey {
	raw := k.Raw()
	seed, err := hkdf.Key(sha256.New, raw[:], nil, signingInfo, ed25519.SeedSize)
	if err != nil {
		panic(err) // cannot fail for a 32-byte output of SHA-256
	}
	return ed25519.NewKeyFromSeed(seed)
}

// resetKey derives the QUIC stateless reset key from the node key, so that
// after a restart with the same key this node can still reset connections
// its previous run held (the peer then redials at once instead of waiting
// for the idle timeout). It is secret: HKDF with its own info string.
func resetKey(k key.NodePrivate) *quicgo.StatelessResetKey {
	raw := k.Raw()
	b, err := hkdf.Key(sha256.New, raw[:], nil, resetInfo, 32)
	if err != nil {
		panic(err)
	}
	var rk quicgo.StatelessResetKey
	copy(rk[:], b)
	return &rk
}

// PublicKey returns the node's public key on this backend, the text the
// controller distributes as the node's backend key for "quic": the
// standard base64 of the Ed25519 public key derived from k.
func PublicKey(k key.NodePrivate) string {
	return base64.StdEncoding.EncodeToString(signingKey(k).Public().(ed25519.PublicKey))
}

// parseKey parses a peer's BackendKey.
func parseKey(s string) (edKey, error) {
	var k edKey
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != len(k) {
		return k, errMalformedKey
	}
	copy(k[:], raw)
	return k, nil
}

// certificate makes a self-signed certificate for sk. Only its public key
// matters: peers pin it and ignore names and validity dates, so the node's
// clock cannot lock it out.
func certificate(sk ed25519.PrivateKey) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "rustynet"},
		NotBefore:    time.Now().Add(-time.Hour),
		// RFC 5280 4.1.2.5: no well-defined expiration date.
		NotAfter:    time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, sk.Public(), sk)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: sk}, nil
}

// leafKey returns the Ed25519 key of the leaf certificate. TLS 1.3 has
// already checked that the peer holds its private half (CertificateVerify
// is verified against the leaf even with InsecureSkipVerify).
func leafKey(rawCerts [][]byte) (edKey, error) {
	var k edKey
	if len(rawCerts) == 0 {
		return k, errNoCert
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return k, fmt.Errorf("peer certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != len(k) {
		return k, errNotEd25519
	}
	copy(k[:], pub)
	return k, nil
}

// checkState refuses a connection without the hybrid post-quantum key
// exchange. It runs inside the handshake (VerifyConnection) and again on
// every established connection, so that neither a library default nor a
// GODEBUG setting can let a classical-only connection through.
func checkState(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("TLS version %#x, want TLS 1.3", cs.Version)
	}
	if cs.CurveID != tls.X25519MLKEM768 {
		return fmt.Errorf("%w (got %v)", errNotPQ, cs.CurveID)
	}
	return nil
}

// checkConn is checkState for an established connection, plus what the
// data plane needs of it.
func checkConn(c *quicgo.Conn) error {
	cs := c.ConnectionState()
	if err := checkState(cs.TLS); err != nil {
		return err
	}
	if cs.TLS.NegotiatedProtocol != alpn {
		return errBadProtocol
	}
	if !cs.SupportsDatagrams.Remote || !cs.SupportsDatagrams.Local {
		return errNoDatagrams
	}
	return nil
}

// connKey returns the verified Ed25519 key of the connection's peer.
func connKey(c *quicgo.Conn) (edKey, error) {
	certs := c.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return edKey{}, errNoCert
	}
	return leafKey([][]byte{certs[0].Raw})
}

// baseTLS is what both directions share: TLS 1.3 only, the hybrid
// post-quantum group only, our ALPN, our certificate, no resumption (every
// connection authenticates with certificates), and no Web PKI.
func baseTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{tls.X25519MLKEM768},
		NextProtos:             []string{alpn},
		Certificates:           []tls.Certificate{cert},
		SessionTicketsDisabled: true,
		InsecureSkipVerify:     true, // replaced by VerifyPeerCertificate's key pinning
		VerifyConnection:       checkState,
	}
}

// serverTLS accepts clients whose key known reports as configured.
func serverTLS(cert tls.Certificate, known func(edKey) bool) *tls.Config {
	c := baseTLS(cert)
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		k, err := leafKey(rawCerts)
		if err != nil {
			return err
		}
		if !known(k) {
			return errUnknownPeer
		}
		return nil
	}
	return c
}

// clientTLS accepts only the server whose key is want.
func clientTLS(cert tls.Certificate, want edKey) *tls.Config {
	c := baseTLS(cert)
	c.ServerName = "rustynet"
	c.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		k, err := leafKey(rawCerts)
		if err != nil {
			return err
		}
		if k != want {
			return errUnknownPeer
		}
		return nil
	}
	return c
}
