package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/node/localapi"
)

// staleHandshake is the age past which a WireGuard session is gone: a
// session is rekeyed every 2 minutes while in use and rejected after 3.
const staleHandshake = 3 * time.Minute

func pingCmd(client func() *localapi.Client, dir *string) *cobra.Command {
	var count int
	var interval, timeout time.Duration
	c := &cobra.Command{
		Use:   "ping PEER",
		Short: "ICMP echo to a peer (name, node ID or mesh address) through the tunnel",
		Long: `Sends ICMP echo requests to a peer's mesh address through the tunnel,
one every --interval, prints each reply, and ends with a summary as ping(8)
does: packets sent and received, the loss, and the round-trip times. Ctrl-C
ends it early, with the summary.

A peer that does not answer is explained: the ACL policy does not let this
node open connections to it (then no echo is sent), it has no endpoint, no
handshake has completed with it, it runs another backend, or it is not in
this node's netmap.

Exit status: 0 when at least one reply came back; 1 when none did, or the
peer cannot be reached, or rustynetd does not answer; 2 for a usage error.`,
		Example: `  rustynet ping b
  rustynet ping -c 5 100.64.0.2`,
		Args: cli.ExactArgs(1, "one PEER: a name, node ID or mesh address"),
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case count < 1:
				return cli.Usagef("invalid value %d for -c/--count: want 1 or more echoes", count)
			case interval <= 0:
				return cli.Usagef("invalid value %v for -i/--interval: want a time above 0, such as 1s", interval)
			case timeout < time.Millisecond || timeout > time.Minute:
				return cli.Usagef("invalid value %v for --timeout: want 1ms to 1m (rustynetd waits at most a minute)", timeout)
			}
			ctx, stop := signalContext(c.Context())
			defer stop()
			return ping(ctx, c.OutOrStdout(), client(), dir, args[0], count, interval, timeout)
		},
	}
	c.Flags().IntVarP(&count, "count", "c", 1, "echo requests to send")
	c.Flags().DurationVarP(&interval, "interval", "i", time.Second, "time between echo requests")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "time to wait for each reply")
	return c
}

// ping sends count echoes to peer and prints the replies and the summary.
func ping(ctx context.Context, w io.Writer, cl *localapi.Client, dir *string, peer string, count int, interval, timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, apiTimeout)
	st, err := cl.Status(sctx)
	cancel()
	if err != nil {
		return daemonError(dir, err)
	}
	p := findPeer(st, peer)
	if p != nil && !p.AllowOut {
		return fmt.Errorf("cannot reach %s: the ACL policy does not let this node open connections to it (%s may open connections to this node, which only answers them); no echo sent", p.Name, p.Name)
	}
	name := peer
	if p != nil {
		name = p.Name
	}
	var rtts []float64 // in milliseconds
	sent := 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := range count {
		if seq > 0 {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, timeout+apiTimeout)
		res, err := cl.Ping(pctx, peer, timeout)
		cancel()
		if ctx.Err() != nil {
			break // interrupted while waiting: ping(8) does not count it either
		}
		sent++
		if err != nil {
			if p == nil {
				// Not a peer in the status: the daemon's refusal
				// (not in the netmap, another backend) is the answer.
				return daemonError(dir, err)
			}
			fmt.Fprintf(w, "seq=%d: %v\n", seq, daemonError(dir, err))
			continue
		}
		name = res.Peer
		fmt.Fprintf(w, "reply from %s (%s): seq=%d time=%v\n", res.Peer, res.Addr, seq, res.RTT.Round(10*time.Microsecond))
		rtts = append(rtts, float64(res.RTT)/float64(time.Millisecond))
	}
	fmt.Fprintf(w, "\n--- %s ping statistics ---\n", name)
	loss := 100.0
	if sent > 0 {
		loss = 100 * float64(sent-len(rtts)) / float64(sent)
	}
	fmt.Fprintf(w, "%d packets transmitted, %d received, %.3g%% packet loss\n", sent, len(rtts), loss)
	if len(rtts) > 0 {
		fmt.Fprintf(w, "rtt min/avg/max = %.3f/%.3f/%.3f ms\n", slices.Min(rtts), stats.Mean(rtts), slices.Max(rtts))
		return nil
	}
	if p == nil {
		return fmt.Errorf("no reply from %s", name)
	}
	return fmt.Errorf("no reply from %s: %s", name, whyNoReply(p, time.Now()))
}

// findPeer returns the peer the daemon would ping for arg (a name, node
// ID or mesh address), or nil.
func findPeer(st *localapi.Status, arg string) *localapi.Peer {
	ip, ipErr := netip.ParseAddr(arg)
	for i, p := range st.Peers {
		if p.Name == arg || string(p.ID) == arg {
			return &st.Peers[i]
		}
		for _, a := range p.Addresses {
			if ipErr == nil && a.Addr() == ip {
				return &st.Peers[i]
			}
		}
	}
	return nil
}

// whyNoReply says, from the status, why a peer this node may reach gave
// no reply.
func whyNoReply(p *localapi.Peer, now time.Time) string {
	switch {
	case p.PQ == localapi.PQRefused:
		return fmt.Sprintf("this pair requires post-quantum protection, which %s cannot give (%s): no traffic passes", p.Name, p.PQReason)
	case len(p.Endpoints) == 0 && !p.Endpoint.IsValid():
		return fmt.Sprintf("%s has no endpoint: it has reported none to the controller, which has not seen one either, so this node cannot open a session to it (it can answer a session %s opens)", p.Name, p.Name)
	case p.LastHandshake == nil:
		return fmt.Sprintf("no handshake with %s has completed: it does not answer at its endpoints %v (it may be down, or a firewall may drop UDP to it)", p.Name, p.Endpoints)
	case now.Sub(*p.LastHandshake) > staleHandshake:
		return fmt.Sprintf("the last handshake with %s was %v ago: it may be down, or unreachable at its endpoints %v", p.Name, now.Sub(*p.LastHandshake).Round(time.Second), p.Endpoints)
	case p.PQ == localapi.PQPending:
		return fmt.Sprintf("the pair waits for its post-quantum key (%s)", p.PQReason)
	}
	return fmt.Sprintf("the last handshake with %s was %v ago, so it was up then: it may have stopped since, or drop ICMP", p.Name, now.Sub(*p.LastHandshake).Round(time.Second))
}
