package cryptopolicy

import (
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
	"time"

	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/internal/readyfile"
)

// startTimeout bounds how long a daemon may take to start serving.
const startTimeout = 30 * time.Second

// dialTimeout bounds each TLS handshake a probe makes.
const dialTimeout = 10 * time.Second

// probeController runs the controller binary three times, with
// RUSTYNET_INSECURE unset, with a lapsed controller-tls12 exception and with
// one in force, and checks its effective TLS configuration: TLS 1.2 is
// refused by default and with the lapsed exception and accepted with the
// valid one; a client offering X25519MLKEM768 gets it; the server
// certificate is ECDSA P-256. It returns an error only when it could not
// probe (the controller did not start).
func probeController(ctx context.Context, rep *report, work, bin string, now time.Time) error {
	c, err := startController(ctx, rep, work, bin, "")
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
	c.stop()

	for _, ex := range []struct {
		value  string
		accept bool
	}{
		{"controller-tls12@" + now.Add(-24*time.Hour).Format(time.DateOnly), false},
		{"controller-tls12@" + now.Add(48*time.Hour).Format(time.DateOnly), true},
	} {
		c, err := startController(ctx, rep, work, bin, ex.value)
		if err != nil {
			return err
		}
		err = dialTLS(ctx, c.addr, &tls.Config{RootCAs: c.pool, MaxVersion: tls.VersionTLS12}, nil)
		c.stop()
		rep.add("controller", (err == nil) == ex.accept, "TLS 1.2 with %s=%s: %s (want %s)", insecure.Env, ex.value, outcome(err), map[bool]string{true: "accepted", false: "refused"}[ex.accept])
	}
	return nil
}

// controller is a running controller binary.
type controller struct {
	*daemon
	addr string
	pool *x509.CertPool
}

// startController runs `bin serve` on a fresh data dir under work with
// RUSTYNET_INSECURE=ex, and waits until it serves.
func startController(ctx context.Context, rep *report, work, bin, ex string) (*controller, error) {
	dir, err := os.MkdirTemp(work, "controller-")
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready.json")
	d, err := startDaemon(ctx, rep.log, "controller", []string{insecure.Env + "=" + ex}, bin,
		"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--ready-file", ready)
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
