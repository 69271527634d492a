package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Replicas of one controller share its CA (see the README: the second and
// third replica start from a copy of the first one's tls/ca.pem and
// ca.key). A replica proves to another that it is one with a client
// certificate from that CA, which only a holder of the CA's key can
// issue: nodes trust the CA but never hold a certificate from it.

// ReplicaName is the common name of the client certificates replicas
// present to each other.
const ReplicaName = "Rustynet controller replica"

const (
	replicaValidity    = 7 * 24 * time.Hour
	replicaRenewBefore = 24 * time.Hour
)

// replicaCert is the replica's client certificate, issued in memory (its
// key is never written to disk) on first use and again near its expiry.
type replicaCert struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

// ErrNoCA is returned for a replica certificate when the controller serves
// an operator's certificate: it holds no CA key to issue one with.
var ErrNoCA = errors.New("the controller serves an operator's certificate and holds no CA key to issue a replica certificate with")

// ReplicaCertificate returns the client certificate this replica presents
// to the others.
func (m *Manager) ReplicaCertificate() (*tls.Certificate, error) {
	if m.External() || m.caKey == nil {
		return nil, ErrNoCA
	}
	m.replica.mu.Lock()
	defer m.replica.mu.Unlock()
	now := m.now()
	if c := m.replica.cert; c != nil && now.Add(replicaRenewBefore).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if !m.caCert.NotAfter.After(now) {
		return nil, fmt.Errorf("the controller CA expired at %s", m.caCert.NotAfter.Format(time.RFC3339))
	}
	notAfter := now.Add(replicaValidity)
	if notAfter.After(m.caCert.NotAfter) {
		notAfter = m.caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: ReplicaName, Organization: []string{"Rustynet"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.caCert, key.Public(), m.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue replica certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	m.replica.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return m.replica.cert, nil
}

// IsReplica reports whether a TLS peer is another replica of this
// controller: the certificate it presented (the server asks for one and
// does not verify it) verifies against the CA for client authentication
// and is a replica certificate.
//
// A replica hands the writer a write per request over a few long-lived
// connections, and a chain verification (an ECDSA signature check) costs
// more than the rest of the request: a certificate that verified is
// remembered (replicaSeen) until it or the CA expires.
func (m *Manager) IsReplica(cs *tls.ConnectionState) bool {
	if m.External() || cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if leaf.Subject.CommonName != ReplicaName {
		return false
	}
	now := m.now()
	sum := sha256.Sum256(leaf.Raw)
	if m.seen.valid(sum, now) {
		return true
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.caCert)
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return false
	}
	until := leaf.NotAfter
	for _, c := range chains[0] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	m.seen.add(sum, now, until)
	return true
}

// replicaSeen remembers the replica certificates that verified, by the
// SHA-256 of their DER, with the time they verified at and the first
// expiry in their chain. Replicas are few and each renews its certificate
// daily, so it stays small; at maxSeen it forgets all.
type replicaSeen struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]seenSpan
}

type seenSpan struct{ from, until time.Time }

const maxSeen = 64

func (r *replicaSeen) valid(sum [sha256.Size]byte, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[sum]
	return ok && !now.Before(s.from) && now.Before(s.until)
}

func (r *replicaSeen) add(sum [sha256.Size]byte, now, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxSeen {
		r.m = make(map[[sha256.Size]byte]seenSpan)
	}
	r.m[sum] = seenSpan{from: now, until: until}
}

// ReplicaClientTLS is the TLS configuration a replica reaches the others
// with: TLS 1.3, the CA as the only root, and the replica certificate.
func (m *Manager) ReplicaClientTLS() (*tls.Config, error) {
	if _, err := m.ReplicaCertificate(); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.caCert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return m.ReplicaCertificate()
		},
	}, nil
}
