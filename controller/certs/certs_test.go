package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func verify(t *testing.T, m *Manager, host string) error {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(m.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	_, err = m.Leaf().Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestOpenIssuesVerifiableCertificate(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(dir, Hosts{Names: []string{"ctl.example"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "ctl.example"} {
		if err := verify(t, m, host); err != nil {
			t.Errorf("certificate does not verify for %s: %v", host, err)
		}
	}
	if err := verify(t, m, "other.example"); err == nil {
		t.Error("certificate verifies for a name it was not issued for")
	}
	for f, want := range map[string]os.FileMode{CAKeyFile: 0o600, ServerKeyFile: 0o600, CAFile: 0o644, ServerFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %o, want %o", f, fi.Mode().Perm(), want)
		}
	}
}

func TestReopenKeepsOrReissues(t *testing.T) {
	dir := t.TempDir()
	hosts := Hosts{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	m1, err := Open(dir, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(dir, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m1.Leaf().SerialNumber.Cmp(m2.Leaf().SerialNumber) != 0 {
		t.Error("reopening with the same hosts reissued the server certificate")
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, CAFile))
	hosts.Names = []string{"new.example"}
	m3, err := Open(dir, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m3.Leaf().SerialNumber.Cmp(m1.Leaf().SerialNumber) == 0 || verify(t, m3, "new.example") != nil {
		t.Error("a new name did not get a reissued certificate covering it")
	}
	ca3, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(ca1) != string(ca3) {
		t.Error("reissuing the server certificate replaced the CA")
	}
}

func TestRenewsNearExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	m, err := Open(t.TempDir(), Hosts{Names: []string{"localhost"}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := m.Leaf()
	now = first.NotAfter.Add(-24 * time.Hour)
	c, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 || !c.Leaf.NotAfter.After(first.NotAfter) {
		t.Error("a certificate a day from expiry was not renewed")
	}
}

func TestHostsFor(t *testing.T) {
	h, err := HostsFor("127.0.0.1:8443", []string{"ctl.example", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.IPs, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.1")}) || !slices.Equal(h.Names, []string{"ctl.example"}) {
		t.Errorf("HostsFor(127.0.0.1:8443) = %+v", h)
	}
	h, err = HostsFor(":8443", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.Names, "localhost") || !slices.Contains(h.IPs, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("HostsFor(:8443) = %+v, want localhost and 127.0.0.1 among them", h)
	}
	if _, err := HostsFor("nonsense", nil); err == nil {
		t.Error("HostsFor(nonsense) succeeded")
	}
}

// dial connects to addr as a node does (the CA as the only root, a
// session cache of its own), reads the byte the server writes after the
// handshake (and with it the session ticket) and returns the connection's
// state.
func dial(t *testing.T, addr string, roots *x509.CertPool, cache tls.ClientSessionCache) tls.ConnectionState {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13, ClientSessionCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState()
}

// serve answers every connection on a listener with TLSConfig with one
// byte after the handshake.
func serve(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte{1})
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// TestSessionResumption: the server sends its certificate alone (a node
// holds the CA), and a node's second connection resumes the session of
// its first.
func TestSessionResumption(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(dir, Hosts{Names: []string{"localhost"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, m)
	roots := caPool(t, dir)
	cache := tls.NewLRUClientSessionCache(1)
	first := dial(t, addr, roots, cache)
	if first.DidResume || len(first.PeerCertificates) != 1 || !first.PeerCertificates[0].Equal(m.Leaf()) {
		t.Fatalf("first connection: resumed %v, %d certificates sent, want a full handshake with the server certificate alone", first.DidResume, len(first.PeerCertificates))
	}
	if second := dial(t, addr, roots, cache); !second.DidResume {
		t.Fatal("the second connection did not resume the first one's session")
	}
	if other := dial(t, addr, roots, tls.NewLRUClientSessionCache(1)); other.DidResume {
		t.Fatal("a client with no session resumed one")
	}
}

// TestSessionBoundToCertificate: once the certificate served changes (an
// operator's pair replaced), a session established under the old one
// resumes nothing: the client makes a full handshake and verifies the new
// certificate.
func TestSessionBoundToCertificate(t *testing.T) {
	caDir := t.TempDir()
	if _, err := Open(caDir, Hosts{Names: []string{"localhost"}}, nil); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(t.TempDir(), "cert.pem"), filepath.Join(t.TempDir(), "key.pem")
	install := func() {
		t.Helper()
		for from, to := range map[string]string{ServerFile: certFile, ServerKeyFile: keyFile} {
			b, err := os.ReadFile(filepath.Join(caDir, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install()
	now := time.Now()
	m, err := OpenFiles(certFile, keyFile, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, m)
	roots := caPool(t, caDir)
	cache := tls.NewLRUClientSessionCache(1)
	old := dial(t, addr, roots, cache).PeerCertificates[0]
	if !dial(t, addr, roots, cache).DidResume {
		t.Fatal("the second connection did not resume")
	}
	// The operator's renewal: a new certificate from the same CA.
	if _, err := Open(caDir, Hosts{Names: []string{"localhost", "renewed.example"}}, nil); err != nil {
		t.Fatal(err)
	}
	install()
	now = now.Add(2 * reloadEvery)
	renewed := dial(t, addr, roots, cache)
	if renewed.DidResume || renewed.PeerCertificates[0].Equal(old) {
		t.Fatalf("after the certificate changed: resumed %v, same certificate %v; want a full handshake with the new one", renewed.DidResume, renewed.PeerCertificates[0].Equal(old))
	}
	if !dial(t, addr, roots, cache).DidResume {
		t.Fatal("a session established under the new certificate did not resume")
	}
}
