package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Build builds the etcd server (etcdtest/etcd, etcdmain at the
// version go.mod names) statically into dir and returns its path. Tests
// that run etcd as processes call it from TestMain.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "etcd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/rustynet/rustynet/controller/store/etcd/etcdtest/etcd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build etcd: %v\n%s", err, stderr.String())
	}
	return bin, nil
}

// ProcessOptions place the members of a ProcessCluster.
type ProcessOptions struct {
	// Hosts are the members' addresses, one per member, each serving
	// clients on port 2379 and peers on 2380; nil puts every member on
	// 127.0.0.1 with ports the kernel chose.
	Hosts []string
	// Command, if set, makes the command that runs member i (for
	// instance inside its network namespace); nil runs bin args...
	Command func(i int, bin string, args []string) *exec.Cmd
	// Dial, if set, is how the test reaches a member (for instance from
	// inside a namespace on the members' network); nil dials from the
	// test's own.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// ProcessCluster is a cluster of etcd server processes: each can be
// killed with SIGKILL and started again on its data.
type ProcessCluster struct {
	t       testing.TB
	bin     string
	o       ProcessOptions
	Members []*Process
}

// Process is one etcd server process.
type Process struct {
	Name      string
	ClientURL string
	i         int
	args      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer
}

// StartProcesses starts an n-member cluster of bin, with fsync on (etcd's
// default), and waits until every member serves and agrees on a leader.
// The members are killed when the test ends; the logs of all of them are
// printed if the test failed.
func StartProcesses(t testing.TB, bin string, n int, o ProcessOptions) *ProcessCluster {
	t.Helper()
	if o.Hosts != nil && len(o.Hosts) != n {
		t.Fatalf("etcd: %d hosts for %d members", len(o.Hosts), n)
	}
	c := &ProcessCluster{t: t, bin: bin, o: o}
	var initial []string
	peers := make([]string, n)
	for i := range n {
		m := &Process{Name: fmt.Sprintf("m%d", i), i: i}
		if o.Hosts != nil {
			m.ClientURL = "http://" + net.JoinHostPort(o.Hosts[i], "2379")
			peers[i] = "http://" + net.JoinHostPort(o.Hosts[i], "2380")
		} else {
			cu, pu := freeURL(t), freeURL(t)
			m.ClientURL, peers[i] = cu.String(), pu.String()
		}
		initial = append(initial, m.Name+"="+peers[i])
		c.Members = append(c.Members, m)
	}
	for i, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", filepath.Join(t.TempDir(), m.Name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "rustynet-test",
			"--log-level", "warn",
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
			if t.Failed() {
				t.Logf("etcd member %s log:\n%s", m.Name, m.Logs())
			}
		}
	})
	for _, m := range c.Members {
		if err := c.start(m, "new"); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHealthy(t, 60*time.Second)
	return c
}

func (c *ProcessCluster) start(m *Process, state string) error {
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

type lockedWriter struct{ m *Process }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.logs.Write(p)
}

// Logs returns what the member has printed.
func (m *Process) Logs() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs.String()
}

// Kill sends the member SIGKILL and waits for it to exit. Its data stay.
func (m *Process) Kill() {
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

// Running reports whether the member's process runs.
func (m *Process) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Restart starts a killed member again on its data.
func (c *ProcessCluster) Restart(t testing.TB, m *Process) {
	t.Helper()
	if err := c.start(m, "existing"); err != nil {
		t.Fatal(err)
	}
}

// Endpoints lists every member's client URL.
func (c *ProcessCluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Leader returns the member that leads now, as the running members
// report it, waiting up to 30 s for them to agree on one.
func (c *ProcessCluster) Leader(t testing.TB) *Process {
	t.Helper()
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, err := c.leader()
		if err == nil {
			return m
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd: no leader the running members agree on after 30 s: %v", last)
	return nil
}

// WaitHealthy waits until every running member serves and they agree on
// a leader.
func (c *ProcessCluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	var last error
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, last = c.leader(); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd: cluster not healthy after %v: %v", timeout, last)
}

// leader asks every running member for its status: it fails unless each
// answers and all name the same leader, which is one of them.
func (c *ProcessCluster) leader() (*Process, error) {
	ids := map[uint64]*Process{}
	var leader uint64
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		st, err := status(m.ClientURL, c.o.Dial)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return nil, fmt.Errorf("member %s names leader %x, another %x", m.Name, st.Leader, leader)
		}
		leader = st.Leader
		ids[st.Header.MemberId] = m
	}
	if m, ok := ids[leader]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("leader %x is not a running member", leader)
}

func status(endpoint string, dial func(context.Context, string) (net.Conn, error)) (*clientv3.StatusResponse, error) {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: nopLogger}
	if dial != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(dial)}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cli.Status(ctx, endpoint)
}
