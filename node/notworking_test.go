package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/backend/wireguard"
	"github.com/rustynet/rustynet/node/localapi"
)

// running is a node whose Run goes on in the background.
type running struct {
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
}

// runNode starts a node with cfg without waiting for it to come up; the
// test's end stops it.
func runNode(t *testing.T, cfg node.Config) *running {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("the node stopped with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("the node did not stop within 15s")
	}
}

// logBuffer is a slog handler's output, safe to read while the node logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// gauge reads an unlabelled gauge from reg; ok is false when it is absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestNetmapApplyFailure: a node whose netmap cannot be applied to its
// dataplane (here its backend fails to come up, as WireGuard's does when
// its UAPI socket is taken) is degraded in its status, with the reason,
// and rustynet_node_netmap_applied is 0; it tries again at each poll, and
// once the backend comes up it runs and the gauge is 1.
func TestNetmapApplyFailure(t *testing.T) {
	ctl := controllertest.Start(t)
	var fail atomic.Bool
	fail.Store(true)
	var reg backend.Registry
	reg.Register(backend.Spec{Name: wireguard.Name, PresharedKeys: true, New: func(o backend.Options) (backend.Backend, error) {
		if fail.Load() {
			return nil, errors.New("the device is held by another process")
		}
		return wireguard.New(o)
	}})
	prom := prometheus.NewRegistry()
	var logs logBuffer
	r := runNode(t, node.Config{
		StateDir: t.TempDir(), ControllerURL: ctl.URL, ControllerCA: ctl.CAFile, AuthKey: ctl.AuthKey(true), Hostname: "alpha",
		Registry: &reg, Netstack: true, PollWait: time.Second, Registerer: prom, Logger: logs.logger(), ProbeInterval: -1,
	})
	start := time.Now()
	eventually(t, 10*time.Second, "the node says its netmap is not in force", func() error {
		st := r.n.Status()
		if st.State != localapi.StateDegraded || !strings.Contains(st.ApplyError, "held by another process") {
			return fmt.Errorf("state %s, apply error %q", st.State, st.ApplyError)
		}
		return nil
	})
	t.Logf("degraded after %v", time.Since(start).Round(time.Millisecond))
	if v, ok := gauge(t, prom, "rustynet_node_netmap_applied"); !ok || v != 0 {
		t.Errorf("rustynet_node_netmap_applied = %v (present %v) while the netmap is not in force, want 0", v, ok)
	}
	// Each poll (1 s here) tries again; the failure is logged once.
	time.Sleep(2500 * time.Millisecond)
	if n := strings.Count(logs.String(), "the netmap is not in force"); n != 1 {
		t.Errorf("the failure is logged %d times, want once:\n%s", n, logs.String())
	}
	fail.Store(false)
	start = time.Now()
	eventually(t, 10*time.Second, "the node runs once its backend comes up", func() error {
		st := r.n.Status()
		if st.State != localapi.StateRunning || st.ApplyError != "" || st.Interface != "netstack" {
			return fmt.Errorf("state %s, apply error %q, interface %q", st.State, st.ApplyError, st.Interface)
		}
		return nil
	})
	t.Logf("running %v after the backend could come up", time.Since(start).Round(time.Millisecond))
	if v, ok := gauge(t, prom, "rustynet_node_netmap_applied"); !ok || v != 1 {
		t.Errorf("rustynet_node_netmap_applied = %v (present %v) with the netmap in force, want 1", v, ok)
	}
	if !strings.Contains(logs.String(), "the netmap is in force again") {
		t.Errorf("the node did not log that its netmap is in force again:\n%s", logs.String())
	}
}

// TestBackendFlagNotInEffect: a node registered on WireGuard and started
// again on its state dir with another --backend keeps the controller's
// choice (the controller learns a node's backends when it registers), and
// says so in its log and its status.
func TestBackendFlagNotInEffect(t *testing.T) {
	ctl := controllertest.Start(t)
	m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: wireguard.Name}
	cfg := m.config("alpha", m.AuthKey())
	first := startNetstackNode(t, cfg)
	first.Stop()

	cfg.Backend = "quic"
	var logs logBuffer
	cfg.Logger = logs.logger()
	start := time.Now()
	a := startNetstackNode(t, cfg)
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up again in %v", time.Since(start).Round(time.Millisecond))
	if st.Backend != wireguard.Name {
		t.Fatalf("the node runs %s; this test is of a controller that keeps wireguard", st.Backend)
	}
	if !strings.Contains(st.BackendNote, "--backend quic is not in effect") || !strings.Contains(st.BackendNote, "registered") {
		t.Errorf("status backend_note = %q, want why --backend quic is not in effect", st.BackendNote)
	}
	if !strings.Contains(logs.String(), "the configured backend is not the one the node runs") {
		t.Errorf("the node did not log that --backend quic is not in effect:\n%s", logs.String())
	}
}

// writeOtherCA writes the certificate of a CA that did not sign the
// controller's.
func writeOtherCA(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWrongControllerCA: a node that never registered, given a CA that
// does not verify the controller's certificate, stops with an error that
// says to check --controller-ca; a node that registered and has its netmap
// cached keeps it in force and keeps trying (the controller's certificate
// may have been renewed).
func TestWrongControllerCA(t *testing.T) {
	ctl := controllertest.Start(t)
	other := writeOtherCA(t)
	t.Run("never registered", func(t *testing.T) {
		n, err := node.New(node.Config{StateDir: t.TempDir(), ControllerURL: ctl.URL, ControllerCA: other, AuthKey: ctl.AuthKey(true),
			Hostname: "alpha", Registry: backends(), Netstack: true, ProbeInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err = n.Run(ctx)
		t.Logf("Run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil || !strings.Contains(err.Error(), "--controller-ca "+other) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Run = %v, want an error that says to check --controller-ca %s", err, other)
		}
	})
	t.Run("registered", func(t *testing.T) {
		m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: wireguard.Name}
		cfg := m.config("bravo", m.AuthKey())
		startNetstackNode(t, cfg).Stop()
		cfg.ControllerCA = other
		r := runNode(t, cfg)
		eventually(t, 10*time.Second, "the node is offline on its cached netmap", func() error {
			st := r.n.Status()
			if st.State != localapi.StateOffline || st.Interface != "netstack" {
				return fmt.Errorf("state %s, interface %q", st.State, st.Interface)
			}
			return nil
		})
		select {
		case err := <-r.done:
			r.cancel = nil
			t.Fatalf("a registered node stopped with %v; it should keep its cached netmap and keep trying", err)
		case <-time.After(2 * time.Second):
		}
	})
}
