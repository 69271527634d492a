package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/internal/daemon"
)

// TestAgainstRealDaemons: rustynet against real rustynetd processes on the
// userspace netstack (no root needed) and a real controller whose policy
// lets alpha and bravo reach each other and charlie only reach alpha.
// alpha pings bravo and gets ping(8)'s summary; pinging charlie is refused
// for the ACL, with no echo sent; with the controller gone, `rustynet
// status` says the node is offline and exits 1.
func TestAgainstRealDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller and three rustynetd processes")
	}
	rustynetd := controllertest.Build(t, t.TempDir(), "../rustynetd")
	ctl := controllertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := ctl.Admin.SetPolicy(ctx, `acls:
  - action: accept
    src: ["tag:alpha", "tag:bravo"]
    dst: ["tag:alpha", "tag:bravo"]
  - action: accept
    src: ["tag:charlie"]
    dst: ["tag:alpha"]
`); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		dir := t.TempDir()
		ready := filepath.Join(dir, "ready.json")
		cmd := exec.Command(rustynetd, "--state-dir", dir, "--controller", ctl.URL, "--controller-ca", ctl.CAFile,
			"--auth-key", ctl.AuthKey(false, "tag:"+name), "--netstack", "--hostname", name,
			"--metrics-listen", "", "--probe-interval", "0", "--ready-file", ready)
		p, _, err := daemon.StartReady(ctx, cmd, ready, 30*time.Second)
		if err != nil {
			t.Fatalf("start rustynetd %s: %v", name, err)
		}
		t.Cleanup(func() {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Logf("stop rustynetd %s: %v\n%s", name, err, p.Logs())
			}
		})
		dirs[name] = dir
	}
	a := dirs["alpha"]
	// alpha's netmap has both peers once the controller has sent it.
	waitFor(t, "alpha's status to list bravo and charlie", func() bool {
		code, out, _ := rustynet(t, "status", "--state-dir", a)
		return code == 0 && strings.Contains(out, "bravo") && strings.Contains(out, "charlie")
	})

	code, stdout, stderr := rustynet(t, "ping", "bravo", "-c", "3", "-i", "100ms", "--state-dir", a)
	if code != 0 || strings.Count(stdout, "reply from bravo") < 1 || !strings.Contains(stdout, "--- bravo ping statistics ---") ||
		!strings.Contains(stdout, "3 packets transmitted, ") || !strings.Contains(stdout, "rtt min/avg/max = ") {
		t.Errorf("rustynet ping bravo = exit %d, stdout %q, stderr %q; want exit 0, replies and the summary", code, stdout, stderr)
	}
	code, stdout, stderr = rustynet(t, "ping", "charlie", "--state-dir", a)
	if code != 1 || !strings.Contains(stderr, "cannot reach charlie: the ACL policy does not let this node open connections to it") || stdout != "" {
		t.Errorf("rustynet ping charlie = exit %d, stdout %q, stderr %q; want exit 1 and the ACL named, no echo", code, stdout, stderr)
	}
	code, stdout, stderr = rustynet(t, "ping", "delta", "--state-dir", a)
	if code != 1 || !strings.Contains(stderr, `no peer "delta" in the netmap`) {
		t.Errorf("rustynet ping delta = exit %d, stdout %q, stderr %q; want exit 1, not in the netmap", code, stdout, stderr)
	}

	ctl.Kill()
	waitFor(t, "alpha's status to say it is offline", func() bool {
		code, stdout, stderr = rustynet(t, "status", "--state-dir", a)
		return code != 0
	})
	if code != 1 || !strings.Contains(stdout, "state:      offline") || !strings.Contains(stderr, "rustynet status: the node is offline: the controller "+ctl.URL+" does not answer") {
		t.Errorf("with the controller gone, rustynet status = exit %d, stdout %q, stderr %q; want exit 1 and offline", code, stdout, stderr)
	}
}

// waitFor polls ok for up to 30 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
