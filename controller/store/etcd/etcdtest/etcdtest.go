// Package etcdtest runs real etcd members inside a test process
// (go.etcd.io/etcd/server/v3/embed): one for a store's unit tests, or a
// cluster of several whose members can be stopped and whose leader can be
// moved.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.uber.org/zap"

	"github.com/rustynet/rustynet/internal/ports"
)

// Options change a member's configuration.
type Options struct {
	// QuotaBackendBytes is etcd's space quota (0: etcd's default).
	QuotaBackendBytes int64
	// MaxTxnOps is etcd's --max-txn-ops (0: etcd's default, 128).
	MaxTxnOps uint
	// Fsync makes the members fsync as etcd does by default; without it
	// they skip fsync (the tests' data are throwaway), which is faster.
	Fsync bool
	// Snapshot, if set, is an etcd snapshot file (Maintenance.Snapshot)
	// every member of the new cluster is restored from before it starts,
	// as `etcdutl snapshot restore` does.
	Snapshot string
}

// Cluster is a running set of embedded members.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one embedded etcd.
type Member struct {
	Name      string
	ClientURL string
	cfg       *embed.Config
	etcd      *embed.Etcd
}

// Start runs a one-member cluster for the test and returns a client of it.
// Both stop when the test ends.
func Start(t testing.TB, o Options) *clientv3.Client {
	c := NewCluster(t, 1, o)
	return c.Client(t)
}

// NewCluster starts n members that form one cluster and waits for it to
// elect a leader. They stop when the test ends.
func NewCluster(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i)}
		cfg := embed.NewConfig()
		cfg.Name = m.Name
		cfg.Dir = t.TempDir()
		cu, pu := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = !o.Fsync
		cfg.QuotaBackendBytes = o.QuotaBackendBytes
		if o.MaxTxnOps > 0 {
			cfg.MaxTxnOps = o.MaxTxnOps
		}
		cfg.InitialClusterToken = "rustynet-test"
		m.ClientURL, m.cfg = cu.String(), cfg
		initial = append(initial, fmt.Sprintf("%s=%s", m.Name, pu.String()))
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		if o.Snapshot == "" {
			continue
		}
		// Restore writes a new data dir that must not exist yet.
		m.cfg.Dir = filepath.Join(m.cfg.Dir, "restored")
		err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
			SnapshotPath:        o.Snapshot,
			Name:                m.Name,
			OutputDataDir:       m.cfg.Dir,
			PeerURLs:            []string{m.cfg.AdvertisePeerUrls[0].String()},
			InitialCluster:      m.cfg.InitialCluster,
			InitialClusterToken: m.cfg.InitialClusterToken,
		})
		if err != nil {
			t.Fatalf("etcd: restore member %s from %s: %v", m.Name, o.Snapshot, err)
		}
	}
	// Members of a new cluster wait for each other: start them together.
	errc := make(chan error, n)
	for _, m := range c.Members {
		go func() { errc <- m.start() }()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatalf("etcd: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Stop()
		}
		if n > 1 {
			waitPeerConns(t)
		}
	})
	return c
}

// waitPeerConns waits, up to rafthttp's read timeout and a second, for the
// peer connections the stopped members leave open to close. Close shuts
// a member's peer server down for at most a second and does not close a
// connection whose request has just finished: its pending read, which
// the server aborts with a read deadline in the past, runs through etcd's
// timeoutConn, which sets its own deadline before each read, so it ends
// only at rafthttp's read timeout (5 s). Until then that connection and
// the other member's client end of it are goroutines a leak check
// (goleak, in the controller's tests) would report.
func waitPeerConns(t testing.TB) {
	const inRead = "go.etcd.io/etcd/client/pkg/v3/transport.timeoutConn.Read"
	deadline := time.Now().Add(rafthttp.ConnReadTimeout + time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte(inRead)) {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("etcd: peer connections still open %v after the members stopped", rafthttp.ConnReadTimeout+time.Second)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("member %s not ready after 60 s", m.Name)
	}
	m.etcd = e
	return nil
}

// Stop stops the member (its data stay, for Restart).
func (m *Member) Stop() {
	if m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// Restart starts a stopped member again on its data and addresses.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
}

// Running reports whether the member is up.
func (m *Member) Running() bool { return m.etcd != nil }

// IsLeader reports whether the member leads the cluster now.
func (m *Member) IsLeader() bool {
	return m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}

// Endpoints lists the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	return NewClient(t, c.Endpoints()...)
}

// NewClient returns a client of the given endpoints, closed when the test
// ends.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: nopLogger})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the member that leads now, waiting up to 30 s for one.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.Members {
			if m.IsLeader() {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("etcd: no leader after 30 s")
	return nil
}

// MoveLeader hands the leadership to another running member and returns
// it.
func (c *Cluster) MoveLeader(t testing.TB) *Member {
	t.Helper()
	from := c.Leader(t)
	for _, m := range c.Members {
		if m == from || !m.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := from.etcd.Server.MoveLeader(ctx, uint64(from.etcd.Server.MemberID()), uint64(m.etcd.Server.MemberID()))
		cancel()
		if err != nil {
			t.Fatalf("etcd: move leader %s -> %s: %v", from.Name, m.Name, err)
		}
		return m
	}
	t.Fatal("etcd: no other running member to lead")
	return nil
}

var nopLogger = zap.NewNop()

// freeURL returns an http URL on a loopback port reserved for the test
// (internal/ports: no other process or test takes it meanwhile).
func freeURL(t testing.TB) url.URL {
	t.Helper()
	return url.URL{Scheme: "http", Host: ports.Addr(t)}
}
