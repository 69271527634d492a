// Command rustynetd is the Rustynet node daemon.
//
//	rustynetd --state-dir DIR --controller URL[,URL...] --controller-ca FILE [--auth-key KEY]
//	          [--backend wireguard] [--interface rn0 | --netstack] [--metrics-listen 127.0.0.1:9470] [--probe-interval 10s] [--ready-file FILE]
//
// --controller takes the controller's URL, https://HOST:PORT, or the URLs
// of its replicas separated by commas (no two alike), all with
// certificates from the one CA of --controller-ca. The node uses one
// replica at a time and moves to the next when it fails (no connection, a
// TLS failure, a timeout, a 503, or another 5xx that is not the
// controller's refusal); it follows the netmap from the revision it has,
// and its dataplane stays up meanwhile. Replicas that the controller
// announces are tried first; those given here stay the fallback. While no
// replica answers, the node tries again about every second (with jitter),
// so it is back within about 2 s of one answering.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/internal/config"
	"github.com/rustynet/rustynet/internal/gometrics"
	"github.com/rustynet/rustynet/node"
	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/backend/quic"
	"github.com/rustynet/rustynet/node/backend/wireguard"
	"github.com/rustynet/rustynet/node/control"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// registry holds the backends this binary is built with. It is the only
// place that imports backend implementations.
func registry() *backend.Registry {
	var r backend.Registry
	wireguard.Register(&r)
	quic.Register(&r)
	return &r
}

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Execute(newRoot(), args, stdout, stderr)
}

// exitCodes is the help text of the exit statuses.
const exitCodes = `  0  the daemon stopped when asked (SIGINT, SIGTERM), or --version,
     --list-backends or --measure-route-apply did what was asked
  1  the daemon failed while running (its log says why), or a measurement
     failed
  2  usage error: an unknown flag, a bad flag value, an argument, a refused
     --config file, or settings the node refuses at start (a missing
     --controller, an unreadable CA or key file); nothing was started`

func newRoot() *cobra.Command {
	reg := registry()
	root := cli.New("rustynetd", version, "the Rustynet node daemon",
		`rustynetd runs a Rustynet node: it registers with the controller
(--controller), follows its netmap, and runs the data plane on a kernel TUN
(--interface) or a userspace network stack (--netstack). With --config, the
settings of a YAML file whose keys are these flags' names; a flag on the
command line overrides the file. SIGHUP reloads the file's log-level.

--controller takes the controller's URL, https://HOST:PORT, or the URLs of its
replicas separated by commas, all with certificates from the one CA of
--controller-ca; the node uses one at a time and moves to the next when it
fails, and its data plane stays up meanwhile.

Shell completion: rustynetd completion bash|zsh|fish|powershell.

Exit status:
`+exitCodes)
	cli.ManSection(root, "8")
	root.Use = "rustynetd --controller URL[,URL...] --controller-ca FILE [--state-dir DIR] [--auth-key KEY] [flags]"
	root.DisableFlagsInUseLine = true
	root.Args = cli.ExactArgs(0, "no arguments (every setting is a flag)")
	fs := root.Flags()
	stateDir := fs.String("state-dir", "/var/lib/rustynet", "directory for keys, the credential and the cached netmap (created 0700)")
	controllerURL := fs.String("controller", "", "controller URL, https://HOST:PORT, or the URLs of its replicas separated by commas, tried in turn when one fails (required)")
	controllerCA := fs.String("controller-ca", "", "PEM file of the controller's CA, DATA_DIR/tls/ca.pem on the controller, one for every replica (required)")
	authKey := fs.String("auth-key", "", "pre-auth key to register with, when the state dir holds no credential")
	authKeyFile := fs.String("auth-key-file", "", "read the pre-auth key from this file instead (keeps it out of the process list)")
	hostname := fs.String("hostname", "", "name to register as (default: the machine's hostname)")
	backendName := fs.String("backend", "", fmt.Sprintf("force a data-plane backend, one of %v (default: the controller's policy chooses, WireGuard unless a rule says otherwise)", reg.Names()))
	iface := fs.String("interface", node.DefaultInterface, "kernel TUN interface to create (needs CAP_NET_ADMIN)")
	netstack := fs.Bool("netstack", false, "use a userspace network stack instead of a kernel TUN (no privileges needed)")
	port := fs.Uint("listen-port", 0, "data-plane UDP port (default: the last one used, or a free one)")
	mtu := fs.Int("mtu", node.DefaultMTU, "MTU of the packet device")
	metricsListen := fs.String("metrics-listen", "127.0.0.1:9470", "address to serve Prometheus metrics on (HTTP; loopback by default); empty disables")
	probeInterval := fs.Duration("probe-interval", node.ProbeInterval, fmt.Sprintf("how often to probe a sample of up to %d peers through the tunnel (the peer reachability SLI); 0 disables", node.ProbePeers))
	probePeers := fs.Int("probe-peers", node.ProbePeers, "how many peers each probe round probes, at random; 0 probes every peer")
	probeLog := fs.String("probe-log", "", "append one JSON line per probe to this file (time, peer, result, round trip), for drills")
	netmapLog := fs.String("netmap-log", "", "append one JSON line per netmap applied to this file (time, revision, peers added or changed, removed), for drills")
	pqOn := fs.Bool("pq", true, "announce and run the post-quantum preshared-key exchange with peers whose modes (the controller's pq policy) ask for it; --pq=false runs as a node without it")
	pqPeriod := fs.Duration("pq-period", node.DefaultPQPeriod, "how often a pair agrees a new post-quantum preshared key")
	logFormat := cli.Choice(fs, "log-format", "text", "log format", "text", "json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	readyFile := fs.String("ready-file", "", "once the dataplane is up, write this JSON file with the local API socket, device and port (for supervisors and tests)")
	listBackends := fs.Bool("list-backends", false, "print the backends this build has, one per line, each with what it claims (preshared-keys: it carries the post-quantum preshared key; post-quantum: its own key exchange is), and exit")
	measureRoutes := fs.Int("measure-route-apply", 0, "time the router installing this many routes (in 198.18.0.0/15, the block set aside for benchmarks) on a new TUN named by --interface, from none, --measure-repetitions times; print the latencies as JSON and exit (needs CAP_NET_ADMIN; the release gate runs it in a namespace of its own)")
	measureReps := fs.Int("measure-repetitions", 100, "repetitions for --measure-route-apply")
	pprofListen := fs.String("debug-pprof-listen", "", "for debugging: serve Go's profiles (net/http/pprof: /debug/pprof/profile?seconds=N for CPU, heap, goroutine, ...) over HTTP on this loopback address, such as 127.0.0.1:6060; only a loopback address is accepted, since profiles reveal the process's internals; off (empty) by default")
	configFile := fs.String("config", "", "read settings from this YAML file: its keys are these flags' names (state-dir, controller, log-level, ...); a flag on the command line overrides it. On SIGHUP the daemon reads its log-level again")
	root.RunE = func(c *cobra.Command, _ []string) error {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		commandLine := config.CommandLine(fs)
		if *configFile != "" {
			entries, err := config.Load(*configFile)
			if err == nil {
				err = config.Apply(*configFile, entries, fs, configActions...)
			}
			if err != nil {
				return cli.Usagef("--config: %v", err)
			}
		}
		if *listBackends {
			for _, name := range reg.Names() {
				line := name
				if reg.PresharedKeys(name) {
					line += " preshared-keys"
				}
				if reg.PostQuantum(name) {
					line += " post-quantum"
				}
				fmt.Fprintln(stdout, line)
			}
			return nil
		}
		usage := cli.Usagef
		if *measureRoutes != 0 {
			return measureRouteApply(*iface, *mtu, *measureRoutes, *measureReps, stdout)
		}
		if *controllerURL == "" || *controllerCA == "" {
			return usage("--controller and --controller-ca are required")
		}
		controllers, err := control.ParseURLs(*controllerURL)
		if err != nil {
			return usage("--controller: %v", err)
		}
		if *port > 65535 {
			return usage("--listen-port %d is not a port", *port)
		}
		if *authKeyFile != "" {
			b, err := os.ReadFile(*authKeyFile)
			if err != nil {
				return usage("--auth-key-file: %v", err)
			}
			*authKey = string(trimSpace(b))
		}
		if *hostname == "" {
			*hostname, _ = os.Hostname()
		}
		if *probePeers < 0 {
			return usage("--probe-peers %d: want 0 (every peer) or more", *probePeers)
		}
		var drillLogs [2]io.Writer // --probe-log, --netmap-log
		for i, l := range []struct{ flag, path string }{{"--probe-log", *probeLog}, {"--netmap-log", *netmapLog}} {
			if l.path == "" {
				continue
			}
			f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				return usage("%s: %v", l.flag, err)
			}
			defer f.Close()
			drillLogs[i] = f
		}
		// A LevelVar, so that SIGHUP can change the level of a running node.
		level := new(slog.LevelVar)
		var l slog.Level
		if err := l.UnmarshalText([]byte(*logLevel)); err != nil {
			return usage("--log-level %q: want debug, info, warn or error", *logLevel)
		}
		level.Set(l)
		var h slog.Handler
		switch *logFormat {
		case "text":
			h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
		case "json":
			h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
		}
		log := slog.New(h).With("component", "rustynetd", "version", version)

		promReg := prometheus.NewRegistry()
		promReg.MustRegister(gometrics.Collector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if *pprofListen != "" {
			if err := loopbackOnly(*pprofListen); err != nil {
				return usage("--debug-pprof-listen: %v", err)
			}
		}
		if *pqPeriod < time.Second {
			return usage("--pq-period %v: want at least 1s", *pqPeriod)
		}
		n, err := node.New(node.Config{
			StateDir:       *stateDir,
			ControllerURLs: controllers,
			ControllerCA:   *controllerCA,
			AuthKey:        *authKey,
			Hostname:       *hostname,
			Backend:        *backendName,
			Registry:       reg,
			Interface:      *iface,
			Netstack:       *netstack,
			ListenPort:     uint16(*port),
			MTU:            *mtu,
			ReadyFile:      *readyFile,
			Logger:         log,
			Registerer:     promReg,
			Version:        version,
			ProbeInterval:  probeInterval0(*probeInterval),
			ProbePeers:     probePeers0(*probePeers),
			ProbeLog:       drillLogs[0],
			NetmapLog:      drillLogs[1],
			NoPQ:           !*pqOn,
			PQPeriod:       *pqPeriod,
		})
		if err != nil {
			return usage("%v", err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		config.OnHangup(ctx, log, func() error {
			l, err := config.ReloadLevel(*configFile, fs, commandLine, level)
			if err == nil {
				log.Info("SIGHUP: reloaded the log level; every other setting takes effect on a restart", "log_level", l.String())
			}
			return err
		})
		if *metricsListen != "" {
			ln, err := net.Listen("tcp", *metricsListen)
			if err != nil {
				log.Error("metrics listener", "err", err)
				return cli.Exit(cli.ExitNo, nil) // logged
			}
			mux := http.NewServeMux()
			mux.Handle("/metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
			log.Info("serving metrics", "addr", ln.Addr().String())
		}
		if *pprofListen != "" {
			ln, err := net.Listen("tcp", *pprofListen)
			if err != nil {
				log.Error("pprof listener", "err", err)
				return cli.Exit(cli.ExitNo, nil) // logged
			}
			srv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
			log.Warn("serving Go profiles for debugging (--debug-pprof-listen)", "addr", ln.Addr().String())
		}
		if err := n.Run(ctx); err != nil {
			log.Error("rustynetd stopped", "err", err)
			return cli.Exit(cli.ExitNo, nil) // logged
		}
		log.Info("rustynetd stopped")
		return nil
	}
	return root
}

// configActions are flags a config file may not set: the file's own,
// and those that make the daemon do something else than run.
var configActions = []string{"config", "version", "help", "list-backends", "measure-route-apply", "measure-repetitions"}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// probeInterval0 maps the flag's 0 ("disable") to node.Config's negative
// value (0 there takes the default).
func probeInterval0(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// probePeers0 maps the flag's 0 ("every peer") to node.Config's negative
// value (0 there takes the default).
func probePeers0(k int) int {
	if k == 0 {
		return -1
	}
	return k
}
