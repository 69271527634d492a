package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/controller/store/etcd/etcdtest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startReplica runs `serve --store etcd` as the README's "Several
// controllers" section does.
func startReplica(t *testing.T, dir, endpoints string) *controllertest.Process {
	t.Helper()
	return controllertest.StartReplicaProcess(t, binary, dir, endpoints)
}

// TestReplicasAsTheREADMESays follows the README: a first replica creates
// the CA; the second gets its tls/ca.pem and tls/ca.key copied into its
// data dir before its first start; both then serve one mesh with one CA,
// the admin CLI works against each, and a logical backup restores into a
// new etcd prefix and into a bbolt data dir.
func TestReplicasAsTheREADMESays(t *testing.T) {
	cluster := etcdtest.NewCluster(t, 1, etcdtest.Options{})
	endpoints := strings.Join(cluster.Endpoints(), ",")
	d1, d2 := t.TempDir(), t.TempDir()
	r1 := startReplica(t, d1, endpoints)

	controllertest.CopyCA(t, d1, d2)
	r2 := startReplica(t, d2, endpoints)

	// Nodes trust one CA, the first replica's, for both.
	hc := controllertest.NewClient(t, filepath.Join(d1, "tls", "ca.pem"))
	var ids []api.NodeID
	for i, dir := range []string{d1, d2} {
		key, stderr, code := ctl(t, "", "authkey", "create", "--data-dir", dir)
		if code != 0 {
			t.Fatalf("authkey create against replica %d: %s", i+1, stderr)
		}
		// The key made through one replica registers through the other.
		url := []string{r2.URL, r1.URL}[i]
		reg, status, err := register(hc, url, strings.TrimSpace(key))
		if err != nil || status != 200 {
			t.Fatalf("register through %s with a key from replica %d: %d %v", url, i+1, status, err)
		}
		ids = append(ids, reg.Node.ID)
	}
	for i, dir := range []string{d1, d2} {
		out, stderr, code := ctl(t, "", "node", "list", "--data-dir", dir)
		if code != 0 || !strings.Contains(out, string(ids[0])) || !strings.Contains(out, string(ids[1])) {
			t.Errorf("node list on replica %d = %q %q, want both nodes", i+1, out, stderr)
		}
	}

	// backup --format logical, restore into a new prefix and into bolt.
	export := filepath.Join(t.TempDir(), "export.json")
	if _, stderr, code := ctl(t, "", "backup", "--data-dir", d1, "--format", "logical", "--out", export); code != 0 {
		t.Fatalf("backup --format logical: %s", stderr)
	}
	if fi, err := os.Stat(export); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, stderr, code := ctl(t, "", "restore", "--format", "logical", "--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", "/restored/", export); code != 0 {
		t.Fatalf("restore into etcd: %s", stderr)
	}
	if _, stderr, code := ctl(t, "", "restore", "--format", "logical", "--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", "/restored/", export); code == 0 || !strings.Contains(stderr, "not empty") {
		t.Errorf("restore into a prefix that holds a store: exit %d %q, want a refusal that says it is not empty", code, stderr)
	}
	d3 := t.TempDir()
	if _, stderr, code := ctl(t, "", "restore", "--format", "logical", "--data-dir", d3, export); code != 0 {
		t.Fatalf("restore into bolt: %s", stderr)
	}
	start(t, d3)
	out, _, _ := ctl(t, "", "node", "list", "--data-dir", d3)
	if !strings.Contains(out, string(ids[0])) || !strings.Contains(out, string(ids[1])) {
		t.Errorf("node list on the restored bolt controller = %q, want both nodes", out)
	}
	// The restored etcd prefix serves too.
	d4 := t.TempDir()
	addr := freeAddr(t)
	args := append(controllertest.ServeArgs(d4, addr, "127.0.0.1:0"), "--store", "etcd", "--etcd-endpoints", endpoints,
		"--etcd-prefix", "/restored/", "--advertise-url", "https://"+addr)
	controllertest.StartCommand(t, exec.Command(binary, args...), d4)
	out, _, _ = ctl(t, "", "node", "list", "--data-dir", d4)
	if !strings.Contains(out, string(ids[0])) || !strings.Contains(out, string(ids[1])) {
		t.Errorf("node list on a replica of the restored prefix = %q, want both nodes", out)
	}
}

func TestServeStoreFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "etcd"}, "no etcd endpoint"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"}, "--advertise-url"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379", "--advertise-url", "https://a:1"}, "want http(s)://HOST:PORT"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://a:1,http://a:1", "--advertise-url", "https://a:1"}, "listed twice"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "is for --store etcd"},
		{[]string{"--store", "sqlite"}, "want bolt or etcd"},
	} {
		_, stderr, code := ctl(t, "", append([]string{"serve", "--data-dir", dir}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("serve %q: exit %d %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestKillReplicaAndEtcdLeaderDuringRegistrations runs two replicas over
// a 3-member etcd cluster of real etcd processes (fsync on), with a
// stream of registrations spread over both. It SIGKILLs one replica, then
// the etcd leader, each while registrations are in flight, restarts both,
// and checks that every acknowledged registration is present on both
// replicas with no address given twice.
func TestKillReplicaAndEtcdLeaderDuringRegistrations(t *testing.T) {
	cluster := etcdtest.StartProcesses(t, etcdBinary, 3, etcdtest.ProcessOptions{})
	endpoints := strings.Join(cluster.Endpoints(), ",")
	d1, d2 := t.TempDir(), t.TempDir()
	r1 := startReplica(t, d1, endpoints)
	controllertest.CopyCA(t, d1, d2)
	r2 := startReplica(t, d2, endpoints)
	key, _, code := ctl(t, "", "authkey", "create", "--reusable", "--data-dir", d1)
	if code != 0 {
		t.Fatal("authkey create failed")
	}
	key = strings.TrimSpace(key)
	hc := controllertest.NewClient(t, filepath.Join(d1, "tls", "ca.pem"))

	var (
		mu       sync.Mutex
		acked    []api.NodeID
		failures = map[string]int{}
		wg       sync.WaitGroup
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := []string{r1.URL, r2.URL}
	for w := range 8 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				reg, status, err := register(hc, urls[i%2], key)
				mu.Lock()
				switch {
				case err != nil:
					failures["no answer"]++
				case status == http.StatusOK:
					acked = append(acked, reg.Node.ID)
				default:
					failures[fmt.Sprint(status)]++
				}
				mu.Unlock()
				if err != nil || status != http.StatusOK {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	// waitFor waits until n more registrations are acknowledged.
	waitFor := func(what string, n int) int {
		t.Helper()
		from := count()
		deadline := time.Now().Add(60 * time.Second)
		for count() < from+n {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("%s: only %d of %d registrations acknowledged in 60 s (failures %v)", what, count()-from, n, failures)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return count()
	}
	beforeReplica := waitFor("before any kill", 150)
	r1.Cmd.Process.Signal(syscall.SIGKILL)
	r1.Wait(15 * time.Second)
	beforeEtcd := waitFor("after the replica's SIGKILL", 150)
	leader := cluster.Leader(t)
	leader.Kill()
	afterEtcd := waitFor("after the etcd leader's SIGKILL", 150)
	cancel()
	wg.Wait()

	// Both back: the member on its data, the replica on its data dir.
	cluster.Restart(t, leader)
	cluster.WaitHealthy(t, 60*time.Second)
	startReplica(t, d1, endpoints)
	mu.Lock()
	defer mu.Unlock()
	for _, dir := range []string{d1, d2} {
		present, nodes := storedNodes(t, dir)
		lost := 0
		for _, id := range acked {
			if !present[id] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d acknowledged registrations missing on %s", lost, len(acked), dir)
		}
		if dir == d2 {
			t.Logf("acknowledged: %d before the replica's SIGKILL, %d before the etcd leader's (%s), %d after; %d nodes stored; failed attempts %v",
				beforeReplica, beforeEtcd, leader.Name, afterEtcd, nodes, failures)
		}
	}
}
