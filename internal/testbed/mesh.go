package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/promtext"
	"github.com/rustynet/rustynet/node/localapi"
)

// MeshConfig is what a Mesh runs: the built rustynet-controller and
// rustynetd, a scratch directory, and where their commands are logged.
type MeshConfig struct {
	ControllerBin, DaemonBin string
	Work                     string
	Log                      io.Writer
	// MetricsListen is where every daemon serves its metrics inside its
	// namespace; empty means MetricsAddr (loopback). ":9470" also serves
	// them on the host's address, for an observer to scrape.
	MetricsListen string
	// NodeArgs are extra flags for every rustynetd.
	NodeArgs []string
	// Observer adds one more host to the testbed, running no daemon, for
	// whatever watches the mesh (a Prometheus); see Mesh.Observer.
	Observer bool
	// ControllerCert, when set, gives the controller an operator's
	// certificate for its address (rustynet-controller --tls-cert): it
	// returns the certificate, its key and the CA nodes are to trust.
	ControllerCert func(addr netip.Addr) (certFile, keyFile, caFile string, err error)
	// DataDirBytes, when positive, puts the mesh's directory (the
	// controller's data directory, the nodes' state under it) on a tmpfs
	// of that size, so that a test can fill it.
	DataDirBytes int64
}

func (c MeshConfig) metricsListen() string {
	if c.MetricsListen == "" {
		return MetricsAddr
	}
	return c.MetricsListen
}

// Mesh is a controller in host 0 of a testbed and a rustynetd in each of
// the other hosts.
type Mesh struct {
	env    MeshConfig
	net    *Network
	dir    string
	ctl    *daemon.Process
	nodes  []*MeshNode
	key    string
	backnd string
	mtu    int
	// An operator's certificate (MeshConfig.ControllerCert): its files and
	// the CA nodes trust; caFile is always set.
	certFile, keyFile, caFile string
	tmpfs                     bool
}

// MeshNode is one rustynetd of a Mesh.
type MeshNode struct {
	host *Host
	dir  string
	p    *daemon.Process
	addr netip.Addr
	args []string
}

// Host is the node's namespace.
func (nd *MeshNode) Host() *Host { return nd.host }

// Addr is the node's mesh IPv4 address.
func (nd *MeshNode) Addr() netip.Addr { return nd.addr }

// Process is the rustynetd process.
func (nd *MeshNode) Process() *daemon.Process { return nd.p }

// Nodes are the mesh's nodes.
func (m *Mesh) Nodes() []*MeshNode { return m.nodes }

// Controller is the controller process.
func (m *Mesh) Controller() *daemon.Process { return m.ctl }

// NewMesh builds a testbed of peers+1 hosts with a controller and peers
// nodes on the backend, and waits until every node has every other as a
// peer. Close tears it all down.
func NewMesh(ctx context.Context, env MeshConfig, backend string, peers, mtu int) (*Mesh, error) {
	m, err := StartMesh(ctx, env, backend, peers, mtu)
	if err != nil {
		return nil, err
	}
	if err := m.WaitPeers(ctx); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// Close stops the daemons and removes the testbed.
func (m *Mesh) Close() { m.close() }

// Dir is the node's state directory (its local API socket is there).
func (nd *MeshNode) Dir() string { return nd.dir }

// MetricsAddr is where every daemon of a Mesh serves its metrics, inside
// its own namespace.
const MetricsAddr = "127.0.0.1:9470"

// Scrape reads one unlabelled sample (go_goroutines, say) from the metrics
// of the daemon in host h.
func Scrape(ctx context.Context, h *Host, name string) (float64, error) {
	vs, err := ScrapeAll(ctx, h, name)
	if err != nil {
		return 0, err
	}
	return vs[name], nil
}

// ScrapeAll reads several unlabelled metrics from one scrape of the
// daemon listening on MetricsAddr in h; a missing one is an error.
func ScrapeAll(ctx context.Context, h *Host, names ...string) (map[string]float64, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialContext(ctx, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	out, err := promtext.Read(ctx, hc, "http://"+MetricsAddr+"/metrics", names...)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", h.Name, err)
	}
	return out, nil
}

// Observer is the extra host of a mesh started with MeshConfig.Observer
// (nil without): on the mesh's network, running no daemon.
func (m *Mesh) Observer() *Host {
	if !m.env.Observer {
		return nil
	}
	return m.net.Hosts[len(m.net.Hosts)-1]
}

// DataDir is the controller's data directory (its admin socket is there).
func (m *Mesh) DataDir() string { return m.dir }

// CAFile is the CA the mesh's nodes trust the controller by.
func (m *Mesh) CAFile() string { return m.caFile }

// AuthKey is the reusable auth key the mesh's nodes registered with.
func (m *Mesh) AuthKey() string { return m.key }

// ControllerURL is the controller's node API.
func (m *Mesh) ControllerURL() string { return m.ctlURL() }

// ControllerHost is the host the controller runs in.
func (m *Mesh) ControllerHost() *Host { return m.net.Hosts[0] }

func (m *Mesh) ctlURL() string {
	return "https://" + netip.AddrPortFrom(m.net.Hosts[0].Addr, 8443).String()
}

// StartController starts the mesh's controller (again, after Controller's
// Stop), on the same data dir and address.
func (m *Mesh) StartController(ctx context.Context) error {
	h := m.net.Hosts[0]
	ready := filepath.Join(m.dir, "controller.ready")
	args := []string{"serve", "--data-dir", m.dir, "--listen",
		netip.AddrPortFrom(h.Addr, 8443).String(), "--metrics-listen", m.env.metricsListen(), "--ready-file", ready}
	if m.certFile != "" {
		args = append(args, "--tls-cert", m.certFile, "--tls-key", m.keyFile)
	}
	cmd := h.Command(ctx, m.env.ControllerBin, args...)
	p, _, err := daemon.StartReady(ctx, cmd, ready, 30*time.Second)
	if err != nil {
		return err
	}
	m.ctl = p
	return nil
}

// StartMesh builds a testbed of peers+1 hosts and starts a controller and
// peers nodes on the backend.
func StartMesh(ctx context.Context, env MeshConfig, backend string, peers, mtu int) (*Mesh, error) {
	hosts := peers + 1
	if env.Observer {
		hosts++
	}
	n, err := Create(ctx, Options{Hosts: hosts})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(env.Work, "mesh-")
	if err != nil {
		n.Close()
		return nil, err
	}
	m := &Mesh{env: env, net: n, dir: dir, backnd: backend, mtu: mtu, caFile: filepath.Join(dir, "tls", "ca.pem")}
	if env.DataDirBytes > 0 {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", env.DataDirBytes)); err != nil {
			m.close()
			return nil, fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
		m.tmpfs = true
	}
	if env.ControllerCert != nil {
		if m.certFile, m.keyFile, m.caFile, err = env.ControllerCert(n.Hosts[0].Addr); err != nil {
			m.close()
			return nil, fmt.Errorf("controller certificate: %w", err)
		}
	}
	if err := m.StartController(ctx); err != nil {
		m.close()
		return nil, err
	}
	out, err := exec.CommandContext(ctx, env.ControllerBin, "authkey", "create", "--data-dir", dir, "--reusable").Output()
	if err != nil {
		m.close()
		return nil, fmt.Errorf("authkey create: %w", err)
	}
	m.key = string(bytes.TrimSpace(out))
	for i := 1; i <= peers; i++ {
		if err := m.addNode(ctx, i); err != nil {
			m.close()
			return nil, err
		}
	}
	return m, nil
}

func (m *Mesh) addNode(ctx context.Context, i int) error {
	h := m.net.Hosts[i]
	dir := filepath.Join(m.dir, fmt.Sprintf("node%d", i))
	nd := &MeshNode{host: h, dir: dir, args: []string{"--state-dir", dir, "--controller", m.ctlURL(),
		"--controller-ca", m.caFile, "--auth-key", m.key, "--backend", m.backnd,
		"--interface", fmt.Sprintf("rnm%d-%s", i, h.Name[5:11]), "--mtu", strconv.Itoa(m.mtu), "--hostname", fmt.Sprintf("n%d", i),
		"--metrics-listen", m.env.metricsListen()}}
	nd.args = append(nd.args, m.env.NodeArgs...)
	if err := nd.start(ctx, m.env.DaemonBin, nd.args); err != nil {
		return err
	}
	m.nodes = append(m.nodes, nd)
	return nil
}

func (nd *MeshNode) start(ctx context.Context, bin string, args []string) error {
	ready := nd.dir + ".ready"
	p, _, err := daemon.StartReady(ctx, nd.host.Command(ctx, bin, append(slices.Clone(args), "--ready-file", ready)...), ready, 30*time.Second)
	if err != nil {
		return err
	}
	nd.p = p
	st, err := localapi.NewClient(nd.dir).Status(ctx)
	if err != nil {
		return err
	}
	for _, a := range st.Self.Addresses {
		if a.Addr().Is4() {
			nd.addr = a.Addr()
		}
	}
	return nil
}

// RestartNode stops node i (of Nodes) and starts it again on its state,
// with extra flags after the mesh's (a later flag wins), as an operator
// upgrades or reconfigures a node. It returns once the daemon is ready.
func (m *Mesh) RestartNode(ctx context.Context, i int, extra ...string) error {
	nd := m.nodes[i]
	if err := nd.p.Stop(10 * time.Second); err != nil {
		return fmt.Errorf("stop node %d: %w", i+1, err)
	}
	if err := nd.start(ctx, m.env.DaemonBin, append(slices.Clone(nd.args), extra...)); err != nil {
		return fmt.Errorf("start node %d again: %w", i+1, err)
	}
	return nil
}

// SetPolicy replaces the controller's policy with text, through its CLI
// (rustynet-controller policy set), as an operator does.
func (m *Mesh) SetPolicy(ctx context.Context, text string) error {
	cmd := exec.CommandContext(ctx, m.env.ControllerBin, "policy", "set", "-", "--data-dir", m.dir)
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("policy set: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// WaitPeers waits until every node has every other as a peer.
func (m *Mesh) WaitPeers(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, nd := range m.nodes {
			st, err := localapi.NewClient(nd.dir).Status(ctx)
			if err != nil || len(st.DataplanePeers) < len(m.nodes)-1 {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("nodes did not all see each other within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *Mesh) close() {
	for _, nd := range m.nodes {
		if nd.p != nil {
			nd.p.Stop(10 * time.Second)
		}
	}
	if m.ctl != nil {
		m.ctl.Stop(10 * time.Second)
	}
	m.net.Close()
	if m.tmpfs {
		unix.Unmount(m.dir, unix.MNT_DETACH)
	}
	os.RemoveAll(m.dir)
}

// CPU sums the CPU time of every node daemon.
func (m *Mesh) CPU() time.Duration {
	var d time.Duration
	for _, nd := range m.nodes {
		c, _ := nd.p.CPU()
		d += c
	}
	return d
}

// BuildDaemons builds rustynet-controller and rustynetd of this module
// into dir, statically (CGO off) as the build gate does, for the tests
// that run a Mesh. The error holds the compiler's output.
func BuildDaemons(dir string) error {
	for _, b := range []string{"rustynet-controller", "rustynetd"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/rustynet/rustynet/cmd/"+b)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", b, err, out)
		}
	}
	return nil
}
