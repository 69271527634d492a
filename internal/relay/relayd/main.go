// Command relayd is the DR drills' inter-region link on kernels without
// netem: a TCP relay that delays what it carries (internal/relay), run in
// a container between two regions' networks.
//
//	relayd --route LISTEN=TARGET[@DELAY] [--route ...]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rustynet/rustynet/internal/relay"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

type routes []relay.Route

func (r *routes) String() string { return fmt.Sprint(*r) }

func (r *routes) Set(s string) error {
	rt, err := relay.ParseRoute(s)
	if err != nil {
		return err
	}
	*r = append(*r, rt)
	return nil
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("relayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rs routes
	fs.Var(&rs, "route", "LISTEN=TARGET[@DELAY]: accept on LISTEN, relay to TARGET, each direction DELAY late (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(rs) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "relayd: want one or more --route LISTEN=TARGET[@DELAY], and no arguments")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, r := range rs {
		log.Info("relaying", "listen", r.Listen, "target", r.Target, "delay", r.Delay)
	}
	if err := relay.Serve(ctx, log, rs); err != nil {
		log.Error("relayd", "err", err)
		return 1
	}
	return 0
}
