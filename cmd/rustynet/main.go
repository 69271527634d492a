// Command rustynet is the node CLI. It talks to rustynetd over the unix
// socket in the state directory.
//
//	rustynet status [--json] | ip [-4|-6] | ping PEER [-c N] | rotate-key   [--state-dir DIR]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/node/localapi"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitPending is rotate-key's: the key was sent and the controller's
// answer did not arrive.
const exitPending = 3

// apiTimeout bounds one question to rustynetd (a ping adds its own
// timeout): it answers from memory, so a daemon that takes longer is stuck.
const apiTimeout = 30 * time.Second

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Execute(newRoot(), args, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := cli.New("rustynet", version, "the node CLI: talks to rustynetd on this machine",
		`rustynet asks the node daemon (rustynetd) on this machine for its state,
its mesh addresses, and pings peers through the tunnel.

Exit status:
`+cli.ExitCodes+`
  3  rotate-key: the new key was sent, the controller's answer did not arrive`)
	dir := root.PersistentFlags().String("state-dir", "/var/lib/rustynet", "rustynetd's state directory (its socket is `DIR`/"+localapi.SocketName+")")
	client := func() *localapi.Client { return localapi.NewClient(*dir) }
	root.AddCommand(statusCmd(client, dir), ipCmd(client, dir), pingCmd(client, dir), rotateKeyCmd(client, dir))
	return root
}

// daemonError words an error of the local API for the user: the
// daemon's own refusals pass as they are; a failure to talk to it says
// which socket and what to do.
func daemonError(dir *string, err error) error {
	var refusal *localapi.Error
	switch {
	case errors.As(err, &refusal):
		return err
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot open rustynetd's socket %s/%s: only its owner may (run as root, or as rustynetd's user)", *dir, localapi.SocketName)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("rustynetd (state dir %s) did not answer in time: it may be stuck; its log says why", *dir)
	case errors.Is(err, localapi.ErrNotRunning):
		return err
	}
	return fmt.Errorf("cannot talk to rustynetd over %s/%s: %w", *dir, localapi.SocketName, err)
}

func statusCmd(client func() *localapi.Client, dir *string) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "the node, its controller and its peers",
		Long: `Shows the node's state, its controller, and its peers with their
endpoints, last handshake, post-quantum protection and bytes.

Exit status: 0 when the node is running (or starting, or rotating its key);
1 when it is offline (the controller does not answer; the last netmap stays
in force), logged out (the controller removed it) or degraded (its netmap is
not in force: applying it to the dataplane failed), with --json too, or
when rustynetd does not answer; 2 for a usage error.`,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(c.Context(), apiTimeout)
			defer cancel()
			st, err := client().Status(ctx)
			if err != nil {
				return daemonError(dir, err)
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(c.OutOrStdout(), st)
			}
			switch st.State {
			case localapi.StateOffline:
				return fmt.Errorf("the node is offline: the controller %s does not answer; the last netmap (revision %d) stays in force", st.Controller, st.Revision)
			case localapi.StateLoggedOut:
				return errors.New("the node is logged out: the controller removed it; start rustynetd with an auth key (--auth-key) to register it again")
			case localapi.StateDegraded:
				return fmt.Errorf("the node is degraded: its netmap (revision %d) is not in force on the dataplane: %s; rustynetd tries again at each poll, and its log says more", st.Revision, st.ApplyError)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (the exit status is the same)")
	return c
}

func ipCmd(client func() *localapi.Client, dir *string) *cobra.Command {
	var only4, only6 bool
	c := &cobra.Command{
		Use:   "ip [-4|-6]",
		Short: "the node's mesh addresses",
		Long: `Prints the node's mesh addresses, one a line: IPv4 first, then IPv6.

Exit status: 0 when it printed an address; 1 when the node has none (it has
not registered, or has no address of the family asked for) or rustynetd does
not answer; 2 for a usage error (-4 and -6 together, say).`,
		RunE: func(c *cobra.Command, _ []string) error {
			if only4 && only6 {
				return cli.Usagef("-4 and -6 ask for one address family each: give one, or neither for both")
			}
			ctx, cancel := context.WithTimeout(c.Context(), apiTimeout)
			defer cancel()
			addrs, err := client().IPs(ctx)
			if err != nil {
				return daemonError(dir, err)
			}
			printed := 0
			for _, a := range addrs {
				if (only4 && !a.Addr().Is4()) || (only6 && !a.Addr().Is6()) {
					continue
				}
				fmt.Fprintln(c.OutOrStdout(), a.Addr())
				printed++
			}
			switch {
			case printed > 0:
				return nil
			case only4:
				return errors.New("the node has no IPv4 mesh address")
			case only6:
				return errors.New("the node has no IPv6 mesh address")
			}
			return errors.New("the node has no mesh address")
		},
	}
	c.Flags().BoolVarP(&only4, "ipv4", "4", false, "only the IPv4 address")
	c.Flags().BoolVarP(&only6, "ipv6", "6", false, "only the IPv6 address")
	return c
}

func rotateKeyCmd(client func() *localapi.Client, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key",
		Short: "rotate the node's WireGuard key through the controller",
		Long: `Makes a new node key, has the controller accept it, and switches the
node's sessions to it.

Exit status: 0 when the controller confirmed the new key; 1 when it refused
it (the node keeps its key) or rustynetd does not answer; 2 for a usage
error; 3 when the key was sent but the controller's answer did not arrive:
the node completes the rotation when the controller answers, and
'rustynet status' shows the key pending until then.`,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(c.Context(), apiTimeout)
			defer cancel()
			k, err := client().RotateKey(ctx)
			if errors.Is(err, localapi.ErrRotationPending) {
				fmt.Fprintf(c.OutOrStdout(), "new node key %s sent, not yet confirmed: the node completes the rotation when the controller answers (`rustynet status` shows it pending until then)\n", k)
				return cli.Exit(exitPending, err)
			}
			if err != nil {
				return daemonError(dir, err)
			}
			fmt.Fprintf(c.OutOrStdout(), "new node key %s\n", k)
			return nil
		},
	}
}

// signalContext is the context of a command that a Ctrl-C ends early
// (ping prints its summary then).
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt)
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
	if st.BackendNote != "" {
		fmt.Fprintf(w, "note:       %s\n", st.BackendNote)
	}
	if st.ApplyError != "" {
		fmt.Fprintf(w, "not applied: %s\n", st.ApplyError)
	}
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
