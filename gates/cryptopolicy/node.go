package cryptopolicy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// nodeAttempts is how many of the node's connections each server observes:
// a client that falls back to a weaker configuration when it retries shows
// it.
const nodeAttempts = 3

// observeTimeout bounds how long a server waits for the node's attempts.
const observeTimeout = 30 * time.Second

// attempt is what a server saw of one connection of the node.
type attempt struct {
	Hello    bool          // a ClientHello arrived
	Versions []uint16      // the versions it offered
	Curves   []tls.CurveID // the key exchange groups it offered
	Done     bool          // the handshake completed
	Version  uint16        // negotiated, when it completed
	CurveID  tls.CurveID   // negotiated, when it completed
	Err      error         // why the handshake failed
}

// probeNodeClient runs the node binary against two TLS servers on
// loopback, each for a few connection attempts (the node cannot register
// with either, so it retries): one that offers only TLS 1.2, with which
// the node must complete no handshake, and a TLS 1.3 server that records
// each ClientHello, to which the node must offer no version below TLS 1.3
// and offer, and negotiate, X25519MLKEM768. It returns an error only when
// it could not probe (the node made no connection).
func probeNodeClient(ctx context.Context, rep *report, work, bin string) error {
	dir, err := os.MkdirTemp(work, "node-")
	if err != nil {
		return err
	}
	caPEM, cert, err := testCA(time.Now())
	if err != nil {
		return fmt.Errorf("test CA: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return err
	}
	certs := []tls.Certificate{cert}

	got, err := observeNode(ctx, rep, dir, bin, caFile, &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	if err != nil {
		return fmt.Errorf("the node against a TLS 1.2 server: %w", err)
	}
	var completed []string
	var refusal error
	for _, a := range got {
		if a.Done {
			completed = append(completed, tls.VersionName(a.Version))
		} else if refusal == nil {
			refusal = a.Err
		}
	}
	if len(completed) > 0 {
		rep.add("node-client", false, "against a server offering only TLS 1.2, the node completed %d of %d handshakes (%s); want none",
			len(completed), len(got), strings.Join(completed, ", "))
	} else {
		rep.add("node-client", true, "against a server offering only TLS 1.2, the node completed none of %d handshakes (the server: %v)", len(got), refusal)
	}

	got, err = observeNode(ctx, rep, dir, bin, caFile, &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}})
	if err != nil {
		return fmt.Errorf("the node against a TLS 1.3 server: %w", err)
	}
	var versions []uint16
	var curves []tls.CurveID
	hellos, pq, negotiated := 0, 0, 0
	var failures []string
	for _, a := range got {
		if !a.Hello {
			continue
		}
		hellos++
		for _, v := range a.Versions {
			if !slices.Contains(versions, v) {
				versions = append(versions, v)
			}
		}
		for _, c := range a.Curves {
			if !slices.Contains(curves, c) {
				curves = append(curves, c)
			}
		}
		if slices.Contains(a.Curves, tls.X25519MLKEM768) {
			pq++
		}
		switch {
		case a.Done && a.CurveID == tls.X25519MLKEM768:
			negotiated++
		case a.Done:
			failures = append(failures, a.CurveID.String())
		default:
			failures = append(failures, fmt.Sprintf("no handshake (%v)", a.Err))
		}
	}
	var below []string
	for _, v := range versions {
		if v < tls.VersionTLS13 {
			below = append(below, tls.VersionName(v))
		}
	}
	rep.add("node-client", hellos > 0 && len(below) == 0, "versions the node offered in %d ClientHellos: %s (want none below TLS 1.3%s)",
		hellos, versionNames(versions), prefixed("; it offered ", strings.Join(below, ", ")))
	rep.add("node-client", hellos > 0 && pq == hellos, "key exchange groups the node offered: %v; X25519MLKEM768 in %d of %d ClientHellos (want all)",
		curves, pq, hellos)
	rep.add("node-client", hellos > 0 && negotiated == hellos, "X25519MLKEM768 negotiated with a TLS 1.3 server that prefers it in %d of %d handshakes (want all)%s",
		negotiated, hellos, prefixed("; the others: ", strings.Join(failures, ", ")))
	return nil
}

// observeNode serves conf on a loopback port, runs the node against it
// with a fresh state dir under dir and a dummy pre-auth key, and returns
// what the server saw of up to nodeAttempts connections, waiting at most
// observeTimeout; the node and the server are stopped before it returns.
func observeNode(ctx context.Context, rep *report, dir, bin, caFile string, conf *tls.Config) ([]attempt, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := serveHellos(ln, conf)
	defer srv.close()
	state, err := os.MkdirTemp(dir, "state-")
	if err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, rep.log, "rustynetd", nil, bin,
		"--netstack", "--metrics-listen", "", "--state-dir", state, "--hostname", "crypto-policy-probe", "--auth-key", "crypto-policy-probe-not-a-key",
		"--controller", "https://"+ln.Addr().String(), "--controller-ca", caFile)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	t := time.NewTimer(observeTimeout)
	defer t.Stop()
	var got []attempt
	for len(got) < nodeAttempts {
		select {
		case a := <-srv.attempts:
			fmt.Fprintf(rep.log, "server: ClientHello=%v versions=%s groups=%v handshake=%v version=%s group=%v err=%v\n",
				a.Hello, versionNames(a.Versions), a.Curves, a.Done, tls.VersionName(a.Version), a.CurveID, a.Err)
			got = append(got, a)
		case <-d.done:
			if len(got) == 0 {
				return nil, fmt.Errorf("rustynetd exited (%s) before it connected", d.status)
			}
			return got, nil
		case <-t.C:
			if len(got) == 0 {
				return nil, fmt.Errorf("rustynetd made no connection within %v", observeTimeout)
			}
			return got, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return got, nil
}

// helloServer is a TLS server that reports what it saw of each
// connection, then closes it.
type helloServer struct {
	ln       net.Listener
	attempts chan attempt
	wg       sync.WaitGroup
}

func serveHellos(ln net.Listener, conf *tls.Config) *helloServer {
	s := &helloServer{ln: ln, attempts: make(chan attempt, 64)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.handshake(c, conf) })
		}
	})
	return s
}

func (s *helloServer) handshake(c net.Conn, base *tls.Config) {
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return
	}
	var a attempt
	conf := base.Clone()
	conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		a.Hello, a.Versions, a.Curves = true, slices.Clone(h.SupportedVersions), slices.Clone(h.SupportedCurves)
		return nil, nil
	}
	tc := tls.Server(c, conf)
	if err := tc.Handshake(); err != nil {
		a.Err = err
	} else {
		st := tc.ConnectionState()
		a.Done, a.Version, a.CurveID = true, st.Version, st.CurveID
	}
	select {
	case s.attempts <- a:
	default: // more connections than anyone waits for
	}
}

// close stops accepting and waits for the connections in progress (each
// bounded by its deadline).
func (s *helloServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

// testCA makes an ECDSA P-256 CA, valid for an hour either side of now,
// and a server certificate it issues for 127.0.0.1.
func testCA(now time.Time) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rustynet crypto-policy probe CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func versionNames(vs []uint16) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = tls.VersionName(v)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
