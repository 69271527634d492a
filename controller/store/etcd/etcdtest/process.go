package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/rustynet/rustynet/internal/etcdproc"
)

// Build builds the etcd server (etcdtest/etcd, etcdmain at the
// version go.mod names) statically into dir and returns its path. Tests
// that run etcd as processes call it from TestMain.
func Build(dir string) (string, error) {
	return etcdproc.Build(context.Background(), "", dir)
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

// ProcessCluster is a cluster of etcd server processes (etcdproc): each
// can be killed with SIGKILL and started again on its data.
type ProcessCluster struct {
	*etcdproc.Cluster
	o ProcessOptions
}

// Process is one etcd server process.
type Process = etcdproc.Member

// StartProcesses starts an n-member cluster of bin, with fsync on (etcd's
// default), and waits until every member serves and agrees on a leader.
// The members are killed when the test ends; the logs of all of them are
// printed if the test failed.
func StartProcesses(t testing.TB, bin string, n int, o ProcessOptions) *ProcessCluster {
	t.Helper()
	ec, err := etcdproc.Start(bin, n, etcdproc.Options{Dir: t.TempDir(), Hosts: o.Hosts, Command: o.Command})
	if err != nil {
		t.Fatal(err)
	}
	c := &ProcessCluster{Cluster: ec, o: o}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
			if t.Failed() {
				t.Logf("etcd member %s log:\n%s", m.Name, m.Logs())
			}
		}
	})
	c.WaitHealthy(t, 60*time.Second)
	return c
}

// Restart starts a killed member again on its data.
func (c *ProcessCluster) Restart(t testing.TB, m *Process) {
	t.Helper()
	if err := c.Cluster.Restart(m); err != nil {
		t.Fatal(err)
	}
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
