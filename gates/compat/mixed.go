package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/node/localapi"
)

// Binary is one release's build of a daemon: the release's name ("this
// tree" for the release under test) and the path.
type Binary struct {
	Release string `json:"release"`
	Path    string `json:"-"`
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
}

// pairBytes is what each side of a pair sends.
const pairBytes = 64 << 10

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
		return nil, fmt.Errorf("%s's controller: %w", ctl.Release, err)
	}
	out, err := exec.CommandContext(ctx, ctlCLI, "authkey", "create", "--data-dir", dir, "--reusable").Output()
	if err != nil {
		return nil, fmt.Errorf("authkey create: %w", err)
	}
	key := strings.TrimSpace(string(out))
	type started struct {
		b     Binary
		h     *testbed.Host
		state string
		addr  netip.Addr
	}
	var ns []*started
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
		ns = append(ns, &started{b: b, h: h, state: state})
	}
	// Every node running, with every other as a peer.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready := 0
		var last string
		for _, n := range ns {
			st, err := localapi.NewClient(n.state).Status(ctx)
			switch {
			case err != nil:
				last = fmt.Sprintf("%s (%s): %v", n.state, n.b.Release, err)
			case st.State != localapi.StateRunning || len(st.DataplanePeers) < len(ns)-1 || st.Self == nil:
				last = fmt.Sprintf("%s (%s): %s, %d peers, %s", n.state, n.b.Release, st.State, len(st.DataplanePeers), st.LastError)
			default:
				for _, a := range st.Self.Addresses {
					if a.Addr().Is4() {
						n.addr = a.Addr()
					}
				}
				ready++
			}
		}
		if ready == len(ns) {
			break
		}
		if time.Now().After(deadline) {
			res.Problems = append(res.Problems, fmt.Sprintf("the mesh did not come up in 60 s: %s", last))
			return res, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, a := range ns {
		for _, b := range ns {
			if a == b {
				continue
			}
			p := Pair{From: a.b.Release, To: b.b.Release}
			start := time.Now()
			if err := exchange(ctx, a.h, b.h, b.addr); err != nil {
				p.Error = err.Error()
				res.Problems = append(res.Problems, fmt.Sprintf("%s -> %s (controller %s): %v", p.From, p.To, ctl.Release, err))
			} else {
				p.OK = true
			}
			p.Took = time.Since(start)
			res.Pairs = append(res.Pairs, p)
		}
	}
	return res, nil
}

// exchange opens a TCP connection from host a to b's mesh address (a
// listener in b's namespace), and each side sends the other pairBytes of
// random data, which the other checks.
func exchange(ctx context.Context, a, b *testbed.Host, to netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
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
		c.SetDeadline(time.Now().Add(20 * time.Second))
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
	deadline := time.Now().Add(30 * time.Second)
	var hc *http.Client
	for {
		if hc == nil {
			if pem, err := os.ReadFile(caFile); err == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(pem) {
					hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
						return h.DialContext(ctx, network, addr)
					}, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
					defer hc.CloseIdleConnections()
				}
			}
		}
		if hc != nil {
			if resp, err := hc.Get(url + api.PathHealthz); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it served")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within 30 s", api.PathHealthz)
		}
	}
}
