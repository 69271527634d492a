package certs

import (
	"crypto/x509"
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
