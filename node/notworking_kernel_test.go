package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/node/localapi"
)

var (
	cliOnce sync.Once
	cliBin  string
)

// buildCLI builds the rustynet CLI into binDir, once per test process.
func buildCLI(t testing.TB) string {
	buildBinaries(t)
	cliOnce.Do(func() { cliBin = controllertest.Build(t, binDir, "../cmd/rustynet") })
	if cliBin == "" {
		t.Fatal("building rustynet failed in an earlier test")
	}
	return cliBin
}

// TestUAPISocketCollision reproduces two nodes on one host, each in its own
// network namespace, with the same --interface: wireguard-go's UAPI socket
// (/var/run/wireguard/NAME.sock) is one path for every namespace, so the
// second cannot bring its data plane up. A node that finds the socket in use
// when it starts refuses to start and says what to change; one that finds
// it in use only when it applies its netmap (the other node came up from its
// cache meanwhile) says it is degraded, and `rustynet status` exits 1.
func TestUAPISocketCollision(t *testing.T) {
	require.Root(t)
	cli := buildCLI(t)
	m := newKernelMesh(t, "wireguard", 3)
	key := m.AuthKey()
	iface := "rnc-" + randomSuffix(m.net.Hosts[1].Name)
	sock := "/var/run/wireguard/" + iface + ".sock"
	node := func(host int, name string) *kernelNode {
		n := &kernelNode{t: t, host: m.net.Hosts[host], name: name, backend: "wireguard", iface: iface, dir: t.TempDir(),
			args: []string{"--controller", m.ctl.URL(), "--controller-ca", m.ctl.CAFile(), "--auth-key", key,
				"--hostname", name, "--backend", "wireguard", "--metrics-listen", ""}}
		t.Cleanup(n.Stop)
		return n
	}
	a, b := node(1, "alpha"), node(2, "bravo")
	a.Start()

	t.Run("at start", func(t *testing.T) {
		start := time.Now()
		done := b.launch()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("bravo still runs 20s after it started on alpha's interface name %s; its log:\n%s", iface, b.log())
		}
		took := time.Since(start)
		if code := b.exitCode(); code != 1 {
			t.Errorf("bravo exited %d, want 1", code)
		}
		if log := b.log(); !strings.Contains(log, sock+" is in use") || !strings.Contains(log, "another --interface name") {
			t.Errorf("bravo's log does not name %s and say to give another --interface name:\n%s", sock, log)
		}
		b.Stop()
		t.Logf("bravo refused to start in %v", took.Round(time.Millisecond))
	})

	t.Run("at apply", func(t *testing.T) {
		// Alpha stops, and comes back from its cached netmap while the
		// controller is down, after bravo started: bravo's check at start
		// found the socket free.
		a.Stop()
		m.ctl.Stop()
		b.launch()
		eventually(t, 10*time.Second, "bravo waits for the controller", func() error {
			st, err := b.Status(context.Background())
			if err != nil {
				return err
			}
			if st.State != localapi.StateOffline {
				return fmt.Errorf("state %s", st.State)
			}
			return nil
		})
		a.Start()
		m.ctl.Start()
		start := time.Now()
		var st *localapi.Status
		eventually(t, 30*time.Second, "bravo says its netmap is not in force", func() error {
			var err error
			if st, err = b.Status(context.Background()); err != nil {
				return err
			}
			if st.State != localapi.StateDegraded {
				return fmt.Errorf("state %s, apply error %q", st.State, st.ApplyError)
			}
			return nil
		})
		t.Logf("bravo degraded %v after the controller came back", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(st.ApplyError, sock) {
			t.Errorf("bravo's apply error %q does not name %s", st.ApplyError, sock)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(cli, "status", "--state-dir", b.dir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stdout.String(), "state:      degraded") ||
			!strings.Contains(stderr.String(), "the node is degraded") {
			t.Errorf("rustynet status = %v, stdout %q, stderr %q; want exit 1 and degraded", err, stdout.String(), stderr.String())
		}
		if n := strings.Count(b.log(), "the netmap is not in force"); n != 1 {
			t.Errorf("bravo logged the failure %d times, want once (repeats go to debug)", n)
		}
	})
}
