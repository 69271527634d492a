// Command rustynet is the node CLI. It talks to rustynetd over the unix
// socket in the state directory.
//
//	rustynet status [--json] | ip [-4|-6] | ping PEER | rotate-key   [--state-dir DIR]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rustynet/rustynet/node/localapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: rustynet <command> [flags]

commands:
  status [--json]    the node, its controller and its peers
  ip [-4|-6]         the node's mesh address(es)
  ping PEER [-c N]   ICMP echo to a peer (name, ID or mesh address) through the tunnel
  rotate-key         rotate the node's WireGuard key through the controller;
                     exits 3 if the key was sent but the controller's answer
                     did not arrive (the node completes the rotation later)

Every command takes --state-dir DIR (default /var/lib/rustynet).
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd := args[0]
	fs := flag.NewFlagSet("rustynet "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("state-dir", "/var/lib/rustynet", "rustynetd's state directory")
	asJSON := fs.Bool("json", false, "print JSON (status)")
	only4 := fs.Bool("4", false, "only the IPv4 address (ip)")
	only6 := fs.Bool("6", false, "only the IPv6 address (ip)")
	count := fs.Int("c", 1, "number of pings (ping)")
	timeout := fs.Duration("timeout", 5*time.Second, "time to wait for each reply (ping)")
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	c := localapi.NewClient(*dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*count)*(*timeout)+30*time.Second)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "rustynet %s: %v\n", cmd, err)
		return 1
	}
	switch cmd {
	case "status":
		st, err := c.Status(ctx)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(st)
			return 0
		}
		printStatus(stdout, st)
	case "ip":
		addrs, err := c.IPs(ctx)
		if err != nil {
			return fail(err)
		}
		for _, a := range addrs {
			if (*only4 && !a.Addr().Is4()) || (*only6 && !a.Addr().Is6()) {
				continue
			}
			fmt.Fprintln(stdout, a.Addr())
		}
	case "ping":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "rustynet ping: want one PEER (name, node ID or mesh address)")
			return 2
		}
		failed := 0
		for i := range max(*count, 1) {
			res, err := c.Ping(ctx, pos[0], *timeout)
			if err != nil {
				fmt.Fprintf(stderr, "ping %s: %v\n", pos[0], err)
				failed++
				continue
			}
			fmt.Fprintf(stdout, "reply from %s (%s): seq=%d time=%v\n", res.Peer, res.Addr, i, res.RTT.Round(10*time.Microsecond))
		}
		if failed > 0 {
			return 1
		}
	case "rotate-key":
		k, err := c.RotateKey(ctx)
		if errors.Is(err, localapi.ErrRotationPending) {
			fmt.Fprintf(stdout, "new node key %s sent, not yet confirmed: the node completes the rotation when the controller answers (`rustynet status` shows it pending until then)\n", k)
			fmt.Fprintf(stderr, "rustynet %s: %v\n", cmd, err)
			return 3
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "new node key %s\n", k)
	default:
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "rustynet: unknown command %q\n", cmd)
		return 2
	}
	return 0
}

func printStatus(w io.Writer, st *localapi.Status) {
	fmt.Fprintf(w, "state:      %s\n", st.State)
	if st.Self != nil {
		addrs := make([]string, len(st.Self.Addresses))
		for i, a := range st.Self.Addresses {
			addrs[i] = a.Addr().String()
		}
		fmt.Fprintf(w, "node:       %s (%s) %s\n", st.Self.Name, st.Self.ID, strings.Join(addrs, " "))
	}
	if !st.NodeKey.IsZero() {
		fmt.Fprintf(w, "node key:   %s\n", st.NodeKey)
	}
	if !st.PendingNodeKey.IsZero() {
		fmt.Fprintf(w, "pending:    %s (sent to the controller, not yet confirmed)\n", st.PendingNodeKey)
	}
	if st.KeyMismatch != "" {
		fmt.Fprintf(w, "key:        %s\n", st.KeyMismatch)
	}
	fmt.Fprintf(w, "backend:    %s on %s, port %d\n", st.Backend, st.Interface, st.ListenPort)
	if st.Self != nil && st.Self.PQMode != "" {
		fmt.Fprintf(w, "pq mode:    %s (the controller's policy)\n", st.Self.PQMode)
	}
	fmt.Fprintf(w, "controller: %s (netmap revision %d)\n", st.Controller, st.Revision)
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
	if d := st.Deprecation; d != nil {
		fmt.Fprintf(w, "warning:    the controller deprecates this rustynetd's capability version %d", d.CapabilityVersion)
		if d.Since != nil {
			fmt.Fprintf(w, " (since %s)", d.Since.UTC().Format(time.DateOnly))
		}
		if d.Sunset != nil {
			fmt.Fprintf(w, "; it may stop serving it from %s: upgrade rustynetd before then\n", d.Sunset.UTC().Format(time.DateOnly))
		} else {
			fmt.Fprintf(w, "; upgrade rustynetd\n")
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPEER\tADDRESS\tENDPOINT\tHANDSHAKE\tPQ\tRX\tTX")
	for _, p := range st.Peers {
		addr := "-"
		if len(p.Addresses) > 0 {
			addr = p.Addresses[0].Addr().String()
		}
		hs := "never"
		if p.LastHandshake != nil {
			hs = time.Since(*p.LastHandshake).Round(time.Second).String() + " ago"
		}
		ep := "-"
		if p.Endpoint.IsValid() {
			ep = p.Endpoint.String()
		}
		mode := p.PQ
		if mode == "" {
			mode = "-"
		}
		if p.PQKey != "" {
			mode += " " + p.PQKey
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", p.Name, addr, ep, hs, mode, p.RxBytes, p.TxBytes)
	}
	tw.Flush()
	for _, p := range st.Peers {
		if p.PQ == localapi.PQPending || p.PQ == localapi.PQRefused {
			fmt.Fprintf(w, "pq %s: %s: %s\n", p.PQ, p.Name, p.PQReason)
		}
	}
	for _, m := range st.Missing {
		fmt.Fprintf(w, "not a peer: %s: %s\n", m.Name, m.Reason)
	}
}
