package controller_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/internal/lockedbuf"
)

// TestTLS12ExceptionLapses: a controller started with a controller-tls12
// exception in force accepts TLS 1.2 clients, and stops, by itself, once
// the exception's expiry passes while it runs: TLS 1.2 is refused, TLS
// 1.3 with HTTP/2 still served, and the metric turns 0.
func TestTLS12ExceptionLapses(t *testing.T) {
	start := time.Now().UTC()
	expires := start.Add(10 * 24 * time.Hour).Truncate(24 * time.Hour)
	t.Setenv(insecure.Env, "controller-tls12@"+expires.Format(time.DateOnly))
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	c := controllertest.StartWith(t, func(cfg *controller.RunConfig) {
		cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		cfg.Exceptions = []insecure.Grant{{Mode: "controller-tls12", Owner: "ops@example.com", Ticket: "OPS-1", Expires: expires, Source: "test"}}
		cfg.CryptoPolicy = "test"
	})
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		cfg.RootCAs = pool
		cfg.ServerName = "127.0.0.1"
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.APIAddr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	enabled := func() float64 {
		v, err := controllertest.Scrape(c.MetricsURL, `rustynet_controller_insecure_mode_enabled{mode="controller-tls12"}`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil || st.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2 with the exception in force: %v (version %x), want accepted", err, st.Version)
	}
	if got := enabled(); got != 1 {
		t.Errorf("the mode's gauge with the exception in force = %v, want 1", got)
	}
	clock.Store(expires.Add(time.Second).UnixNano())
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 after the exception's expiry: accepted, want refused")
	}
	if st, err := dial(&tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}}); err != nil || st.NegotiatedProtocol != "h2" {
		t.Errorf("TLS 1.3 after the expiry: %v (ALPN %q), want served with h2", err, st.NegotiatedProtocol)
	}
	if got := enabled(); got != 0 {
		t.Errorf("the mode's gauge after the expiry = %v, want 0", got)
	}
}

// TestTLS12NeedsAGrant: an exception in the environment that the crypto
// policy does not grant leaves the mode off: TLS 1.2 refused, the gauge 0,
// and the log says why.
func TestTLS12NeedsAGrant(t *testing.T) {
	expires := time.Now().UTC().Add(10 * 24 * time.Hour)
	t.Setenv(insecure.Env, "controller-tls12@"+expires.Format(time.DateOnly))
	var logs lockedbuf.Buffer
	c := controllertest.StartWith(t, func(cfg *controller.RunConfig) {
		cfg.CryptoPolicy = "policies/crypto.yaml (built in)"
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.APIAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12})
	if err == nil {
		conn.Close()
		t.Error("TLS 1.2 with an exception in the environment that the policy does not grant: accepted, want refused")
	}
	v, err := controllertest.Scrape(c.MetricsURL, `rustynet_controller_insecure_mode_enabled{mode="controller-tls12"}`)
	if err != nil || v != 0 {
		t.Errorf("the mode's gauge = %v, %v; want 0", v, err)
	}
	if !strings.Contains(logs.String(), "grants no exception for it") {
		t.Errorf("the log does not say why the mode is off:\n%s", logs.String())
	}
}
