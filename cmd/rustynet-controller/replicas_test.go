package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	addr := freeAddr(t)
	args := append(controllertest.ServeArgs(dir, addr, "127.0.0.1:0"),
		"--store", "etcd", "--etcd-endpoints", endpoints, "--advertise-url", "https://"+addr)
	return controllertest.StartCommand(t, exec.Command(binary, args...), dir)
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

	// install -d -m 0700 DIR/tls; copy ca.pem and ca.key; chmod 0600 ca.key
	if err := os.MkdirAll(filepath.Join(d2, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(d1, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d2, "tls", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r2 := startReplica(t, d2, endpoints)

	// Nodes trust one CA, the first replica's, for both.
	hc := controllertest.NewClient(t, filepath.Join(d1, "tls", "ca.pem"))
	var ids []api.NodeID
	for i, dir := range []string{d1, d2} {
		key, stderr, code := cli(t, "", "authkey", "create", "--data-dir", dir)
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
		out, stderr, code := cli(t, "", "node", "list", "--data-dir", dir)
		if code != 0 || !strings.Contains(out, string(ids[0])) || !strings.Contains(out, string(ids[1])) {
			t.Errorf("node list on replica %d = %q %q, want both nodes", i+1, out, stderr)
		}
	}

	// backup --format logical, restore into a new prefix and into bolt.
	export := filepath.Join(t.TempDir(), "export.json")
	if _, stderr, code := cli(t, "", "backup", "--data-dir", d1, "--format", "logical", "--out", export); code != 0 {
		t.Fatalf("backup --format logical: %s", stderr)
	}
	if fi, err := os.Stat(export); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, stderr, code := cli(t, "", "restore", "--format", "logical", "--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", "/restored/", export); code != 0 {
		t.Fatalf("restore into etcd: %s", stderr)
	}
	if _, stderr, code := cli(t, "", "restore", "--format", "logical", "--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", "/restored/", export); code == 0 || !strings.Contains(stderr, "not empty") {
		t.Errorf("restore into a prefix that holds a store: exit %d %q, want a refusal that says it is not empty", code, stderr)
	}
	d3 := t.TempDir()
	if _, stderr, code := cli(t, "", "restore", "--format", "logical", "--data-dir", d3, export); code != 0 {
		t.Fatalf("restore into bolt: %s", stderr)
	}
	start(t, d3)
	out, _, _ := cli(t, "", "node", "list", "--data-dir", d3)
	if !strings.Contains(out, string(ids[0])) || !strings.Contains(out, string(ids[1])) {
		t.Errorf("node list on the restored bolt controller = %q, want both nodes", out)
	}
	// The restored etcd prefix serves too.
	d4 := t.TempDir()
	addr := freeAddr(t)
	args := append(controllertest.ServeArgs(d4, addr, "127.0.0.1:0"), "--store", "etcd", "--etcd-endpoints", endpoints,
		"--etcd-prefix", "/restored/", "--advertise-url", "https://"+addr)
	controllertest.StartCommand(t, exec.Command(binary, args...), d4)
	out, _, _ = cli(t, "", "node", "list", "--data-dir", d4)
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
		_, stderr, code := cli(t, "", append([]string{"serve", "--data-dir", dir}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("serve %q: exit %d %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}
