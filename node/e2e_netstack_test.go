package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/backend/quic"
	"github.com/rustynet/rustynet/node/backend/wireguard"
	"github.com/rustynet/rustynet/node/localapi"
)

// backends are the backends the end-to-end suite runs over.
func backends() *backend.Registry {
	var r backend.Registry
	wireguard.Register(&r)
	quic.Register(&r)
	return &r
}

// TestMeshNetstack runs the suite with nodes in this process on the
// userspace netstack, over loopback. It needs no privileges.
func TestMeshNetstack(t *testing.T) {
	reg := backends()
	for _, name := range reg.Names() {
		t.Run("backend="+name, func(t *testing.T) {
			runSuite(t, func(t *testing.T) mesh {
				return &netstackMesh{t: t, ctl: controllertest.Start(t), reg: reg, backend: name}
			})
		})
	}
}

type netstackMesh struct {
	t       *testing.T
	ctl     *controllertest.Controller
	reg     *backend.Registry
	backend string
}

type netstackController struct{ c *controllertest.Controller }

func (c netstackController) Admin() *controller.AdminClient { return c.c.Admin }
func (c netstackController) Stop()                          { c.c.Stop() }
func (c netstackController) Kill()                          { c.c.Kill() }
func (c netstackController) Start()                         { c.c.Restart() }

func (m *netstackMesh) Controller() meshController { return netstackController{m.ctl} }

func (m *netstackMesh) AuthKey(tags ...string) string { return m.ctl.AuthKey(true, tags...) }

func (m *netstackMesh) NewNode(name, key string) meshNode {
	return startNetstackNode(m.t, m.config(name, key))
}

// config is the configuration of a node of the mesh named name,
// registering with key.
func (m *netstackMesh) config(name, key string) node.Config {
	return node.Config{
		StateDir:      m.t.TempDir(),
		ControllerURL: m.ctl.URL,
		ControllerCA:  m.ctl.CAFile,
		AuthKey:       key,
		Hostname:      name,
		Backend:       m.backend,
		Registry:      m.reg,
		Netstack:      true,
		PollWait:      10 * time.Second,
		Logger:        testLogger(name),
	}
}

// startNetstackNode starts a node with cfg (named by its Hostname), waits
// until it is up and stops it when the test ends.
func startNetstackNode(t *testing.T, cfg node.Config) *netstackNode {
	t.Helper()
	n := &netstackNode{t: t, cfg: cfg, name: cfg.Hostname}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

type netstackNode struct {
	t    *testing.T
	cfg  node.Config
	name string

	mu     sync.Mutex
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
	addr   netip.Addr
	addr6  netip.Addr
}

func (n *netstackNode) Name() string { return n.name }

func (n *netstackNode) Start() {
	n.t.Helper()
	nd, err := node.New(n.cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nd.Run(ctx) }()
	n.mu.Lock()
	n.n, n.cancel, n.done = nd, cancel, done
	n.mu.Unlock()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	up := make(chan error, 1)
	go func() {
		_, err := nd.Net(wctx)
		up <- err
	}()
	select {
	case err = <-up:
	case err = <-done:
		// Run returned before the node came up: put its error back for
		// Stop, and stop waiting.
		done <- err
		wcancel()
		<-up
		err = fmt.Errorf("Run returned %v", err)
	}
	if err != nil {
		n.t.Fatalf("node %s did not come up: %v", n.name, err)
	}
	if n.addr, n.addr6, err = meshAddrs(nd.Status().Self.Addresses); err != nil {
		n.t.Fatalf("node %s: %v", n.name, err)
	}
}

func (n *netstackNode) Stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil {
		n.t.Errorf("node %s stopped with %v", n.name, err)
	}
}

func (n *netstackNode) node() *node.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.n
}

func (n *netstackNode) Addr() netip.Addr  { return n.addr }
func (n *netstackNode) Addr6() netip.Addr { return n.addr6 }

func (n *netstackNode) Listen(at netip.AddrPort) (net.Listener, error) {
	tnet, err := n.node().Net(context.Background())
	if err != nil {
		return nil, err
	}
	return tnet.ListenTCPAddrPort(at)
}

func (n *netstackNode) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	tnet, err := n.node().Net(ctx)
	if err != nil {
		return nil, err
	}
	return tnet.DialContextTCPAddrPort(ctx, to)
}

func (n *netstackNode) Status(ctx context.Context) (*localapi.Status, error) {
	nd := n.node()
	if nd == nil {
		return nil, errors.New("node stopped")
	}
	return nd.Status(), nil
}

func (n *netstackNode) DataplanePeers(ctx context.Context) ([]api.NodePublic, error) {
	st, err := n.Status(ctx)
	if err != nil {
		return nil, err
	}
	return st.DataplanePeers, nil
}

func (n *netstackNode) RotateKey(ctx context.Context) (api.NodePublic, error) {
	return n.node().RotateKey(ctx)
}

// testLogger logs a node's debug output to stderr when RUSTYNET_TEST_LOG is
// set, and discards it otherwise.
func testLogger(name string) *slog.Logger {
	if os.Getenv("RUSTYNET_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// TestBackendChosenByPolicy: nodes that offer every backend run the one the
// controller's policy picks, and a node forced onto another backend is not
// their peer, with the reason in their status.
func TestBackendChosenByPolicy(t *testing.T) {
	ctl := controllertest.Start(t)
	policy := "acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"*\"]\nbackends:\n  - nodes: [\"*\"]\n    backend: quic\n"
	if _, err := ctl.Admin.SetPolicy(context.Background(), policy); err != nil {
		t.Fatal(err)
	}
	m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: ""}
	key := m.AuthKey()
	a, b := m.NewNode("alpha", key), m.NewNode("bravo", key)
	if err := transfer(t, a, b, 64<<10); err != nil {
		t.Fatal(err)
	}
	for _, n := range []meshNode{a, b} {
		if st, _ := n.Status(context.Background()); st.Backend != "quic" {
			t.Errorf("%s runs %s, want quic (the policy's choice)", n.Name(), st.Backend)
		}
	}
	m.backend = "wireguard"
	c := m.NewNode("charlie", key)
	eventually(t, 5*time.Second, "alpha says why charlie is not a peer", func() error {
		st, err := a.Status(context.Background())
		if err != nil {
			return err
		}
		for _, miss := range st.Missing {
			if miss.Name == c.Name() && strings.Contains(miss.Reason, "wireguard") {
				return nil
			}
		}
		return fmt.Errorf("missing = %+v", st.Missing)
	})
	if err := unreachable(t, a, c); err != nil {
		t.Error(err)
	}
}
