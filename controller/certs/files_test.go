package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeOperatorPair writes a self-signed server certificate valid until
// notAfter, and its key, as an operator's tooling would.
func writeOperatorPair(t *testing.T, certFile, keyFile string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "ctl.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: []string{"ctl.example"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestOperatorCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	soon := writeOperatorPair(t, cf, kf, time.Now().Add(7*24*time.Hour))
	now := time.Now()
	m, err := OpenFiles(cf, kf, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if !m.External() || m.CA() != nil || m.CAFile() != "" {
		t.Error("an operator's certificate claims a CA of the controller's")
	}
	if got, err := m.Renewed(); err != nil || !got.NotAfter.Equal(soon.NotAfter) {
		t.Fatalf("Renewed = %v, %v; want the operator's certificate", got.NotAfter, err)
	}
	// Seven days from expiry, the controller does not renew it itself.
	if got, _ := m.Renewed(); got.SerialNumber.Cmp(soon.SerialNumber) != 0 {
		t.Error("the controller replaced an operator's certificate")
	}

	// The operator renews it: served from the next look, a second on.
	later := writeOperatorPair(t, cf, kf, time.Now().Add(90*24*time.Hour))
	if got, _ := m.Renewed(); got.SerialNumber.Cmp(soon.SerialNumber) != 0 {
		t.Error("the files were looked at again within a second")
	}
	now = now.Add(2 * time.Second)
	got, err := m.Renewed()
	if err != nil || got.SerialNumber.Cmp(later.SerialNumber) != 0 {
		t.Fatalf("after the renewal: serial %v, %v; want the renewed certificate", got.SerialNumber, err)
	}

	// A half-written renewal leaves the current pair served, and says why.
	if err := os.WriteFile(kf, []byte("-----BEGIN PRIVATE KEY-----\ntrunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	got, err = m.Renewed()
	if err == nil || got.SerialNumber.Cmp(later.SerialNumber) != 0 {
		t.Fatalf("a broken key file: serial %v, error %v; want the current certificate and an error", got.SerialNumber, err)
	}
	c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c.Leaf.SerialNumber.Cmp(later.SerialNumber) != 0 {
		t.Errorf("handshake during a broken reload: %v; want the current certificate", err)
	}
}

func TestOpenFilesRefusesBadPair(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if _, err := OpenFiles(cf, kf, nil); err == nil {
		t.Error("missing files accepted")
	}
	writeOperatorPair(t, cf, kf, time.Now().Add(time.Hour))
	other := filepath.Join(dir, "other.key")
	writeOperatorPair(t, filepath.Join(dir, "other.pem"), other, time.Now().Add(time.Hour))
	if _, err := OpenFiles(cf, other, nil); err == nil {
		t.Error("a key that does not match its certificate accepted")
	}
}

// A renewal that fails (here: the TLS directory is gone) keeps the
// current certificate served until it expires, and Renewed says why.
func TestFailedRenewalKeepsServing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	m, err := Open(dir, Hosts{Names: []string{"localhost"}}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	first := m.Leaf()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	now = first.NotAfter.Add(-24 * time.Hour)
	got, err := m.Renewed()
	if err == nil || got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("Renewed = %v, %v; want the current certificate and the renewal's error", got.SerialNumber, err)
	}
	if c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{}); err != nil || c.Leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("a day before expiry, a failed renewal ended the handshake: %v", err)
	}
	now = first.NotAfter.Add(time.Minute)
	if _, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("an expired certificate served after a failed renewal")
	}
}
