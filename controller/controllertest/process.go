package controllertest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/lockedbuf"
	"github.com/rustynet/rustynet/internal/ports"
	"github.com/rustynet/rustynet/internal/proc"
	"github.com/rustynet/rustynet/internal/readyfile"
)

// Build compiles the package at pkg (a path relative to the test's
// directory, e.g. "../cmd/rustynet-controller") into dir and returns the
// binary's path. Tests that share binaries across benchmark runs build
// them once into a directory that outlives each run.
func Build(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Process is a controller running as its own process
// (`rustynet-controller serve`), for tests that kill it or measure it.
type Process struct {
	Cmd        *exec.Cmd
	DataDir    string
	URL        string // https://ADDR
	MetricsURL string // http://ADDR/metrics
	logs       lockedbuf.Buffer
	done       chan struct{} // closed when the process has exited
	err        error         // its exit status, once done is closed
}

// ReadyFile is where a controller started with ServeArgs(dataDir, ...)
// says it serves, and on which addresses.
func ReadyFile(dataDir string) string { return filepath.Join(dataDir, "ready.json") }

// StartProcess runs `bin serve` on dataDir, listening on 127.0.0.1 ports
// chosen by the kernel, with any extra serve flags, and waits until it
// serves. The process is killed when the test ends; its log is printed if
// the test failed.
func StartProcess(tb testing.TB, bin, dataDir string, extra ...string) *Process {
	tb.Helper()
	return StartCommand(tb, exec.Command(bin, append(ServeArgs(dataDir, "127.0.0.1:0", "127.0.0.1:0"), extra...)...), dataDir)
}

// StartReplicaProcess runs `bin serve --store etcd` on dataDir over the
// etcd endpoints (comma-separated), listening on a 127.0.0.1 port it
// advertises, with any extra serve flags, and waits until it serves. A
// second replica needs the first's CA in its data dir first (CopyCA).
func StartReplicaProcess(tb testing.TB, bin, dataDir, endpoints string, extra ...string) *Process {
	tb.Helper()
	addr := ports.Addr(tb)
	args := append(ServeArgs(dataDir, addr, "127.0.0.1:0"), "--store", "etcd", "--etcd-endpoints", endpoints, "--advertise-url", "https://"+addr)
	return StartCommand(tb, exec.Command(bin, append(args, extra...)...), dataDir)
}

// ServeArgs are the arguments of `rustynet-controller serve` on dataDir
// with the given listen addresses.
func ServeArgs(dataDir, listen, metricsListen string) []string {
	return []string{"serve", "--data-dir", dataDir, "--listen", listen, "--metrics-listen", metricsListen, "--ready-file", ReadyFile(dataDir)}
}

// StartCommand starts cmd, a `rustynet-controller serve` command built by
// the caller with ServeArgs (for instance run inside a network namespace),
// and waits until it has written its ready file. Its stderr must be unset:
// the log is read from it.
func StartCommand(tb testing.TB, cmd *exec.Cmd, dataDir string) *Process {
	tb.Helper()
	os.Remove(ReadyFile(dataDir)) // one left by an earlier start says nothing of this one
	p := &Process{DataDir: dataDir, done: make(chan struct{}), Cmd: cmd}
	pr, pw := io.Pipe()
	p.Cmd.Stderr = pw
	if err := p.Cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.err = p.Cmd.Wait(); pw.Close(); close(p.done) }()
	tb.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("controller log:\n%s", p.Logs())
		}
	})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.logs.Write([]byte(sc.Text() + "\n"))
		}
	}()
	info, err := readyfile.Wait(context.Background(), ReadyFile(dataDir), p.done, 30*time.Second)
	if err != nil {
		tb.Fatalf("controller: %v (exit: %v)\n%s", err, p.err, p.Logs())
	}
	p.URL = "https://" + info.API
	if info.Metrics != "" {
		p.MetricsURL = "http://" + info.Metrics + "/metrics"
	}
	return p
}

// Logs returns what the process has logged so far.
func (p *Process) Logs() string { return p.logs.String() }

// Wait waits up to d for the process to exit and returns its exit error,
// or an error saying it is still running.
func (p *Process) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("controller still running after %v", d)
	}
}

// Memory reads the process's resident set size and its peak, in bytes.
func (p *Process) Memory() (rss, peak int64, err error) { return proc.Memory(p.Cmd.Process.Pid) }

// CPUTime reads the user and system CPU time the process has used.
func (p *Process) CPUTime() (time.Duration, error) { return proc.CPUTime(p.Cmd.Process.Pid) }

// CopyCA gives the data dir to the CA of the controller whose data dir is
// from, as the README says for a second replica: install -d -m 0700
// DIR/tls; copy ca.pem and ca.key; chmod 0600 ca.key.
func CopyCA(tb testing.TB, from, to string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Join(to, "tls"), 0o700); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(from, "tls", f))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, "tls", f), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}
