package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
)

// binaries are built once per test process, into binDir, which TestMain
// removes.
var (
	buildOnce                   sync.Once
	binDir                      string
	controllerBin, rustynetdBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func buildBinaries(t testing.TB) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rustynet-node-test")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
		controllerBin = controllertest.Build(t, dir, "../cmd/rustynet-controller")
		rustynetdBin = controllertest.Build(t, dir, "../cmd/rustynetd")
	})
	if controllerBin == "" || rustynetdBin == "" {
		t.Fatal("building the binaries failed in an earlier test")
	}
}

// TestMeshKernel runs the suite with rustynetd processes on kernel TUNs,
// each node in its own network namespace on a bridge, and the controller
// in another. Five hosts: the controller and up to four nodes.
func TestMeshKernel(t *testing.T) {
	require.Root(t)
	require.Command(t, "wg")
	buildBinaries(t)
	for _, name := range backends().Names() {
		t.Run("backend="+name, func(t *testing.T) {
			runSuite(t, func(t *testing.T) mesh { return newKernelMesh(t, name, 5) })
		})
	}
}

// kernelMesh is a testbed network: host 0 runs the controller, the others
// run one node each.
type kernelMesh struct {
	t       testing.TB
	net     *testbed.Network
	ctl     *kernelController
	backend string
	next    int
}

func newKernelMesh(t testing.TB, backendName string, hosts int) *kernelMesh {
	n := testbed.New(t, testbed.Options{Hosts: hosts})
	m := &kernelMesh{t: t, net: n, backend: backendName, next: 1}
	m.ctl = &kernelController{t: t, host: n.Hosts[0], dir: t.TempDir()}
	m.ctl.Start()
	return m
}

func (m *kernelMesh) Controller() meshController { return m.ctl }

func (m *kernelMesh) AuthKey(tags ...string) string {
	resp, err := m.ctl.Admin().CreateAuthKey(context.Background(), api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600, Tags: tags})
	if err != nil {
		m.t.Fatal(err)
	}
	return resp.Key
}

func (m *kernelMesh) NewNode(name, key string) meshNode { return m.newNode(name, key) }

// newNode starts a node on the next free host, with rustynetd's extra
// flags.
func (m *kernelMesh) newNode(name, key string, extra ...string) *kernelNode {
	if m.next >= len(m.net.Hosts) {
		m.t.Fatalf("the testbed has no free host for %s", name)
	}
	h := m.net.Hosts[m.next]
	n := &kernelNode{t: m.t, host: h, name: name, backend: m.backend, iface: fmt.Sprintf("rn%d-%s", m.next, randomSuffix(h.Name)),
		dir: m.t.TempDir(), args: []string{
			"--controller", m.ctl.URL(), "--controller-ca", m.ctl.CAFile(), "--auth-key", key,
			"--hostname", name, "--backend", m.backend,
		}}
	n.args = append(n.args, extra...)
	m.next++
	n.Start()
	m.t.Cleanup(n.Stop)
	return n
}

// randomSuffix takes the random part of a testbed namespace name, so that
// interface names (and their global UAPI sockets) differ between tests.
func randomSuffix(ns string) string {
	parts := strings.Split(ns, "-")
	if len(parts) >= 2 {
		return parts[1][:min(len(parts[1]), 6)]
	}
	return "x"
}

// kernelController is a controller process in host 0's namespace.
type kernelController struct {
	t    testing.TB
	host *testbed.Host
	dir  string
	mu   sync.Mutex
	p    *controllertest.Process
}

func (c *kernelController) URL() string {
	return "https://" + netip.AddrPortFrom(c.host.Addr, 8443).String()
}
func (c *kernelController) CAFile() string { return c.dir + "/tls/ca.pem" }

func (c *kernelController) Admin() *controller.AdminClient { return controller.NewAdminClient(c.dir) }

func (c *kernelController) Start() {
	cmd := c.host.Command(context.Background(), controllerBin,
		controllertest.ServeArgs(c.dir, netip.AddrPortFrom(c.host.Addr, 8443).String(), "127.0.0.1:0")...)
	p := controllertest.StartCommand(c.t, cmd, c.dir)
	c.mu.Lock()
	c.p = p
	c.mu.Unlock()
	// Registered after StartCommand's own cleanup (which kills), so it
	// runs first and stops the controller cleanly.
	c.t.Cleanup(c.Stop)
}

// take returns the running controller process, if any, and forgets it.
func (c *kernelController) take() *controllertest.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.p
	c.p = nil
	return p
}

func (c *kernelController) Stop() {
	p := c.take()
	if p == nil {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(15 * time.Second); err != nil {
		c.t.Errorf("controller stop: %v", err)
	}
}

// Kill sends the controller SIGKILL: it gets no chance to answer its
// long-polls, finish requests, remove its admin socket or close its store,
// as in a crash or an OOM kill. The kernel closes its sockets.
func (c *kernelController) Kill() {
	p := c.take()
	if p == nil {
		return
	}
	p.Cmd.Process.Kill()
	err := p.Wait(15 * time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		c.t.Errorf("controller kill: %v", err)
		return
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		c.t.Errorf("controller kill: it exited with %v, want death by SIGKILL", err)
	}
}

// kernelNode is a rustynetd process with a kernel TUN in its host's
// namespace.
type kernelNode struct {
	t       testing.TB
	host    *testbed.Host
	name    string
	backend string
	iface   string
	dir     string
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
	addr netip.Addr
	// addr6 is the IPv6 mesh address.
	addr6 netip.Addr
}

func (n *kernelNode) Name() string      { return n.name }
func (n *kernelNode) Addr() netip.Addr  { return n.addr }
func (n *kernelNode) Addr6() netip.Addr { return n.addr6 }

func (n *kernelNode) Start() {
	n.t.Helper()
	done := n.launch()
	eventually(n.t, 30*time.Second, n.name+" comes up", func() error {
		select {
		case <-done:
			return fmt.Errorf("rustynetd exited")
		default:
		}
		st, err := n.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Self == nil || st.Interface == "" {
			return fmt.Errorf("state %s, no dataplane yet", st.State)
		}
		n.addr, n.addr6, err = meshAddrs(st.Self.Addresses)
		return err
	})
}

// launch starts rustynetd without waiting for it to come up, and returns
// a channel closed when it exits.
func (n *kernelNode) launch() chan struct{} {
	n.t.Helper()
	args := append([]string{"--state-dir", n.dir, "--interface", n.iface, "--log-level", "debug"}, n.args...)
	cmd := n.host.Command(context.Background(), rustynetdBin, args...)
	logs := &bytes.Buffer{}
	cmd.Stderr = &lockedWriter{w: logs, mu: &n.mu}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.logs, n.done = cmd, logs, done
	n.mu.Unlock()
	n.t.Cleanup(func() {
		if n.t.Failed() {
			n.mu.Lock()
			n.t.Logf("%s log:\n%s", n.name, logs)
			n.mu.Unlock()
		}
	})
	return done
}

// exitCode is rustynetd's exit status once it exited, or -1.
func (n *kernelNode) exitCode() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.ProcessState == nil {
		return -1
	}
	return n.cmd.ProcessState.ExitCode()
}

// log returns rustynetd's log so far.
func (n *kernelNode) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

func (n *kernelNode) Stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		n.t.Errorf("%s did not stop within 15s of SIGTERM", n.name)
	}
}

func (n *kernelNode) Listen(at netip.AddrPort) (net.Listener, error) {
	return n.host.Listen("tcp", at.String())
}

func (n *kernelNode) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	return n.host.DialContext(ctx, "tcp", to.String())
}

func (n *kernelNode) Status(ctx context.Context) (*localapi.Status, error) {
	return localapi.NewClient(n.dir).Status(ctx)
}

func (n *kernelNode) RotateKey(ctx context.Context) (api.NodePublic, error) {
	return localapi.NewClient(n.dir).RotateKey(ctx)
}

// DataplanePeers asks wireguard-tools, as an operator would (`wg show
// IFACE peers`), when the node runs WireGuard; other backends have no
// such tool, and the node's status says what the backend holds.
func (n *kernelNode) DataplanePeers(ctx context.Context) ([]api.NodePublic, error) {
	if n.backend != "wireguard" {
		st, err := n.Status(ctx)
		if err != nil {
			return nil, err
		}
		return st.DataplanePeers, nil
	}
	out, err := n.host.Command(ctx, "wg", "show", n.iface, "peers").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wg show %s peers: %v: %s", n.iface, err, out)
	}
	var keys []api.NodePublic
	for _, f := range strings.Fields(string(out)) {
		k, err := api.ParseNodePublic(f)
		if err != nil {
			return nil, fmt.Errorf("wg show printed %q: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// lockedWriter serialises writes to a buffer shared with readers.
type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
