package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
	"github.com/rustynet/rustynet/policies"
)

// Binary is one release's build of a daemon: the release's name ("this
// tree" for the release under test) and the path.
type Binary struct {
	Release     string   `json:"release"`
	Path        string   `json:"-"`
	KnownIssues []string `json:"known_issues,omitempty"`
}

// Mixed is one mixed-version mesh: a controller of one release and nodes
// of others, in network namespaces, and whether every pair of nodes passed
// traffic both ways through the tunnel.
type Mixed struct {
	Controller string   `json:"controller"`
	Nodes      []string `json:"nodes"`
	// Pairs are the ordered pairs of nodes that exchanged data: the first
	// opened a TCP connection to the second's mesh address and each sent
	// the other pairBytes, checked.
	Pairs    []Pair   `json:"pairs"`
	Problems []string `json:"problems,omitempty"`
}

// Pair is one direction between two nodes.
type Pair struct {
	From, To string
	OK       bool
	Took     time.Duration `json:"took_ns"`
	Error    string        `json:"error,omitempty"`
	// KnownIssue is the known issue (policies.KnownIssues) both nodes
	// of the pair shipped with that the pair was given longer for.
	KnownIssue string `json:"known_issue,omitempty"`
}

// pairBytes is what each side of a pair sends.
const pairBytes = 64 << 10

// pairTimeout is how long a pair has to pass its data both ways;
// crossedTimeout is what a pair of two nodes with the known issue
// policies.IssueCrossedInitiations has: a stall of up to 15 s, then
// TCP's retransmission backs off (it resends at about 0.2, 0.6, 1.4, 3,
// 6.2, 12.6 and 25.4 s), so the exchange may finish some 26 s in.
const (
	pairTimeout    = 20 * time.Second
	crossedTimeout = 45 * time.Second
)

// knownIssue says, for messages, what allowance the pair had.
func knownIssue(p Pair) string {
	if p.KnownIssue == "" {
		return ""
	}
	return fmt.Sprintf(" (both nodes have the known issue %s: given %v)", p.KnownIssue, crossedTimeout)
}

// timeoutFor says how long the pair a to b has, and the known issue it
// was given longer for.
func timeoutFor(a, b Binary) (time.Duration, string) {
	id := policies.IssueCrossedInitiations
	if slices.Contains(a.KnownIssues, id) && slices.Contains(b.KnownIssues, id) {
		return crossedTimeout, id
	}
	return pairTimeout, ""
}

// CheckMixed runs ctl's controller and one node of each of nodes on the
// WireGuard backend in a testbed of network namespaces, waits until every
// node has every other as a peer, and passes data between every ordered
// pair. Daemons of earlier releases write no ready file: the controller is
// awaited on /healthz and each node on its local API.
func CheckMixed(ctx context.Context, ctl Binary, ctlCLI string, nodes []Binary, work string, log io.Writer) (*Mixed, error) {
	res := &Mixed{Controller: ctl.Release}
	for _, n := range nodes {
		res.Nodes = append(res.Nodes, n.Release)
	}
	tb, err := testbed.Create(ctx, testbed.Options{Hosts: 1 + len(nodes)})
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	dir, err := os.MkdirTemp(work, "mixed-")
	if err != nil {
		return nil, err
	}
	h0 := tb.Hosts[0]
	listen := netip.AddrPortFrom(h0.Addr, 8443).String()
	ctlProc, err := startIn(ctx, h0, ctl.Path, log, "serve", "--data-dir", dir, "--listen", listen, "--metrics-listen", "127.0.0.1:9469")
	if err != nil {
		return nil, err
	}
	defer ctlProc.stop()
	caFile := filepath.Join(dir, "tls", "ca.pem")
	if err := waitHealthy(ctx, h0, "https://"+listen, caFile, ctlProc.exited); err != nil {
		if errors.Is(err, errExited) {
			// The controller's own fault, not the harness's: the mesh
			// cannot form, and that blocks.
			res.Problems = append(res.Problems, fmt.Sprintf("%s's controller exited on a fresh data dir before it served (the gate's log has its output)", ctl.Release))
			return res, nil
		}
		return nil, fmt.Errorf("%s's controller: %w", ctl.Release, err)
	}
	out, err := exec.CommandContext(ctx, ctlCLI, "authkey", "create", "--data-dir", dir, "--reusable").Output()
	if err != nil {
		return nil, fmt.Errorf("authkey create: %w", err)
	}
	key := strings.TrimSpace(string(out))
	type started struct {
		b Binary
		h *testbed.Host
		*member
	}
	var ns []*started
	var ms []*member
	for i, b := range nodes {
		h := tb.Hosts[1+i]
		state := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		p, err := startIn(ctx, h, b.Path, log, "--state-dir", state, "--controller", "https://"+listen, "--controller-ca", caFile,
			"--auth-key", key, "--backend", "wireguard", "--interface", fmt.Sprintf("rnc%d", i+1), "--hostname", fmt.Sprintf("n%d", i+1),
			"--metrics-listen", "127.0.0.1:9470")
		if err != nil {
			return nil, err
		}
		defer p.stop()
		m := &member{name: fmt.Sprintf("%s (%s)", state, b.Release), state: state}
		ns = append(ns, &started{b: b, h: h, member: m})
		ms = append(ms, m)
	}
	if err := waitMesh(ctx, ms, 60*time.Second); err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res, nil
	}
	for _, a := range ns {
		for _, b := range ns {
			if a == b {
				continue
			}
			timeout, issue := timeoutFor(a.b, b.b)
			p := Pair{From: a.b.Release, To: b.b.Release, KnownIssue: issue}
			start := time.Now()
			if err := exchange(ctx, a.h, b.h, b.addr, timeout); err != nil {
				p.Error = err.Error()
				res.Problems = append(res.Problems, fmt.Sprintf("%s -> %s (controller %s): %v%s", p.From, p.To, ctl.Release, err, knownIssue(p)))
			} else {
				p.OK = true
			}
			p.Took = time.Since(start)
			res.Pairs = append(res.Pairs, p)
		}
	}
	return res, nil
}

// member is one node of a mesh the compatibility checks run: where its
// daemon keeps its state, and its IPv4 mesh address once it is up.
type member struct {
	name  string // for messages
	state string
	addr  netip.Addr
}

// waitMesh waits, up to timeout, until every member's daemon runs with
// every other as a peer, asking each on its local API (daemons of earlier
// releases write no ready file), and records each one's IPv4 mesh
// address. The error names a member not yet up, and why.
func waitMesh(ctx context.Context, ms []*member, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		up := 0
		var last string
		for _, m := range ms {
			st, err := localapi.NewClient(m.state).Status(ctx)
			switch {
			case err != nil:
				last = fmt.Sprintf("%s: %v", m.name, err)
			case st.State != localapi.StateRunning || len(st.DataplanePeers) < len(ms)-1 || st.Self == nil:
				last = fmt.Sprintf("%s: %s, %d peers, %s", m.name, st.State, len(st.DataplanePeers), st.LastError)
			default:
				for _, a := range st.Self.Addresses {
					if a.Addr().Is4() {
						m.addr = a.Addr()
					}
				}
				up++
			}
		}
		if up == len(ms) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the mesh is not up after %v: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exchange opens a TCP connection from host a to b's mesh address (a
// listener in b's namespace), and each side sends the other pairBytes of
// random data, which the other checks, all within timeout.
func exchange(ctx context.Context, a, b *testbed.Host, to netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ln, err := b.Listen("tcp", netip.AddrPortFrom(to, 0).String())
	if err != nil {
		return fmt.Errorf("listen in %s: %w", b.Name, err)
	}
	defer ln.Close()
	up, down := make([]byte, pairBytes), make([]byte, pairBytes)
	rand.Read(up)
	rand.Read(down)
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		if d, ok := ctx.Deadline(); ok {
			c.SetDeadline(d)
		}
		got := make([]byte, pairBytes)
		if _, err := io.ReadFull(c, got); err != nil {
			served <- fmt.Errorf("read at %s: %w", to, err)
			return
		}
		if !bytes.Equal(got, up) {
			served <- fmt.Errorf("%s got other bytes than were sent", to)
			return
		}
		_, err = c.Write(down)
		served <- err
	}()
	c, err := a.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dial %s from %s: %w", ln.Addr(), a.Name, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := c.Write(up); err != nil {
		return err
	}
	got := make([]byte, pairBytes)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if !bytes.Equal(got, down) {
		return fmt.Errorf("the answer from %s is not what it sent", to)
	}
	return <-served
}

// proc is a daemon running in a namespace; exited is closed, and err
// set, once it has exited.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func startIn(ctx context.Context, h *testbed.Host, bin string, log io.Writer, args ...string) (*proc, error) {
	fmt.Fprintf(log, "$ (in %s) %s %s\n", h.Name, bin, strings.Join(args, " "))
	return start(h.Command(context.WithoutCancel(ctx), bin, args...), log)
}

// start starts cmd, its output to log.
func start(cmd *exec.Cmd, log io.Writer) (*proc, error) {
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop ends the daemon with SIGTERM (SIGKILL after 10 s) and waits. `ip
// netns exec` runs the daemon in its own process (exec), so the signal
// reaches it.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitHealthy waits, up to 30 s, until the controller at url answers
// /healthz over TLS with the CA in caFile, dialled from host h.
func waitHealthy(ctx context.Context, h *testbed.Host, url, caFile string, exited <-chan struct{}) error {
	hc, err := healthyClient(ctx, h.DialContext, url, caFile, exited)
	if hc != nil {
		hc.CloseIdleConnections()
	}
	return err
}

// errExited: a daemon's process ended before it served.
var errExited = errors.New("exited before it served")

// healthyClient waits, up to 30 s, until the controller at url answers
// /healthz over TLS 1.3 with the CA in caFile (which the controller writes
// as it starts), dialling with dial (nil: from this network namespace),
// and returns the client that reached it. It stops early when exited is
// closed (the controller's process ended).
func healthyClient(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url, caFile string, exited <-chan struct{}) (*http.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	var hc *http.Client
	fail := func(err error) (*http.Client, error) {
		if hc != nil {
			hc.CloseIdleConnections()
		}
		return nil, err
	}
	for {
		if hc == nil {
			if pem, err := os.ReadFile(caFile); err == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(pem) {
					hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial,
						TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
				}
			}
		}
		if hc != nil {
			if resp, err := hc.Get(url + api.PathHealthz); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return hc, nil
				}
			}
		}
		select {
		case <-exited:
			return fail(errExited)
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("no answer on %s within 30 s", api.PathHealthz))
		}
	}
}
