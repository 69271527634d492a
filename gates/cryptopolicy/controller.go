package cryptopolicy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/internal/readyfile"
	"github.com/rustynet/rustynet/policies"
)

// startTimeout bounds how long a daemon may take to start serving.
const startTimeout = 30 * time.Second

// dialTimeout bounds each TLS handshake a probe makes.
const dialTimeout = 10 * time.Second

// probeController runs the controller binary four times: with
// RUSTYNET_INSECURE unset; with a controller-tls12 exception in force
// that its crypto policy (the built-in one) does not grant; and, under a
// copy of policy (the tree's crypto.yaml) that grants the mode for 3
// days, with a lapsed exception and with one in force. It checks the
// effective TLS configuration: TLS 1.2 is refused by default, without the
// policy's grant and with the lapsed exception, and accepted with the
// granted one; a client offering X25519MLKEM768 gets it; the server
// certificate is ECDSA P-256. It returns an error only when it could not
// probe (the controller did not start, or the policy could not be
// copied).
//
// It also holds the controller to the policy's x25519-tls-kex (the
// classical key exchange served to clients without ML-KEM) as of at, the
// time the gate judges dated rules at: a client offering only X25519 is
// served until that algorithm's removal, and refused from it. now is the
// real time, which the controller's exceptions are judged by.
func probeController(ctx context.Context, rep *report, work, bin, policy string, pol *policies.Crypto, at, now time.Time) error {
	granting := filepath.Join(work, "crypto-granting.yaml")
	if err := writeGrantingPolicy(policy, granting, "controller-tls12", now.Add(72*time.Hour)); err != nil {
		return err
	}
	c, err := startController(ctx, rep, work, bin, "", "")
	if err != nil {
		return err
	}
	defer c.stop()
	err = dialTLS(ctx, c.addr, &tls.Config{RootCAs: c.pool, MaxVersion: tls.VersionTLS12}, nil)
	rep.add("controller", err != nil, "TLS 1.2 by default: %s (want refused)", outcome(err))
	var st tls.ConnectionState
	err = dialTLS(ctx, c.addr, &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}, &st)
	if err != nil {
		rep.add("controller", false, "TLS 1.3 handshake with a client offering X25519MLKEM768 and X25519 failed: %v", err)
	} else {
		rep.add("controller", st.CurveID == tls.X25519MLKEM768, "key exchange with a client offering X25519MLKEM768 and X25519: %s (want X25519MLKEM768)", st.CurveID)
		leaf := st.PeerCertificates[0]
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		rep.add("controller", ok && pub.Curve == elliptic.P256(), "server certificate key: %s (want ECDSA P-256)", keyDesc(leaf))
	}
	err = dialTLS(ctx, c.addr, &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}, nil)
	if a, ok := pol.Algorithm(classicalKex); !ok {
		rep.add("controller", false, "key exchange with a client offering only X25519: %s; %s lists no %s, the classical key exchange the controller serves such clients with", outcome(err), pol.File, classicalKex)
	} else if st := a.StatusAt(at); st == policies.Removed {
		rep.add("controller", err != nil, "key exchange with a client offering only X25519 on %s: %s (want refused: %s is removed from %s)", at.UTC().Format(time.DateOnly), outcome(err), classicalKex, a.RemovedOn().Format(time.DateOnly))
	} else {
		rep.add("controller", err == nil, "key exchange with a client offering only X25519 on %s: %s (want accepted: %s is %s, and served until its removal)", at.UTC().Format(time.DateOnly), outcome(err), classicalKex, st)
	}
	c.stop()

	for _, ex := range []struct {
		value, policy, under string
		accept               bool
	}{
		{"controller-tls12@" + now.Add(48*time.Hour).Format(time.DateOnly), "", "the built-in crypto policy, which grants no exception", false},
		{"controller-tls12@" + now.Add(-24*time.Hour).Format(time.DateOnly), granting, "a crypto policy that grants it for 3 days", false},
		{"controller-tls12@" + now.Add(48*time.Hour).Format(time.DateOnly), granting, "a crypto policy that grants it for 3 days", true},
	} {
		c, err := startController(ctx, rep, work, bin, ex.value, ex.policy)
		if err != nil {
			return err
		}
		err = dialTLS(ctx, c.addr, &tls.Config{RootCAs: c.pool, MaxVersion: tls.VersionTLS12}, nil)
		c.stop()
		rep.add("controller", (err == nil) == ex.accept, "TLS 1.2 with %s=%s under %s: %s (want %s)", insecure.Env, ex.value, ex.under, outcome(err), map[bool]string{true: "accepted", false: "refused"}[ex.accept])
	}
	return nil
}

// classicalKex is the policy's name for the classical TLS key exchange
// (X25519 alone) the controller serves clients without ML-KEM.
const classicalKex = "x25519-tls-kex"

// writeGrantingPolicy copies the crypto policy at src to dst with one more
// exception: mode, granted until until, to the gate itself. The copy must
// parse, and grant it.
func writeGrantingPolicy(src, dst, mode string, until time.Time) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	item := fmt.Sprintf("  - mode: %s\n    owner: security\n    reason: the crypto-policy gate's probe of an exception in force\n    ticket: crypto-policy-gate\n    expires: %s\n",
		mode, until.UTC().Format(time.DateOnly))
	var out []byte
	switch {
	case bytes.Contains(data, []byte("\nexceptions: []\n")):
		out = bytes.Replace(data, []byte("\nexceptions: []\n"), []byte("\nexceptions:\n"+item), 1)
	case bytes.Contains(data, []byte("\nexceptions:\n")):
		out = bytes.Replace(data, []byte("\nexceptions:\n"), []byte("\nexceptions:\n"+item), 1)
	default:
		return fmt.Errorf("%s has no top-level exceptions list to add the probe's exception to", src)
	}
	pol, err := policies.ParseCrypto(dst, out)
	if err != nil {
		return fmt.Errorf("the crypto policy with the probe's exception: %w", err)
	}
	if !slices.ContainsFunc(pol.Exceptions, func(e policies.Exception) bool { return e.Mode.Value == mode && e.Ticket.Value == "crypto-policy-gate" }) {
		return fmt.Errorf("the crypto policy with the probe's exception does not hold it")
	}
	return os.WriteFile(dst, out, 0o644)
}

// controller is a running controller binary.
type controller struct {
	*daemon
	addr string
	pool *x509.CertPool
}

// startController runs `bin serve` on a fresh data dir under work with
// RUSTYNET_INSECURE=ex, under the crypto policy file policy (empty: the
// built-in one), and waits until it serves.
func startController(ctx context.Context, rep *report, work, bin, ex, policy string) (*controller, error) {
	dir, err := os.MkdirTemp(work, "controller-")
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready.json")
	args := []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--ready-file", ready}
	if policy != "" {
		args = append(args, "--crypto-policy", policy)
	}
	d, err := startDaemon(ctx, rep.log, "controller", []string{insecure.Env + "=" + ex}, bin, args...)
	if err != nil {
		return nil, err
	}
	info, err := readyfile.Wait(ctx, ready, d.done, startTimeout)
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("controller with %s=%q: %w", insecure.Env, ex, err)
	}
	addr := info.API
	pem, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("the controller's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		d.stop()
		return nil, errors.New("the controller's tls/ca.pem holds no PEM certificate")
	}
	return &controller{daemon: d, addr: addr, pool: pool}, nil
}

// dialTLS makes one TLS handshake with addr, at most dialTimeout, and
// fills st (when not nil) with the connection's state.
func dialTLS(ctx context.Context, addr string, conf *tls.Config, st *tls.ConnectionState) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: conf}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if st != nil {
		*st = c.(*tls.Conn).ConnectionState()
	}
	_ = c.Close() // the handshake is what was asked; closing says nothing of it
	return nil
}

func outcome(err error) string {
	if err == nil {
		return "accepted"
	}
	return "refused (" + err.Error() + ")"
}

func keyDesc(c *x509.Certificate) string {
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + k.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}
