package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// handshake runs a TLS handshake between m's server configuration and
// client over a pipe and returns what the server saw of the client. In
// TLS 1.3 the client is done before the server has checked its
// certificate, and learns of a refusal on its first read: it reads until
// the server's alert or the end.
func handshake(t testing.TB, m *Manager, client *tls.Config) (*tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	srv := tls.Server(a, m.TLSConfig())
	cli := tls.Client(b, client)
	errc := make(chan error, 1)
	go func() {
		err := cli.Handshake()
		if err == nil {
			if _, err = cli.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
				err = nil
			}
		}
		errc <- err
	}()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	serr := srv.Handshake()
	cs := srv.ConnectionState()
	a.Close()
	cerr := <-errc
	if serr != nil {
		return nil, serr
	}
	if cerr != nil {
		return nil, cerr
	}
	return &cs, nil
}

func TestReplicaCertificate(t *testing.T) {
	dir := t.TempDir()
	hosts := Hosts{Names: []string{"localhost"}}
	m, err := Open(dir, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second replica from a copy of the CA, as the README has an
	// operator start one.
	dir2 := t.TempDir()
	for _, f := range []string{CAFile, CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir2, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m2, err := Open(dir2, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.TempDir(), hosts, nil) // another controller's CA
	if err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(m.CA())
	node := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost"}
	cs, err := handshake(t, m, node)
	if err != nil {
		t.Fatalf("a node without a client certificate: %v", err)
	}
	if m.IsReplica(cs) {
		t.Error("a node without a client certificate passed as a replica")
	}

	peer, err := m2.ReplicaClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	peer.ServerName = "localhost"
	cs, err = handshake(t, m, peer)
	if err != nil {
		t.Fatalf("a replica with the shared CA: %v", err)
	}
	if !m.IsReplica(cs) {
		t.Error("a replica with a certificate from the shared CA was not recognised")
	}

	// A server certificate from the right CA is not a client certificate,
	// though it does not fail the handshake: the server only asks.
	srvCert := m2.cert
	asServer := node.Clone()
	asServer.Certificates = []tls.Certificate{*srvCert}
	if cs, err := handshake(t, m, asServer); err != nil || m.IsReplica(cs) {
		t.Errorf("a client presenting a server certificate: handshake %v, passed as a replica: %v", err, err == nil && m.IsReplica(cs))
	}

	// A replica certificate from another CA is not a replica's.
	stranger, err := other.ReplicaClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	stranger.RootCAs = roots
	stranger.ServerName = "localhost"
	if cs, err := handshake(t, m, stranger); err != nil || m.IsReplica(cs) {
		t.Errorf("a replica certificate from another CA: handshake %v, passed as a replica: %v", err, err == nil && m.IsReplica(cs))
	}

	// Nor is an expired one from the right CA.
	late := &Manager{caCert: m.caCert, caKey: m.caKey, now: func() time.Time { return time.Now().Add(replicaValidity + time.Hour) }}
	cs, err = handshake(t, m2, peer)
	if err != nil || !m2.IsReplica(cs) {
		t.Fatalf("replica to replica: %v", err)
	}
	if late.IsReplica(cs) {
		t.Error("an expired replica certificate passed")
	}

	// Renewed near its expiry; the same certificate until then.
	c1, _ := m.ReplicaCertificate()
	c2, _ := m.ReplicaCertificate()
	if c1 != c2 {
		t.Error("the replica certificate was reissued while still valid")
	}
	if got := c1.Leaf.NotAfter.Sub(c1.Leaf.NotBefore); got > replicaValidity+2*time.Hour {
		t.Errorf("replica certificate valid for %v", got)
	}
}

// A replica certificate that verified is remembered, not verified on
// every request, but only while it is valid: past its expiry it is
// refused, and a forged one (the right name, signed by another CA) is
// never remembered.
func TestIsReplicaRemembersUntilExpiry(t *testing.T) {
	hosts := Hosts{Names: []string{"localhost"}}
	m, err := Open(t.TempDir(), hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.TempDir(), hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := m.ReplicaClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.CA())
	peer.ServerName = "localhost"
	cs, err := handshake(t, m, peer)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	m.now = func() time.Time { return clock }
	for i := range 3 {
		if !m.IsReplica(cs) {
			t.Fatalf("request %d from a replica was refused", i)
		}
	}
	if len(m.seen.m) != 1 {
		t.Errorf("%d certificates remembered after 3 requests over one connection, want 1", len(m.seen.m))
	}
	clock = clock.Add(replicaValidity + time.Hour)
	if m.IsReplica(cs) {
		t.Error("a remembered replica certificate passed after its expiry")
	}
	clock = time.Now().Add(-2 * time.Hour) // before it was remembered, and before its NotBefore
	if m.IsReplica(cs) {
		t.Error("a remembered replica certificate passed before its validity")
	}

	m.now = time.Now
	stranger, err := other.ReplicaClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	stranger.RootCAs, stranger.ServerName = roots, "localhost"
	cs, err = handshake(t, m, stranger)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if m.IsReplica(cs) {
			t.Fatal("a replica certificate from another CA passed")
		}
	}
	if len(m.seen.m) != 1 {
		t.Errorf("%d certificates remembered, want only the first replica's", len(m.seen.m))
	}
}

// BenchmarkIsReplica is the writer's check of each handed-over write:
// verify=every verifies the chain each time (as before replicaSeen),
// verify=remembered is a certificate that verified before.
func BenchmarkIsReplica(b *testing.B) {
	m, err := Open(b.TempDir(), Hosts{Names: []string{"localhost"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := m.ReplicaClientTLS()
	if err != nil {
		b.Fatal(err)
	}
	peer.ServerName = "localhost"
	cs, err := handshake(b, m, peer)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify=every", func(b *testing.B) {
		for b.Loop() {
			m.seen = replicaSeen{}
			if !m.IsReplica(cs) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("verify=remembered", func(b *testing.B) {
		for b.Loop() {
			if !m.IsReplica(cs) {
				b.Fatal("refused")
			}
		}
	})
}

func TestReplicaCertificateNeedsCA(t *testing.T) {
	m := &Manager{certFile: "operator.pem", now: time.Now}
	if _, err := m.ReplicaCertificate(); !errors.Is(err, ErrNoCA) {
		t.Errorf("an operator's certificate: %v, want ErrNoCA", err)
	}
	if m.IsReplica(&tls.ConnectionState{}) {
		t.Error("IsReplica without a CA")
	}
}
