package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/rustynet/rustynet/internal/clitest"
)

var binary, etcdBinary string

// testVersion is the version the test binary's -ldflags set, as the
// Makefile's do.
const testVersion = clitest.Version

func TestMain(m *testing.M) {
	clitest.Main(m, "rustynet-controller", &binary, func(dir string) (err error) {
		etcdBinary, err = etcdtest.Build(dir)
		return err
	})
}

func start(t *testing.T, dir string) *controllertest.Process {
	t.Helper()
	return controllertest.StartProcess(t, binary, dir)
}

// ctl runs a rustynet-controller command and returns its stdout, stderr and
// exit code.
func ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func register(hc *http.Client, url, key string) (*api.RegisterResponse, int, error) {
	body, _ := json.Marshal(api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](),
		MachineKey: controllertest.Key[api.MachinePublic](), Hostname: "n"})
	req, _ := http.NewRequest("POST", url+api.PathRegister, bytes.NewReader(body))
	req.Header.Set(api.HeaderCapabilityVersion, "1")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var out api.RegisterResponse
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, resp.StatusCode, err
		}
	}
	return &out, resp.StatusCode, nil
}

// TestOperatorFlow walks through the README: start a controller, create a
// key, register a node, list it, set a policy, and stop with SIGTERM.
func TestOperatorFlow(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir)
	hc := controllertest.NewClient(t, filepath.Join(dir, "tls", "ca.pem"))

	key, stderr, code := ctl(t, "", "authkey", "create", "--data-dir", dir, "--tags", "tag:web", "--ttl", "10m")
	key = strings.TrimSpace(key)
	if code != 0 || !strings.HasPrefix(key, api.AuthKeyPrefix) || strings.Contains(key, "\n") {
		t.Fatalf("authkey create printed %q (stderr %q, exit %d), want only the key", key, stderr, code)
	}
	reg, status, err := register(hc, d.URL, key)
	if err != nil || status != 200 {
		t.Fatalf("register: %d %v", status, err)
	}
	out, _, code := ctl(t, "", "node", "list", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, string(reg.Node.ID)) || !strings.Contains(out, "tag:web") {
		t.Errorf("node list = %q (exit %d), want the node with tag:web", out, code)
	}
	out, _, _ = ctl(t, "", "node", "list", "--json", "--data-dir", dir)
	var nodes []api.AdminNode
	if err := json.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) != 1 {
		t.Errorf("node list --json = %q: %v", out, err)
	}
	out, _, _ = ctl(t, "", "authkey", "list", "--data-dir", dir)
	if !strings.Contains(out, "used") {
		t.Errorf("authkey list = %q, want the key shown as used", out)
	}
	// Names: the node chose "n" (a label, named by its hostname); the
	// admin binds one; a key may bind one for the node it registers.
	if !strings.Contains(out, "NAME") {
		t.Errorf("authkey list = %q, want a NAME column", out)
	}
	out, stderr, code = ctl(t, "", "node", "rename", string(reg.Node.ID), "web1", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "web1") {
		t.Errorf("node rename = %q %q (exit %d), want the new name", out, stderr, code)
	}
	out, _, _ = ctl(t, "", "node", "list", "--data-dir", dir)
	if !strings.Contains(out, "web1") || !strings.Contains(out, api.NameFromAdmin) {
		t.Errorf("node list after rename = %q, want web1 bound by the admin", out)
	}
	if _, stderr, code := ctl(t, "", "node", "rename", "web1", "n0123456789abcdef", "--data-dir", dir); code != 2 || !strings.Contains(stderr, "node ID") {
		t.Errorf("node rename to an ID-shaped name: exit %d %q, want 2 saying why", code, stderr)
	}
	if _, stderr, code := ctl(t, "", "authkey", "create", "--name", "db1", "--reusable", "--data-dir", dir); code != 1 || !strings.Contains(stderr, "cannot be reusable") {
		t.Errorf("authkey create --name --reusable: exit %d %q, want 1 saying why", code, stderr)
	}
	if out, stderr, code := ctl(t, "", "authkey", "create", "--name", "db1", "--data-dir", dir); code != 0 || !strings.HasPrefix(out, api.AuthKeyPrefix) {
		t.Errorf("authkey create --name db1: %q %q (exit %d)", out, stderr, code)
	}

	// A bad policy is refused with its line, with exit 1; a good one is set.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("acls:\n  - action: accept\n    src: [\"*\"]\n    dst: [\"everyone\"]\n"), 0o600)
	_, stderr, code = ctl(t, "", "policy", "set", bad, "--data-dir", dir)
	if code != 1 || !strings.Contains(stderr, "line 4") {
		t.Errorf("policy set (invalid) = exit %d, stderr %q; want exit 1 naming line 4", code, stderr)
	}
	good := "acls:\n  - action: accept\n    src: [\"tag:web\"]\n    dst: [\"tag:web\"]\n"
	if _, stderr, code = ctl(t, good, "policy", "set", "-", "--data-dir", dir); code != 0 {
		t.Errorf("policy set - = exit %d, %q", code, stderr)
	}
	if out, _, _ := ctl(t, "", "policy", "get", "--data-dir", dir); out != good {
		t.Errorf("policy get = %q, want %q", out, good)
	}
	// A policy over the size limit is refused, naming the limit; one at it
	// is set.
	atLimit := "acls: []\n#" + strings.Repeat("<", api.MaxPolicyBytes-len("acls: []\n#"))
	want := fmt.Sprintf("at most %d bytes", api.MaxPolicyBytes)
	if _, stderr, code := ctl(t, atLimit+"<", "policy", "set", "-", "--data-dir", dir); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("policy set (%d bytes) = exit %d, stderr %q; want exit 1 containing %q", len(atLimit)+1, code, stderr, want)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, []byte(atLimit+"<"), 0o600)
	if _, stderr, code := ctl(t, "", "policy", "set", big, "--data-dir", dir); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("policy set FILE (%d bytes) = exit %d, stderr %q; want exit 1 containing %q", len(atLimit)+1, code, stderr, want)
	}
	if _, stderr, code := ctl(t, atLimit, "policy", "set", "-", "--data-dir", dir); code != 0 {
		t.Errorf("policy set (%d bytes) = exit %d, %q; want it set", len(atLimit), code, stderr)
	}

	// Usage mistakes exit 2.
	if _, _, code := ctl(t, "", "node", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if _, _, code := ctl(t, "", "authkey", "revoke", "--data-dir", dir); code != 2 {
		t.Errorf("authkey revoke without an ID: exit %d, want 2", code)
	}
	// Talking to a controller that is not there says so.
	if _, stderr, code := ctl(t, "", "node", "list", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(stderr, "no controller is running") {
		t.Errorf("node list without a controller: exit %d, %q", code, stderr)
	}

	// Backup, then SIGTERM: a clean exit.
	backupFile := filepath.Join(t.TempDir(), "backup.db")
	if _, stderr, code := ctl(t, "", "backup", "--data-dir", dir, "--out", backupFile); code != 0 {
		t.Fatalf("backup: exit %d %q", code, stderr)
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	if err := d.Wait(15 * time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	if !strings.Contains(d.Logs(), "controller stopped") {
		t.Errorf("log lacks the clean stop:\n%s", d.Logs())
	}

	// Restore the backup into a new data dir and serve from it.
	dir2 := t.TempDir()
	if _, stderr, code := ctl(t, "", "restore", "--data-dir", dir2, backupFile); code != 0 {
		t.Fatalf("restore: exit %d %q", code, stderr)
	}
	start(t, dir2)
	out, _, _ = ctl(t, "", "node", "list", "--data-dir", dir2)
	if !strings.Contains(out, string(reg.Node.ID)) {
		t.Errorf("node list after restore = %q, want %s", out, reg.Node.ID)
	}
}

// TestKillDuringRegistrations SIGKILLs the controller in the middle of a
// stream of registrations, restarts it, and checks that every registration
// that was acknowledged is present, with no address given twice.
func TestKillDuringRegistrations(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir)
	key, _, code := ctl(t, "", "authkey", "create", "--reusable", "--data-dir", dir)
	if code != 0 {
		t.Fatal("authkey create failed")
	}
	key = strings.TrimSpace(key)
	hc := controllertest.NewClient(t, filepath.Join(dir, "tls", "ca.pem"))

	var (
		mu    sync.Mutex
		acked []api.NodeID
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				reg, status, err := register(hc, d.URL, key)
				if err != nil {
					return // the controller is gone
				}
				if status == 200 {
					mu.Lock()
					acked = append(acked, reg.Node.ID)
					mu.Unlock()
				}
			}
		})
	}
	// Kill once a good number of registrations are acknowledged, while more
	// are in flight.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Cmd.Process.Signal(syscall.SIGKILL)
	d.Wait(15 * time.Second)
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 300 {
		t.Fatalf("only %d registrations acknowledged in 30s", len(acked))
	}

	start(t, dir)
	present, nodes := storedNodes(t, dir)
	lost := 0
	for _, id := range acked {
		if !present[id] {
			lost++
			t.Errorf("acknowledged registration %s is missing after the restart", id)
		}
	}
	t.Logf("%d registrations acknowledged before SIGKILL, %d nodes after restart, %d lost", len(acked), nodes, lost)
}

// storedNodes lists the nodes through the admin CLI on dir, fails the test
// for any address held by two nodes, and returns the set of IDs and how
// many nodes there are.
func storedNodes(t *testing.T, dir string) (map[api.NodeID]bool, int) {
	t.Helper()
	out, stderr, code := ctl(t, "", "node", "list", "--json", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("node list on %s: exit %d %q", dir, code, stderr)
	}
	var nodes []api.AdminNode
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	present := map[api.NodeID]bool{}
	addrs := map[string]api.NodeID{}
	for _, n := range nodes {
		present[n.ID] = true
		for _, a := range n.Addresses {
			if other, dup := addrs[a.String()]; dup {
				t.Errorf("address %s held by %s and %s", a, other, n.ID)
			}
			addrs[a.String()] = n.ID
		}
	}
	return present, len(nodes)
}
