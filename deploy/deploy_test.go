// Package deploy holds what installs and runs the daemons: systemd units
// (systemd/) and container images (container/). Its tests check both
// with the real tools.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

var units = []string{"rustynet-controller.service", "rustynetd.service"}

// TestSystemdUnits checks the units with systemd's own verifier (every
// directive known and well-formed, the binary there) and holds their
// hardening: systemd-analyze security's exposure score must stay at or
// under 3.0 ("OK"; 10 is an unhardened service). A real systemd cannot
// run in this test's machine (no systemd as PID 1), so the units are
// verified offline.
func TestSystemdUnits(t *testing.T) {
	analyze := require.Command(t, "systemd-analyze")
	dir := t.TempDir()
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		// The binaries at a path of this test's: systemd-analyze
		// verify refuses a unit whose ExecStart does not exist.
		text := strings.ReplaceAll(string(data), "/usr/local/bin/", dir+"/")
		if err := os.WriteFile(filepath.Join(dir, u), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"rustynet-controller", "rustynetd"} {
		if err := os.Symlink("/bin/true", filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, u))
	}
	if out, err := exec.Command(analyze, args...).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, u := range units {
		out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=30", filepath.Join(dir, u)).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v, want an exposure of at most 3.0:\n%s", u, err, lastLines(string(out), 3))
		} else {
			t.Logf("%s: %s", u, lastLines(string(out), 1))
		}
	}
}

// TestImages builds both images as `make images` does, FROM scratch
// around the static binaries, and runs them: each prints its version, and
// the controller serves as its unprivileged user with its state in the
// image's volume.
func TestImages(t *testing.T) {
	require.Docker(t)
	ctx := t.TempDir()
	if err := testbed.BuildDaemons(filepath.Join(ctx, "bin")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"rustynet-controller.Dockerfile", "rustynetd.Dockerfile", "data/.keep"} {
		data, err := os.ReadFile(filepath.Join("container", f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(ctx, "deploy", "container", f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docker := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("docker", args...)
		cmd.Dir = ctx
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tag := "rustynet-deploy-test-" + strings.ToLower(filepath.Base(ctx))
	for _, b := range []string{"rustynet-controller", "rustynetd"} {
		image := b + ":" + tag
		docker("build", "-q", "-f", "deploy/container/"+b+".Dockerfile", "-t", image, ".")
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", image).Run() })
		if out := docker("run", "--rm", image, "--version"); !strings.HasPrefix(out, b+" ") {
			t.Errorf("%s --version printed %q", image, out)
		}
	}
	id := strings.TrimSpace(docker("run", "-d", "rustynet-controller:"+tag))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs := docker("logs", id)
		if strings.Contains(logs, `msg="controller serving"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the controller's container did not serve within 30 s:\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if user := strings.TrimSpace(docker("inspect", "-f", "{{.Config.User}}", id)); user != "65532:65532" {
		t.Errorf("the controller runs as %q, want the unprivileged 65532:65532", user)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
