// Command loadclient is the DR drills' load client (internal/drload), run
// in a container: it writes through every replica in turn and prints one
// JSON line per write on stdout.
//
//	loadclient --controllers URL,URL,... --ca FILE --auth-key-file FILE --duration D
//	           [--registrations-per-minute R] [--endpoint-reports-per-minute E] [--prefix P] [--out FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/internal/drload"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("loadclient", flag.ContinueOnError)
	fs.SetOutput(stderr)
	controllers := fs.String("controllers", "", "the replicas' URLs, comma-separated (required)")
	caFile := fs.String("ca", "", "PEM file of the replicas' CA (required)")
	keyFile := fs.String("auth-key-file", "", "file holding a reusable pre-auth key (required)")
	duration := fs.Duration("duration", time.Minute, "how long to write")
	regs := fs.Float64("registrations-per-minute", 60, "registrations a minute")
	reports := fs.Float64("endpoint-reports-per-minute", 60, "endpoint reports a minute, of the nodes registered")
	prefix := fs.String("prefix", "load-", "hostname prefix of the nodes registered")
	outFile := fs.String("out", "", "write the records to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "loadclient: "+format+"\n", a...)
		return 2
	}
	if *controllers == "" || *caFile == "" || *keyFile == "" || fs.NArg() > 0 {
		return usage("--controllers, --ca and --auth-key-file are required, and nothing else")
	}
	if *duration <= 0 || *duration > 2*time.Hour || *regs < 0 || *reports < 0 || *regs > 6000 || *reports > 6000 {
		return usage("--duration must be 0 to 2h, the rates 0 to 6000 a minute")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return usage("--ca: %v", err)
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return usage("--auth-key-file: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := drload.Config{Controllers: strings.Split(*controllers, ","), CAPEM: ca, AuthKey: strings.TrimSpace(string(key)),
		Prefix: *prefix, Duration: *duration, RegistrationsPerMinute: *regs, EndpointReportsPerMinute: *reports}
	out := stdout
	if *outFile != "" {
		f, err := os.Create(*outFile)
		if err != nil {
			return usage("--out: %v", err)
		}
		out = f
		defer func() {
			if err := f.Close(); err != nil && code == 0 {
				fmt.Fprintf(stderr, "loadclient: %v\n", err)
				code = 1
			}
		}()
	}
	if err := drload.Run(ctx, cfg, out); err != nil {
		fmt.Fprintf(stderr, "loadclient: %v\n", err)
		return 1
	}
	return 0
}
