package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
func (m *Manager) IsReplica(cs *tls.ConnectionState) bool {
	if m.External() || cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if leaf.Subject.CommonName != ReplicaName {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.caCert)
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: m.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
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
