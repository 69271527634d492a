package containers

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/testcontainers/testcontainers-go"
)

const (
	daemonBin = "/rustynetd"
	cliBin    = "/rustynet"
	// NodeCAPath is where a node's container holds the controller's CA.
	NodeCAPath = "/ca.pem"
)

// Node is rustynetd in netstack mode (no TUN device, no privileges) in a
// container on a Network, with its name as network alias:
//
//	rustynetd --state-dir /data --controller URL --controller-ca /ca.pem --auth-key KEY --netstack --hostname NAME
//
// The image also holds the node CLI, /rustynet.
type Node struct {
	Container testcontainers.Container
	Name      string
	// IPv4 is the node's mesh address, as `rustynet ip -4` printed it when
	// the node became ready.
	IPv4 netip.Addr
}

// StartNode builds the node image (once; this builds rustynetd and
// rustynet), starts a node named name that registers with c using authKey,
// and waits until it is ready: until `rustynet ip -4` succeeds and prints
// an address. The container is removed when the test ends.
func StartNode(ctx context.Context, t T, n *Network, c *Controller, authKey, name string) *Node {
	t.Helper()
	return StartNodeWith(ctx, t, NodeOptions{Name: name, Networks: []*Network{n}, Controllers: []string{c.URL}, CAPEM: c.CAPEM, AuthKey: authKey})
}

// NodeOptions is how StartNodeWith runs a node.
type NodeOptions struct {
	// Name is its hostname, and its alias on every network it joins.
	Name     string
	Networks []*Network
	// Controllers are the URLs it is given (--controller), CAPEM their CA.
	Controllers []string
	CAPEM       []byte
	AuthKey     string
	// DaemonBin and CLIBin are the binaries (empty: Binary builds them).
	DaemonBin, CLIBin string
	// Args are more rustynetd flags.
	Args []string
}

// StartNodeWith starts a node as StartNode does, with the options given.
func StartNodeWith(ctx context.Context, t T, o NodeOptions) *Node {
	t.Helper()
	if o.DaemonBin == "" {
		o.DaemonBin = Binary(t, DaemonPackage)
	}
	if o.CLIBin == "" {
		o.CLIBin = Binary(t, CLIPackage)
	}
	img := Image(t, "node", map[string]string{daemonBin: o.DaemonBin, cliBin: o.CLIBin})
	var nets []string
	aliases := map[string][]string{}
	for _, n := range o.Networks {
		nets = append(nets, n.Name)
		aliases[n.Name] = []string{o.Name}
	}
	ctr := startContainer(ctx, t, "node "+o.Name, testcontainers.ContainerRequest{
		Image:      img,
		Entrypoint: []string{daemonBin},
		Cmd: append([]string{"--state-dir", DataDir, "--controller", strings.Join(o.Controllers, ","), "--controller-ca", NodeCAPath,
			"--auth-key", o.AuthKey, "--netstack", "--hostname", o.Name}, o.Args...),
		Networks:       nets,
		NetworkAliases: aliases,
		Labels:         labels(t),
		// Copied in after the container is created, before it starts.
		Files: []testcontainers.ContainerFile{{Reader: bytes.NewReader(o.CAPEM), ContainerFilePath: NodeCAPath, FileMode: 0o644}},
	})
	nd := &Node{Container: ctr, Name: o.Name}
	if err := nd.waitReady(ctx); err != nil {
		t.Fatalf("containers.StartNode(%q): %v", o.Name, err)
	}
	return nd
}

// CLI runs `/rustynet ARGS... --state-dir /data` in the node's container
// and returns its exit code and its output: stdout, then stderr. err is set
// only when the command could not be run.
func (nd *Node) CLI(ctx context.Context, args ...string) (exitCode int, output string, err error) {
	r, err := nd.cli(ctx, args...)
	return r.ExitCode, r.Output(), err
}

func (nd *Node) cli(ctx context.Context, args ...string) (Result, error) {
	cmd := append([]string{cliBin}, args...)
	return Exec(ctx, nd.Container, append(cmd, "--state-dir", DataDir)...)
}

// Stop sends SIGTERM and waits for rustynetd to exit, at most StopTimeout
// before Docker kills it. It returns an error unless rustynetd exited
// cleanly (status 0). The container and its /data stay.
func (nd *Node) Stop(ctx context.Context) error {
	code, err := stop(ctx, nd.Container)
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.Name, err)
	}
	if code != 0 {
		return fmt.Errorf("node %s: exit status %d after SIGTERM%s", nd.Name, code, withLog(nd.Container))
	}
	return nil
}

// Kill sends SIGKILL and waits until the container has stopped.
func (nd *Node) Kill(ctx context.Context) error {
	if err := kill(ctx, nd.Container); err != nil {
		return fmt.Errorf("node %s: %w", nd.Name, err)
	}
	return nil
}

// Start starts the stopped (or killed) container again, with its state,
// and waits until the node is ready as StartNode does.
func (nd *Node) Start(ctx context.Context) error {
	if err := nd.Container.Start(ctx); err != nil {
		return fmt.Errorf("node %s: %w", nd.Name, err)
	}
	return nd.waitReady(ctx)
}

func (nd *Node) waitReady(ctx context.Context) error {
	return waitReady(ctx, nd.Container, "node "+nd.Name, func(ctx context.Context) error {
		r, err := nd.cli(ctx, "ip", "-4")
		if err != nil {
			return err
		}
		if r.ExitCode != 0 {
			return fmt.Errorf("rustynet ip -4: exit status %d: %s", r.ExitCode, strings.TrimSpace(r.Output()))
		}
		ip, err := parseAddr(strings.TrimSpace(r.Stdout))
		if err != nil {
			return fmt.Errorf("rustynet ip -4: %w", err)
		}
		nd.IPv4 = ip
		return nil
	})
}

// parseAddr accepts an address with or without a prefix length.
func parseAddr(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an address", s)
	}
	return p.Addr(), nil
}
