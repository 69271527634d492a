package containers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/rustynet/rustynet/internal/proc"
)

// Labels on everything the package creates.
const (
	// LabelSession is on every container and network; its value is unique
	// to the test process.
	LabelSession = "org.rustynet.containers.session"
	// LabelTest names the test that created a container or network.
	LabelTest = "org.rustynet.containers.test"
	// LabelOwner names the process that created a container or network
	// (proc.Identity); Sweep removes those whose owner is gone.
	LabelOwner = "org.rustynet.containers.owner"
	// LabelImage is on every image Image builds; its value is the image's
	// name ("controller", "node").
	LabelImage = "org.rustynet.containers.image"
)

// Bounds on the waits of the package. A context with an earlier deadline
// shortens them.
const (
	BuildTimeout   = 5 * time.Minute  // go build, docker build
	ReadyTimeout   = 60 * time.Second // from container start until it serves
	StopTimeout    = 20 * time.Second // SIGTERM until Docker sends SIGKILL
	ExecTimeout    = 60 * time.Second // a command run in a container
	cleanupTimeout = 60 * time.Second // removing a container or network
	pollInterval   = 100 * time.Millisecond
)

// ryukEnv turns off testcontainers-go's reaper, whose image cannot be pulled.
const ryukEnv = "TESTCONTAINERS_RYUK_DISABLED"

var (
	setupOnce sync.Once
	setupErr  error
	session   string
	owner     string // proc.Identity of this process
	provider  *testcontainers.DockerProvider
)

// setup prepares the package for its first Docker call (see start), and
// fails the test if it cannot.
func setup(t T) {
	t.Helper()
	if err := start(); err != nil {
		t.Fatalf("containers: %v", err)
	}
}

// start turns Ryuk off, picks the session ID and opens a Docker provider
// for the calls testcontainers-go does not wrap, once per process.
func start() error {
	setupOnce.Do(func() {
		if _, ok := os.LookupEnv(ryukEnv); !ok {
			os.Setenv(ryukEnv, "true")
		}
		if !testcontainers.ReadConfig().RyukDisabled && os.Getenv(ryukEnv) != "false" {
			setupErr = fmt.Errorf("testcontainers-go has Ryuk enabled (its configuration was read before %s was set, or a properties file enables it); set %s=true in the environment", ryukEnv, ryukEnv)
			return
		}
		var b [8]byte
		rand.Read(b[:])
		session = hex.EncodeToString(b[:])
		if owner, setupErr = proc.Identity(os.Getpid()); setupErr != nil {
			return
		}
		provider, setupErr = testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
		if setupErr != nil {
			setupErr = fmt.Errorf("docker provider: %w", setupErr)
			return
		}
		// What killed processes left (there is no Ryuk) goes first.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		swept, err := sweep(ctx)
		if len(swept) > 0 {
			fmt.Fprintf(os.Stderr, "containers: removed what processes that were killed left: %s\n", strings.Join(swept, "; "))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "containers: could not remove everything killed processes left: %v\n", err)
		}
	})
	return setupErr
}

// Sweep removes the containers, then the networks, whose creating process
// (LabelOwner) no longer runs: what a test binary killed before its
// cleanup (under an interrupted gate, say) left behind. Every process
// sweeps before its first container; those of running processes are not
// touched. It returns what it removed, one line each.
func Sweep(ctx context.Context) ([]string, error) {
	if err := start(); err != nil {
		return nil, err
	}
	return sweep(ctx)
}

func sweep(ctx context.Context) ([]string, error) {
	defer provider.Close() // its idle connections; the provider stays usable
	f := make(client.Filters).Add("label", LabelOwner)
	cs, err := provider.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var swept []string
	var errs []error
	for _, c := range cs.Items {
		if proc.Running(c.Labels[LabelOwner]) {
			continue
		}
		if _, err := provider.Client().ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %.12s: %w", c.ID, err))
			continue
		}
		swept = append(swept, fmt.Sprintf("container %s (test %s)", strings.Join(c.Names, ","), c.Labels[LabelTest]))
	}
	ns, err := provider.Client().NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return swept, errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range ns.Items {
		if proc.Running(n.Labels[LabelOwner]) {
			continue
		}
		if _, err := provider.Client().NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			continue
		}
		swept = append(swept, fmt.Sprintf("network %s (test %s)", n.Name, n.Labels[LabelTest]))
	}
	return swept, errors.Join(errs...)
}

// labels are the labels of a container or network t creates.
func labels(t T) map[string]string {
	return map[string]string{LabelSession: session, LabelTest: t.Name(), LabelOwner: owner}
}

// Result is what a command run in a container did.
type Result struct {
	ExitCode int
	Stdout   string
	Stderr   string
}

// Output returns stdout followed by stderr.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// Exec runs cmd in the running container ctr and waits for it to exit, at
// most ExecTimeout. There is no shell: cmd[0] is the absolute path of a
// binary in the image. A command that runs and fails is not an error; its
// exit code is in the Result.
func Exec(ctx context.Context, ctr testcontainers.Container, cmd ...string) (Result, error) {
	if len(cmd) == 0 {
		return Result{}, errors.New("exec: no command")
	}
	ctx, cancel := context.WithTimeout(ctx, ExecTimeout)
	defer cancel()
	code, r, err := ctr.Exec(ctx, cmd)
	if err != nil {
		return Result{}, fmt.Errorf("exec %s: %w", cmd[0], err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, r); err != nil {
		return Result{}, fmt.Errorf("exec %s: read output: %w", cmd[0], err)
	}
	return Result{ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String()}, nil
}

// Logs returns what the container has written to stdout and stderr, since
// it was created (across restarts).
func Logs(ctx context.Context, ctr testcontainers.Container) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ExecTimeout)
	defer cancel()
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return "", fmt.Errorf("logs: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return string(b), fmt.Errorf("logs: %w", err)
	}
	return string(b), nil
}

// Remaining lists the containers and networks this process created (those
// with its LabelSession) that still exist, one line each. Call it when no
// test of the process is using containers, e.g. in TestMain after m.Run,
// to check that cleanup left nothing behind.
func Remaining(ctx context.Context) ([]string, error) {
	if err := start(); err != nil {
		return nil, err
	}
	defer provider.Close() // its idle connections; the provider stays usable
	f := make(client.Filters).Add("label", LabelSession+"="+session)
	cs, err := provider.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var left []string
	for _, c := range cs.Items {
		left = append(left, fmt.Sprintf("container %.12s %s (%s, test %s)",
			c.ID, strings.Join(c.Names, ","), c.State, c.Labels[LabelTest]))
	}
	ns, err := provider.Client().NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns.Items {
		left = append(left, fmt.Sprintf("network %s (test %s)", n.Name, n.Labels[LabelTest]))
	}
	slices.Sort(left)
	return left, nil
}

// startContainer creates and starts a container and registers its removal
// with t. On failure the test fails, with the container's log if it ran.
func startContainer(ctx context.Context, t T, what string, req testcontainers.ContainerRequest) testcontainers.Container {
	t.Helper()
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Started:          true,
		Logger:           printfLogger{t},
	})
	if ctr != nil {
		t.Cleanup(func() { removeContainer(t, what, ctr) })
	}
	if err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	return ctr
}

// removeContainer removes ctr at the end of a test, first logging what it
// wrote if the test failed.
func removeContainer(t T, what string, ctr testcontainers.Container) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if t.Failed() {
		if l, err := Logs(ctx, ctr); err != nil {
			t.Logf("%s log: %v", what, err)
		} else {
			t.Logf("%s log:\n%s", what, l)
		}
	}
	// No grace: the container is being thrown away.
	if err := ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
		t.Errorf("remove %s container %.12s: %v", what, ctr.GetContainerID(), err)
	}
}

// stop sends SIGTERM, waits up to StopTimeout (then Docker sends SIGKILL),
// and returns the exit code.
func stop(ctx context.Context, ctr testcontainers.Container) (int, error) {
	d := StopTimeout
	if err := ctr.Stop(ctx, &d); err != nil {
		return 0, fmt.Errorf("stop: %w", err)
	}
	st, err := ctr.State(ctx)
	if err != nil {
		return 0, fmt.Errorf("stop: %w", err)
	}
	if st.Running {
		return 0, errors.New("stop: still running")
	}
	return st.ExitCode, nil
}

// kill sends SIGKILL and waits until the container is no longer running.
func kill(ctx context.Context, ctr testcontainers.Container) error {
	defer provider.Close()
	if _, err := provider.Client().ContainerKill(ctx, ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	return WaitStopped(ctx, ctr)
}

// Kill sends SIGKILL through Docker's API and waits until the container
// has stopped.
func Kill(ctx context.Context, ctr testcontainers.Container) error { return kill(ctx, ctr) }

// HostPID returns the host PID of the running container's main process
// (Docker's inspect), for KillPID.
func HostPID(ctx context.Context, ctr testcontainers.Container) (int, error) {
	info, err := ctr.Inspect(ctx)
	if err != nil {
		return 0, fmt.Errorf("inspect: %w", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid <= 0 {
		return 0, fmt.Errorf("container %.12s does not run", ctr.GetContainerID())
	}
	return info.State.Pid, nil
}

// KillPID sends SIGKILL to a container's main process by its host PID
// (HostPID, resolved beforehand): one kill(2), which takes effect at once,
// where Docker's kill API took seconds under load. The kernel then ends
// every process of the container's PID namespace. The PID must still be
// the container's (its cgroup names the container), so that one reused
// since HostPID is never killed. WaitStopped waits for Docker to see it.
func KillPID(pid int, ctr testcontainers.Container) error {
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	if !bytes.Contains(cg, []byte(ctr.GetContainerID())) {
		return fmt.Errorf("kill pid %d: it is no longer container %.12s's main process", pid, ctr.GetContainerID())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	return nil
}

// WaitStopped waits, up to StopTimeout, until Docker reports the container
// no longer running.
func WaitStopped(ctx context.Context, ctr testcontainers.Container) error {
	ctx, cancel := context.WithTimeout(ctx, StopTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		st, err := ctr.State(ctx)
		if err != nil {
			return fmt.Errorf("kill: %w", err)
		}
		if !st.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill: container still running: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// waitReady calls ready until it returns nil, the container exits, or
// ReadyTimeout passes. The error says why, with the container's log.
func waitReady(ctx context.Context, ctr testcontainers.Container, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		st, err := ctr.State(ctx)
		switch {
		case err != nil:
			last = err
		case !st.Running:
			return fmt.Errorf("%s exited (status %d) before it was ready%s", what, st.ExitCode, withLog(ctr))
		default:
			if last = ready(ctx); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w%s", what, cmp.Or(last, context.Cause(ctx)), withLog(ctr))
		case <-tick.C:
		}
	}
}

// withLog returns the container's log as a suffix for an error message.
func withLog(ctr testcontainers.Container) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := Logs(ctx, ctr)
	if err != nil {
		return "; " + err.Error()
	}
	return "; log:\n" + l
}

var loopback = netip.MustParseAddr("127.0.0.1")

// loopbackPorts maps each container port to a port Docker picks on
// 127.0.0.1 only.
func loopbackPorts(ports ...string) func(*container.HostConfig) {
	return func(hc *container.HostConfig) {
		hc.PortBindings = mobynet.PortMap{}
		for _, p := range ports {
			hc.PortBindings[mobynet.MustParsePort(p)] = []mobynet.PortBinding{{HostIP: loopback}}
		}
	}
}

// hostAddr returns 127.0.0.1:PORT, where Docker mapped the container's port.
func hostAddr(ctx context.Context, ctr testcontainers.Container, port string) (string, error) {
	p, err := ctr.MappedPort(ctx, port)
	if err != nil {
		return "", fmt.Errorf("mapped port %s: %w", port, err)
	}
	return net.JoinHostPort("127.0.0.1", p.Port()), nil
}

// copyFrom returns the contents of a file in the container (at most 1 MiB).
func copyFrom(ctx context.Context, ctr testcontainers.Container, file string) ([]byte, error) {
	return CopyFile(ctx, ctr, file, 1<<20)
}

// CopyFile returns the contents of a file in the container (running or
// stopped), refusing one of more than max bytes.
func CopyFile(ctx context.Context, ctr testcontainers.Container, file string, max int64) ([]byte, error) {
	rc, err := ctr.CopyFileFromContainer(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("copy %s out of the container: %w", file, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("copy %s out of the container: %w", file, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("copy %s out of the container: more than %d bytes", file, max)
	}
	return b, nil
}
