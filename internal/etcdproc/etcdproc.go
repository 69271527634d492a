// Package etcdproc runs a cluster of etcd server processes for tests and
// for the benchmark matrix: the server is built from this module's
// test-only main (controller/store/etcd/etcdtest/etcd, etcdmain at the
// version go.mod names), each member can be killed with SIGKILL and
// started again on its data, and health is read from etcd's own /health
// endpoint, so that a caller links no etcd code.
package etcdproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/internal/ports"
	"github.com/rustynet/rustynet/internal/promtext"
)

// Package is the import path of the etcd server's main package.
const Package = "github.com/rustynet/rustynet/controller/store/etcd/etcdtest/etcd"

// Build builds the etcd server statically into dir, from the module in
// srcDir (empty: the current directory's), and returns its path.
func Build(ctx context.Context, srcDir, dir string) (string, error) {
	bin := filepath.Join(dir, "etcd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, Package)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build etcd: %v\n%s", err, stderr.String())
	}
	return bin, nil
}

// Options place the members of a Cluster.
type Options struct {
	// Dir holds the members' data directories (required).
	Dir string
	// Hosts are the members' addresses, one per member, each serving
	// clients on port 2379 and peers on 2380; nil puts every member on
	// 127.0.0.1 with ports the kernel chose.
	Hosts []string
	// Command, if set, makes the command that runs member i (for
	// instance inside its network namespace); nil runs bin args...
	Command func(i int, bin string, args []string) *exec.Cmd
}

// Cluster is a cluster of etcd server processes.
type Cluster struct {
	bin      string
	o        Options
	Members  []*Member
	releases []func() // the ports reserved for the members
}

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string
	i         int
	args      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer
}

// Start starts an n-member cluster of bin, with fsync on (etcd's default).
// It does not wait for the members to agree on a leader: see WaitHealthy.
// On an error the members started are killed.
func Start(bin string, n int, o Options) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("etcd: no directory for the members' data")
	}
	if o.Hosts != nil && len(o.Hosts) != n {
		return nil, fmt.Errorf("etcd: %d hosts for %d members", len(o.Hosts), n)
	}
	c := &Cluster{bin: bin, o: o}
	var initial []string
	peers := make([]string, n)
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), i: i}
		if o.Hosts != nil {
			m.ClientURL = "http://" + net.JoinHostPort(o.Hosts[i], "2379")
			peers[i] = "http://" + net.JoinHostPort(o.Hosts[i], "2380")
		} else {
			cu, err := c.freeURL()
			if err != nil {
				c.Kill()
				return nil, err
			}
			pu, err := c.freeURL()
			if err != nil {
				c.Kill()
				return nil, err
			}
			m.ClientURL, peers[i] = cu, pu
		}
		initial = append(initial, m.Name+"="+peers[i])
		c.Members = append(c.Members, m)
	}
	for i, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", filepath.Join(o.Dir, m.Name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "rustynet-test",
			"--log-level", "warn",
		}
	}
	for _, m := range c.Members {
		if err := c.start(m, "new"); err != nil {
			c.Kill()
			return nil, err
		}
	}
	return c, nil
}

// freeURL is an http URL on 127.0.0.1 with a port reserved for the
// cluster (internal/ports) until Kill.
func (c *Cluster) freeURL() (string, error) {
	p, release, err := ports.Reserve()
	if err != nil {
		return "", err
	}
	c.releases = append(c.releases, release)
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

func (c *Cluster) start(m *Member, state string) error {
	args := append(append([]string{}, m.args...), "--initial-cluster-state", state)
	var cmd *exec.Cmd
	if c.o.Command != nil {
		cmd = c.o.Command(m.i, c.bin, args)
	} else {
		cmd = exec.Command(c.bin, args...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd.Stdout, cmd.Stderr = &lockedWriter{m}, &lockedWriter{m}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	return nil
}

// Restart starts a killed member again on its data.
func (c *Cluster) Restart(m *Member) error { return c.start(m, "existing") }

// Kill kills every member.
func (c *Cluster) Kill() {
	for _, m := range c.Members {
		m.Kill()
	}
	for _, release := range c.releases {
		release()
	}
	c.releases = nil
}

// Endpoints lists every member's client URL.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// WaitHealthy waits until every running member reports itself healthy on
// /health (it serves, and its cluster has a leader), within timeout, or
// returns the last refusal.
func (c *Cluster) WaitHealthy(ctx context.Context, hc *http.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = c.healthy(ctx, hc); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd: cluster not healthy after %v: %w", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) healthy(ctx context.Context, hc *http.Client) error {
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if err := health(ctx, hc, m.ClientURL); err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
	}
	return nil
}

// health asks one member's /health.
func health(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("/health: %s: %v", resp.Status, err)
	}
	if h.Health != "true" {
		return fmt.Errorf("/health: %s, health %q %s", resp.Status, h.Health, h.Reason)
	}
	return nil
}

type lockedWriter struct{ m *Member }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.logs.Write(p)
}

// Logs returns what the member has printed.
func (m *Member) Logs() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs.String()
}

// Kill sends the member SIGKILL and waits for it to exit. Its data stay.
func (m *Member) Kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Metric reads one sample from the member's own metrics (/metrics on its
// client URL), named as the exposition writes it.
func (m *Member) Metric(ctx context.Context, hc *http.Client, series string) (float64, error) {
	v, err := promtext.One(ctx, hc, m.ClientURL+"/metrics", series)
	if err != nil {
		return 0, fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	return v, nil
}

// Pause stops the member's process (SIGSTOP) without closing anything:
// its connections stay open and its peers' and clients' requests go
// unanswered, as they do when a member stalls on its disk or a network
// drops its packets. Resume lets it go on.
func (m *Member) Pause() error { return m.signal(syscall.SIGSTOP) }

// Resume continues a paused member (SIGCONT).
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT) }

func (m *Member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return fmt.Errorf("etcd member %s does not run", m.Name)
	}
	return m.cmd.Process.Signal(sig)
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}
