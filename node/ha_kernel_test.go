package node_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store/etcd/etcdtest"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

var (
	etcdOnce sync.Once
	etcdBin  string
)

// buildEtcd builds the etcd server into binDir, once per test process.
func buildEtcd(t testing.TB) {
	buildBinaries(t)
	etcdOnce.Do(func() {
		bin, err := etcdtest.Build(binDir)
		if err != nil {
			t.Fatal(err)
		}
		etcdBin = bin
	})
	if etcdBin == "" {
		t.Fatal("building etcd failed in an earlier test")
	}
}

// TestControllerReplicasKernel: a 3-member etcd cluster and 3 controller
// replicas, member i and replica i on host i of a namespace network, serve
// a mesh of rustynetd processes on kernel TUNs (WireGuard) whose
// --controller lists all three. Killing the replica every node uses (the
// first in their lists) leaves every pair of nodes reachable, every node
// moves to a live replica and runs, and a new node, whose list starts with
// the dead replica, still joins and reaches the others.
func TestControllerReplicasKernel(t *testing.T) {
	require.Root(t)
	require.Command(t, "wg")
	buildEtcd(t)
	const replicas = 3
	n := testbed.New(t, testbed.Options{Hosts: replicas + 4})
	ctx := context.Background()

	var hosts []string
	for _, h := range n.Hosts[:replicas] {
		hosts = append(hosts, h.Addr.String())
	}
	cluster := etcdtest.StartProcesses(t, etcdBin, replicas, etcdtest.ProcessOptions{
		Hosts: hosts,
		Command: func(i int, bin string, args []string) *exec.Cmd {
			return n.Hosts[i].Command(ctx, bin, args...)
		},
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return n.Hosts[replicas].DialContext(ctx, "tcp", addr)
		},
	})
	endpoints := strings.Join(cluster.Endpoints(), ",")

	var ctls []*haReplica
	var urls []string
	for i := range replicas {
		r := &haReplica{t: t, host: n.Hosts[i], dir: t.TempDir(), endpoints: endpoints}
		if i > 0 {
			controllertest.CopyCA(t, ctls[0].dir, r.dir)
		}
		r.start()
		ctls = append(ctls, r)
		urls = append(urls, r.URL())
	}
	key, err := controller.NewAdminClient(ctls[1].dir).CreateAuthKey(ctx, api.CreateAuthKeyRequest{Reusable: true, TTLSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	newNode := func(i int, name string) *kernelNode {
		h := n.Hosts[i]
		nd := &kernelNode{t: t, host: h, name: name, backend: "wireguard", iface: fmt.Sprintf("rn%d-%s", i, randomSuffix(h.Name)),
			dir: t.TempDir(), args: []string{
				"--controller", strings.Join(urls, ","), "--controller-ca", ctls[0].CAFile(), "--auth-key", key.Key,
				"--hostname", name, "--backend", "wireguard",
			}}
		nd.Start()
		t.Cleanup(nd.Stop)
		return nd
	}
	nodes := []meshNode{newNode(replicas, "alpha"), newNode(replicas+1, "bravo"), newNode(replicas+2, "charlie")}
	if err := everyPair(t, nodes, 4096); err != nil {
		t.Fatal(err)
	}
	// Every node uses the first replica: kill it.
	for _, nd := range nodes {
		st, err := nd.Status(ctx)
		if err != nil || st.Controller != urls[0] {
			t.Fatalf("%s uses controller %q (%v), want the first, %s", nd.Name(), st.Controller, err, urls[0])
		}
	}
	ctls[0].kill()
	if err := everyPair(t, nodes, 64<<10); err != nil {
		t.Errorf("replica %s killed: %v", urls[0], err)
	}
	eventually(t, 30*time.Second, "every node moves to a live replica", func() error {
		for _, nd := range nodes {
			st, err := nd.Status(ctx)
			if err != nil {
				return err
			}
			if st.State != "running" || st.Controller == urls[0] || st.Controller == "" {
				return fmt.Errorf("%s is %s on %q (%s)", nd.Name(), st.State, st.Controller, st.LastError)
			}
		}
		return nil
	})
	d := newNode(replicas+3, "delta")
	if err := everyPair(t, append(nodes, d), 4096); err != nil {
		t.Errorf("with %s, which joined after %s died: %v", d.Name(), urls[0], err)
	}
	st, _ := d.Status(ctx)
	t.Logf("the new node joined through %s", st.Controller)
}

// haReplica is a `serve --store etcd` process in its host's namespace.
type haReplica struct {
	t         testing.TB
	host      *testbed.Host
	dir       string
	endpoints string
	p         *controllertest.Process
}

func (r *haReplica) URL() string {
	return "https://" + netip.AddrPortFrom(r.host.Addr, 8443).String()
}

func (r *haReplica) CAFile() string { return filepath.Join(r.dir, "tls", "ca.pem") }

func (r *haReplica) start() {
	args := append(controllertest.ServeArgs(r.dir, netip.AddrPortFrom(r.host.Addr, 8443).String(), "127.0.0.1:0"),
		"--store", "etcd", "--etcd-endpoints", r.endpoints, "--advertise-url", r.URL())
	r.p = controllertest.StartCommand(r.t, r.host.Command(context.Background(), controllerBin, args...), r.dir)
}

// kill sends the replica SIGKILL, as a crash or the loss of its machine.
func (r *haReplica) kill() {
	r.p.Cmd.Process.Kill()
	r.p.Wait(15 * time.Second)
}
