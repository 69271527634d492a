// Package certs keeps the controller's TLS identity: a private CA created on
// first start (DIR/tls/ca.pem, which nodes trust) and a server certificate
// it signs for the controller's addresses and names. The server certificate
// is reissued when it no longer covers the names asked for or nears expiry;
// the CA stays, so nodes keep trusting the controller.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rustynet/rustynet/internal/atomicfile"
)

// File names inside the TLS directory.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca.key"
	ServerFile     = "server.pem"
	ServerKeyFile  = "server.key"
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 397 * 24 * time.Hour // the CA/Browser Forum's ceiling
	renewBefore    = 30 * 24 * time.Hour
)

// Manager holds the CA and the current server certificate.
type Manager struct {
	dir   string
	names []string // DNS names
	ips   []netip.Addr
	now   func() time.Time

	caCert *x509.Certificate
	caKey  crypto.Signer

	replica replicaCert // the client certificate replicas present to each other
	seen    replicaSeen // replica certificates that verified (IsReplica)

	mu   sync.Mutex
	cert *tls.Certificate

	// An operator's pair (OpenFiles): its files, their last stamp, when
	// they were last looked at and the last reload's error.
	certFile, keyFile string
	stamp             string
	checked           time.Time
	reloadErr         error
}

// Hosts are what a server certificate must cover.
type Hosts struct {
	Names []string
	IPs   []netip.Addr
}

// Open loads or creates the CA and server certificate in dir (created 0700
// if missing). now is the clock (time.Now when nil).
func Open(dir string, hosts Hosts, now func() time.Time) (*Manager, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls dir: %w", err)
	}
	m := &Manager{dir: dir, now: now}
	for _, n := range hosts.Names {
		if !slices.Contains(m.names, n) {
			m.names = append(m.names, n)
		}
	}
	for _, ip := range hosts.IPs {
		ip = ip.Unmap()
		if !slices.Contains(m.ips, ip) {
			m.ips = append(m.ips, ip)
		}
	}
	if err := m.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := m.loadOrIssueServer(); err != nil {
		return nil, err
	}
	return m, nil
}

// CAFile returns the path of the CA certificate nodes must trust, or ""
// for an operator's certificate (the operator's CA is not the controller's
// to know).
func (m *Manager) CAFile() string {
	if m.External() {
		return ""
	}
	return filepath.Join(m.dir, CAFile)
}

// TLSConfig returns the server's TLS configuration: TLS 1.3 only, and the
// server certificate, reissued in place when it nears expiry.
//
// With the controller's own CA it also asks for an optional client
// certificate, which IsReplica checks: only another replica holds one from
// the CA. Nodes send none, and a client certificate from elsewhere fails
// nothing (the handshake does not verify it).
//
// It issues TLS 1.3 session tickets, and a client that comes back with
// one resumes its session (a PSK with a fresh key exchange, so forward
// secrecy and the hybrid post-quantum exchange stay) without the
// certificate's signature and its verification. A ticket is bound to the
// certificate served when it was issued: once that certificate is
// renewed or reloaded, or while it has expired with no new one, a ticket
// resumes nothing and the client makes a full handshake, verifying the
// certificate served then.
func (m *Manager) TLSConfig() *tls.Config {
	clientAuth := tls.NoClientCert
	if !m.External() {
		clientAuth = tls.RequestClientCert
	}
	conf := &tls.Config{
		ClientAuth: clientAuth,
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.serving()
		},
	}
	// EncryptTicket and DecryptTicket use conf's ticket keys (crypto/tls
	// makes and rotates them), also from a clone of conf.
	conf.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		c, err := m.serving()
		if err != nil {
			return nil, err
		}
		ss.Extra = append(ss.Extra, sessionBinding(c))
		return conf.EncryptTicket(cs, ss)
	}
	conf.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := conf.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		c, err := m.serving()
		if err != nil || !slices.ContainsFunc(ss.Extra, func(e []byte) bool { return bytes.Equal(e, sessionBinding(c)) }) {
			return nil, nil // a full handshake
		}
		return ss, nil
	}
	return conf
}

// serving returns the certificate a handshake serves: the current one,
// renewed or reloaded first when due, and while a renewal fails the old
// one until it expires (Renewed reports the error).
func (m *Manager) serving() (*tls.Certificate, error) {
	c, err := m.current()
	if err != nil && !m.now().Before(c.Leaf.NotAfter) {
		return nil, err // expired, and no new one
	}
	return c, nil
}

// sessionBindingPrefix marks the entry of a session ticket's Extra that
// names the certificate the session was established under.
const sessionBindingPrefix = "rustynet-controller-certificate-v1:"

// sessionBinding is the entry of a session ticket's Extra that binds it to
// the server certificate c: its leaf's SHA-256.
func sessionBinding(c *tls.Certificate) []byte {
	sum := sha256.Sum256(c.Certificate[0])
	return append([]byte(sessionBindingPrefix), sum[:]...)
}

// current returns the certificate to serve, renewed (or, for an
// operator's, reloaded) first when due. When that fails it returns the
// current certificate, still served while it has not expired, and the
// error: a failed renewal must not end every handshake while the old
// certificate is good for weeks.
func (m *Manager) current() (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.External() {
		err := m.reloadLocked()
		return m.cert, err
	}
	if m.now().Add(renewBefore).After(m.cert.Leaf.NotAfter) {
		if err := m.issueServerLocked(); err != nil {
			return m.cert, fmt.Errorf("renew the server certificate: %w", err)
		}
	}
	return m.cert, nil
}

// CA returns the CA certificate (fixed once Open returns), or nil for an
// operator's certificate.
func (m *Manager) CA() *x509.Certificate { return m.caCert }

// Renewed returns the server certificate, renewed first when it is due, as
// a TLS handshake would (nodes hold their connections for days, so a
// handshake may not come); when renewing fails, the current one and the
// error.
func (m *Manager) Renewed() (*x509.Certificate, error) {
	c, err := m.current()
	return c.Leaf, err
}

// Leaf returns the current server certificate.
func (m *Manager) Leaf() *x509.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert.Leaf
}

func (m *Manager) loadOrCreateCA() error {
	certPath, keyPath := filepath.Join(m.dir, CAFile), filepath.Join(m.dir, CAKeyFile)
	cert, key, err := loadPair(certPath, keyPath)
	if err == nil {
		if !cert.IsCA {
			return fmt.Errorf("%s is not a CA certificate", certPath)
		}
		m.caCert, m.caKey = cert, key
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := m.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Rustynet controller CA", Organization: []string{"Rustynet"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return err
	}
	m.caCert, _ = x509.ParseCertificate(der)
	m.caKey = key
	return nil
}

func (m *Manager) loadOrIssueServer() error {
	certPath, keyPath := filepath.Join(m.dir, ServerFile), filepath.Join(m.dir, ServerKeyFile)
	cert, key, err := loadPair(certPath, keyPath)
	switch {
	case err == nil:
		if m.covers(cert) && cert.CheckSignatureFrom(m.caCert) == nil && m.now().Add(renewBefore).Before(cert.NotAfter) {
			m.cert = &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
			return nil
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issueServerLocked()
}

// covers reports whether cert names every host asked for.
func (m *Manager) covers(cert *x509.Certificate) bool {
	for _, n := range m.names {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range m.ips {
		if !slices.ContainsFunc(cert.IPAddresses, func(c net.IP) bool {
			a, ok := netip.AddrFromSlice(c)
			return ok && a.Unmap() == ip
		}) {
			return false
		}
	}
	return true
}

func (m *Manager) issueServerLocked() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := m.now()
	notAfter := now.Add(serverValidity)
	if notAfter.After(m.caCert.NotAfter) {
		notAfter = m.caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "Rustynet controller", Organization: []string{"Rustynet"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     m.names,
	}
	for _, ip := range m.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.caCert, key.Public(), m.caKey)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if err := writePair(filepath.Join(m.dir, ServerFile), filepath.Join(m.dir, ServerKeyFile), der, key); err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	// The leaf alone: a node verifies it against the CA it holds
	// (ca.pem), and a CA sent along is a second candidate parent, whose
	// signature crypto/x509 checks again (one more ECDSA verification in
	// every full handshake), for nothing.
	m.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s: no PRIVATE KEY block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: key of type %T cannot sign", keyPath, k)
	}
	return cert, signer, nil
}

// writePair writes the key first (0600), then the certificate (0644), each
// through a temporary file and a rename so a crash leaves the old pair or
// the new one, never half of either.
func writePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// HostsFor returns what a server listening on listen (host:port) must
// cover, plus extra names or IPs. An unspecified listen address (":8443",
// "0.0.0.0:8443", "[::]:8443") covers localhost, the hostname and every
// address of every local interface.
func HostsFor(listen string, extra []string) (Hosts, error) {
	var h Hosts
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return h, fmt.Errorf("listen address %q: %w", listen, err)
	}
	add := func(s string) {
		if ip, err := netip.ParseAddr(s); err == nil {
			h.IPs = append(h.IPs, ip.Unmap())
		} else if s != "" {
			h.Names = append(h.Names, s)
		}
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case host == "" || (err == nil && ip.IsUnspecified()):
		add("localhost")
		if hn, err := os.Hostname(); err == nil {
			add(hn)
		}
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return h, fmt.Errorf("list interface addresses: %w", err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				add(p.Addr().String())
			}
		}
	default:
		add(host)
	}
	for _, e := range extra {
		add(e)
	}
	return h, nil
}
