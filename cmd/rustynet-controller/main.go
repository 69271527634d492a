// Command rustynet-controller runs the Rustynet controller and administers
// it through its admin socket.
//
//	rustynet-controller serve   --data-dir DIR [--listen :8443] [--metrics-listen 127.0.0.1:9469] [--tls-san NAME]... [--tls-cert FILE --tls-key FILE] [--ready-file FILE]
//	                            [--store etcd --etcd-endpoints URL[,URL...] [--etcd-ca FILE --etcd-cert FILE --etcd-key FILE] [--etcd-prefix P] --advertise-url https://HOST:PORT]
//	rustynet-controller authkey create|list|revoke ...
//	rustynet-controller node    list|remove|rename ...
//	rustynet-controller policy  set FILE | get
//	rustynet-controller backup  --data-dir DIR --out FILE [--format native|logical]
//	rustynet-controller restore --data-dir DIR [--format native|logical] FILE
//	rustynet-controller restore --format logical --store etcd --etcd-endpoints URL[,URL...] [--etcd-prefix P] FILE
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/ipam"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/atomicfile"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/internal/config"
	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/policies"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultDataDir = "/var/lib/rustynet-controller"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetIn(stdin)
	return cli.Execute(root, args, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := cli.New("rustynet-controller", versionString(), "the Rustynet controller and its admin CLI",
		`rustynet-controller serve runs the controller: the node API, IPAM, ACL
policy and netmaps, on an embedded bbolt store or a shared etcd. The other
commands administer a running controller through its admin socket in the
data dir (--data-dir, default `+defaultDataDir+`), or back its store up and
restore it.

Exit status:
`+exitCodes)
	cli.ManSection(root, "8")
	root.AddCommand(serveCmd(),
		group("authkey", "pre-auth keys: create, list, revoke", authkeyCreateCmd(), authkeyListCmd(), authkeyRevokeCmd()),
		group("node", "registered nodes: list, remove, rename", nodeListCmd(), nodeRemoveCmd(), nodeRenameCmd()),
		group("policy", "the ACL policy: set, get", policySetCmd(), policyGetCmd()),
		backupCmd(), restoreCmd(), versionCmd())
	return root
}

// exitCodes is the help text of the exit statuses, internal/cli's.
const exitCodes = `  0  success
  1  the command failed: the controller refused it or is not running, or the
     store, a file or the network failed; the message says why
  2  usage error: unknown command or flag, a flag of another command, a bad
     flag value, a missing or extra argument, a refused --config file; nothing
     was done`

func versionString() string {
	return fmt.Sprintf("%s (capability version %d, oldest client served %d)", version, api.CurrentCapabilityVersion, api.MinSupportedCapabilityVersion)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version and the capability versions served (as --version does)",
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(c.OutOrStdout(), "rustynet-controller %s\n", versionString())
			return nil
		},
	}
}

// group is a command that only groups others.
func group(name, short string, cmds ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: name, Short: short}
	g.AddCommand(cmds...)
	return g
}

// describe sets a command's usage line, help and arguments.
func describe(c *cobra.Command, use, short, long string, args cobra.PositionalArgs) {
	c.Use, c.Short, c.Args = use, short, args
	c.DisableFlagsInUseLine = true
	c.Long = long
	if long == "" {
		c.Long = short + "."
	}
	c.Long += "\n\nExit status:\n" + exitCodes
}

// dataDir defines --data-dir, which every command takes.
func dataDir(fs *pflag.FlagSet) *string {
	return fs.String("data-dir", defaultDataDir, "controller data directory")
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, strings.Split(v, ",")...); return nil }
func (l *stringList) Type() string       { return "strings" }

// IsRepeatable says a config file may give a list (internal/config).
func (l *stringList) IsRepeatable() bool { return true }

func serveCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "serve [--data-dir DIR] [--config FILE] [--listen ADDR] [--store bolt|etcd] [flags]", "run the controller", `Runs the controller: the node API over HTTPS (--listen), Prometheus metrics
(--metrics-listen), and the admin socket in the data dir. With --config, the
settings of a YAML file whose keys are these flags' names; a flag on the
command line overrides the file. SIGHUP reloads the file's log-level and the
--policy-file.`, nil)
	fs := c.Flags()
	dir := dataDir(fs)
	listen := fs.String("listen", ":8443", "address for the node API (HTTPS)")
	metrics := fs.String("metrics-listen", "127.0.0.1:9469", "address for Prometheus metrics (HTTP); empty disables")
	v4 := fs.String("ipv4-prefix", ipam.DefaultIPv4.String(), "IPv4 prefix nodes' addresses come from")
	v6 := fs.String("ipv6-prefix", ipam.DefaultIPv6.String(), "IPv6 prefix nodes' addresses come from")
	logFormat := cli.Choice(fs, "log-format", "text", "log format", "text", "json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	var sans stringList
	fs.Var(&sans, "tls-san", "extra DNS name or IP for the server certificate (repeatable, or comma-separated)")
	tlsCert := fs.String("tls-cert", "", "serve this certificate (PEM, then any intermediates) instead of one from the controller's own CA; reloaded when it changes, never renewed by the controller (needs --tls-key)")
	tlsKey := fs.String("tls-key", "", "the private key (PEM) of --tls-cert")
	maxConns := fs.Int("max-conns", controller.DefaultMaxConns, "open API connections allowed in all; 0 for no limit")
	maxConnsPerIP := fs.Int("max-conns-per-ip", controller.DefaultMaxConnsPerIP, "open API connections allowed from one IP address; 0 for no limit")
	readyFile := fs.String("ready-file", "", "once serving, write this JSON file with the addresses served (for supervisors and tests)")
	loopback := fs.Bool("allow-loopback-endpoints", false, "accept loopback endpoints: only for a test network where every node runs on this host")
	storeKind := cli.Choice(fs, "store", "bolt", "where the state is kept: bolt (a file in the data dir; one controller) or etcd (shared by several replicas)", "bolt", "etcd")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --store etcd: the etcd cluster's client URLs, comma-separated (http(s)://HOST:PORT)")
	etcdCA := fs.String("etcd-ca", "", "with --store etcd: PEM file of the CA that signed the etcd members' certificates (for https endpoints)")
	etcdCert := fs.String("etcd-cert", "", "with --store etcd: this replica's client certificate for etcd (PEM; needs --etcd-key)")
	etcdKey := fs.String("etcd-key", "", "with --store etcd: the private key of --etcd-cert (PEM)")
	etcdPrefix := fs.String("etcd-prefix", "/rustynet/", "with --store etcd: the prefix of every key the controller keeps (one per mesh)")
	advertise := fs.String("advertise-url", "", "with --store etcd: the URL nodes reach this replica at, https://HOST:PORT, announced to them in their netmaps (required)")
	replicaID := fs.String("replica-id", "", "with --store etcd: this replica's name in the election (default: the host and port of --advertise-url)")
	configFile := fs.String("config", "", "read settings from this YAML file: its keys are these flags' names (listen, data-dir, log-level, policy-file, ...); a flag on the command line overrides it. On SIGHUP the controller reads its log-level and policy-file again")
	policyFile := fs.String("policy-file", "", "keep the ACL policy in this file (YAML, as 'policy set' takes): applied at start and on every SIGHUP, when it differs from the policy in force; a policy the file does not parse to is refused, the one in force kept")
	cryptoPolicy := fs.String("crypto-policy", "", "the crypto policy whose exceptions may turn an insecure mode on (RUSTYNET_INSECURE): a copy of policies/crypto.yaml with the operator's exception added (default: the policy built in)")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stderr := c.ErrOrStderr()
		commandLine := config.CommandLine(fs)
		if *configFile != "" {
			entries, err := config.Load(*configFile)
			if err == nil {
				err = config.Apply(*configFile, entries, fs, "config")
			}
			if err != nil {
				return cli.Usagef("--config: %v", err)
			}
		}
		grants, policyName, err := insecureGrants(*cryptoPolicy, time.Now())
		if err != nil {
			return err
		}
		var etcdCfg controller.EtcdConfig
		switch *storeKind {
		case "bolt":
			for name, v := range map[string]string{"etcd-endpoints": *etcdEndpoints, "etcd-ca": *etcdCA, "etcd-cert": *etcdCert, "etcd-key": *etcdKey, "advertise-url": *advertise, "replica-id": *replicaID} {
				if v != "" {
					return cli.Usagef("--%s is for --store etcd; the store is bolt", name)
				}
			}
		case "etcd":
			eps, err := controller.ParseEndpoints(*etcdEndpoints)
			if err != nil {
				return cli.Usagef("--etcd-endpoints: %v", err)
			}
			if *advertise == "" {
				return cli.Usagef("--store etcd needs --advertise-url https://HOST:PORT, the URL nodes reach this replica at")
			}
			etcdCfg = controller.EtcdConfig{Endpoints: eps, CA: *etcdCA, Cert: *etcdCert, Key: *etcdKey, Prefix: *etcdPrefix}
		default:
			return cli.Usagef("--store %q: want bolt or etcd", *storeKind)
		}
		unlimited := func(n int) int {
			if n <= 0 {
				return -1
			}
			return n
		}
		p4, err := netip.ParsePrefix(*v4)
		if err != nil || !p4.Addr().Is4() {
			return cli.Usagef("--ipv4-prefix %q: want an IPv4 prefix such as 100.64.0.0/10", *v4)
		}
		p6, err := netip.ParsePrefix(*v6)
		if err != nil || !p6.Addr().Is6() {
			return cli.Usagef("--ipv6-prefix %q: want an IPv6 prefix such as fd52:7573:7479::/48", *v6)
		}
		// A LevelVar, so that SIGHUP can change the level of a running
		// controller.
		level := new(slog.LevelVar)
		var l slog.Level
		if err := l.UnmarshalText([]byte(*logLevel)); err != nil {
			return cli.Usagef("--log-level %q: want debug, info, warn or error", *logLevel)
		}
		level.Set(l)
		opts := &slog.HandlerOptions{Level: level}
		var h slog.Handler
		switch *logFormat {
		case "text":
			h = slog.NewTextHandler(stderr, opts)
		case "json":
			h = slog.NewJSONHandler(stderr, opts)
		default:
			return cli.Usagef("--log-format %q: want text or json", *logFormat)
		}
		log := slog.New(h).With("component", "controller", "version", version)

		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		// SIGHUP reloads what can be reloaded: the log level (from the config
		// file) and the policy file.
		reload := make(chan struct{}, 1)
		config.OnHangup(ctx, log, func() error {
			l, err := config.ReloadLevel(*configFile, fs, commandLine, level)
			if err != nil {
				return err
			}
			log.Info("SIGHUP: reloaded the log level; the policy file next; every other setting takes effect on a restart", "log_level", l.String())
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
			return nil
		})
		return controller.Run(ctx, controller.RunConfig{
			PolicyFile:    *policyFile,
			Reload:        reload,
			DataDir:       *dir,
			Listen:        *listen,
			MetricsListen: *metrics,
			TLSNames:      sans,
			TLSCert:       *tlsCert,
			TLSKey:        *tlsKey,
			IPv4:          p4,
			IPv6:          p6,
			Logger:        log,
			Limits:        controller.Limits{MaxConns: unlimited(*maxConns), MaxConnsPerIP: unlimited(*maxConnsPerIP)},

			AllowLoopbackEndpoints: *loopback,
			ReadyFile:              *readyFile,
			Version:                version,
			Etcd:                   etcdCfg,
			AdvertiseURL:           *advertise,
			ReplicaID:              *replicaID,
			Exceptions:             grants,
			CryptoPolicy:           policyName,
		})
	}
	return c
}

// insecureGrants reads the exceptions of the crypto policy the controller
// runs under: the operator's file, whose every exception must name an
// owner and a ticket and expire at most 90 days from now (refused at
// start otherwise, with its line), or the one built in.
func insecureGrants(file string, now time.Time) ([]insecure.Grant, string, error) {
	var pol *policies.Crypto
	var err error
	if file == "" {
		pol, err = policies.ShippedCrypto()
		if err != nil {
			return nil, "", fmt.Errorf("the built-in crypto policy: %w", err)
		}
	} else {
		if pol, err = policies.LoadCrypto(file); err != nil {
			return nil, "", cli.Usagef("--crypto-policy: %v", err)
		}
		if err := pol.CheckHorizon(now); err != nil {
			return nil, "", cli.Usagef("--crypto-policy: %v", err)
		}
	}
	return insecure.GrantsOf(pol), pol.File, nil
}

func adminContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func authkeyCreateCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "create [--reusable] [--ttl 1h] [--tags tag:a,tag:b] [--name NAME] [--description TEXT]", "create a pre-auth key (prints only the key)", "", nil)
	fs := c.Flags()
	dir := dataDir(fs)
	reusable := fs.Bool("reusable", false, "the key may register more than one node")
	ttl := fs.Duration("ttl", time.Hour, "how long the key can be used")
	desc := fs.String("description", "", "what the key is for")
	name := fs.String("name", "", "bind the name of the node the key registers (single-use keys only): policy \"name:\" rules match it")
	var tags stringList
	fs.Var(&tags, "tags", "tags for nodes registered with the key, e.g. tag:web,tag:prod")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout := c.OutOrStdout()
		if *ttl < time.Second {
			return cli.Usagef("--ttl must be at least 1s")
		}
		ctx, cancel := adminContext()
		defer cancel()
		resp, err := controller.NewAdminClient(*dir).CreateAuthKey(ctx, api.CreateAuthKeyRequest{
			Reusable: *reusable, TTLSeconds: int64(*ttl / time.Second), Tags: tags, Description: *desc, Name: *name,
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, resp.Key)
		return nil
	}
	return c
}

func authkeyListCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "list [--json]", "list pre-auth keys", "", nil)
	fs := c.Flags()
	dir := dataDir(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout := c.OutOrStdout()
		ctx, cancel := adminContext()
		defer cancel()
		keys, err := controller.NewAdminClient(*dir).AuthKeys(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, keys)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tREUSABLE\tUSES\tNAME\tTAGS\tEXPIRES\tDESCRIPTION")
		now := time.Now()
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%s\t%s\t%s\t%s\n", k.ID, k.State(now), k.Reusable, k.Uses, orDash(k.Name),
				orDash(strings.Join(k.Tags, ",")), k.ExpiresAt.Local().Format(time.RFC3339), orDash(k.Description))
		}
		return tw.Flush()
	}
	return c
}

func authkeyRevokeCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "revoke ID", "revoke a pre-auth key by ID", "", cli.ExactArgs(1, "one ID (of an auth key: authkey list shows them)"))
	fs := c.Flags()
	dir := dataDir(fs)
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		ctx, cancel := adminContext()
		defer cancel()
		k, err := controller.NewAdminClient(*dir).RevokeAuthKey(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked auth key %s\n", k.ID)
		return nil
	}
	return c
}

func nodeListCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "list [--json]", "list registered nodes", "", nil)
	fs := c.Flags()
	dir := dataDir(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout := c.OutOrStdout()
		ctx, cancel := adminContext()
		defer cancel()
		nodes, err := controller.NewAdminClient(*dir).Nodes(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, nodes)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tNAMED BY\tADDRESSES\tTAGS\tBACKENDS\tONLINE\tENDPOINTS")
		for _, n := range nodes {
			addrs := make([]string, len(n.Addresses))
			for i, a := range n.Addresses {
				addrs[i] = a.Addr().String()
			}
			eps := make([]string, len(n.Endpoints))
			for i, e := range n.Endpoints {
				eps[i] = e.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", n.ID, n.Name, n.NameSource, strings.Join(addrs, ","),
				orDash(strings.Join(n.Tags, ",")), strings.Join(n.Backends, ","), n.Online, orDash(strings.Join(eps, ",")))
		}
		return tw.Flush()
	}
	return c
}

func nodeRemoveCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "remove ID-OR-NAME", "remove a node by ID or name", "", cli.ExactArgs(1, "one ID-OR-NAME (of a node: node list shows them)"))
	fs := c.Flags()
	dir := dataDir(fs)
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		ctx, cancel := adminContext()
		defer cancel()
		if err := controller.NewAdminClient(*dir).RemoveNode(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed node %s\n", pos[0])
		return nil
	}
	return c
}

func nodeRenameCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "rename ID-OR-NAME NEW-NAME", "rename a node and bind the name, so policy 'name:' rules match it", "", cli.ExactArgs(2, "ID-OR-NAME NEW-NAME"))
	fs := c.Flags()
	dir := dataDir(fs)
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		if !api.ValidName(pos[1]) {
			return cli.Usagef("%q is not a name: want a lowercase DNS label (letters, digits, dashes) that is not of the form of a node ID", pos[1])
		}
		ctx, cancel := adminContext()
		defer cancel()
		n, err := controller.NewAdminClient(*dir).UpdateNode(ctx, pos[0], api.UpdateNodeRequest{Name: pos[1]})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s is named %s (bound by the admin)\n", n.ID, n.Name)
		return nil
	}
	return c
}

func policySetCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "set FILE", "replace the ACL policy (FILE - reads stdin)", "", cli.ExactArgs(1, "one FILE (a YAML policy; - reads stdin)"))
	fs := c.Flags()
	dir := dataDir(fs)
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdin, stdout := c.InOrStdin(), c.OutOrStdout()
		in := stdin
		if pos[0] != "-" {
			f, err := os.Open(pos[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		// Read one byte past the limit to tell a policy at it from one over it.
		text, err := io.ReadAll(io.LimitReader(in, api.MaxPolicyBytes+1))
		if err != nil {
			return err
		}
		if len(text) > api.MaxPolicyBytes {
			return fmt.Errorf("%s: a policy may be at most %d bytes; this one is larger", pos[0], api.MaxPolicyBytes)
		}
		ctx, cancel := adminContext()
		defer cancel()
		if _, err := controller.NewAdminClient(*dir).SetPolicy(ctx, string(text)); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "policy set")
		return nil
	}
	return c
}

func policyGetCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "get [--json]", "print the ACL policy in force", "", nil)
	fs := c.Flags()
	dir := dataDir(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		ctx, cancel := adminContext()
		defer cancel()
		p, err := controller.NewAdminClient(*dir).Policy(ctx)
		if err != nil {
			return err
		}
		switch {
		case *asJSON:
			return printJSON(stdout, p)
		case p.Default:
			fmt.Fprintln(stderr, "no policy set: every node may reach every other")
		default:
			fmt.Fprint(stdout, p.Policy)
		}
		return nil
	}
	return c
}

func backupCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "backup --out FILE [--format native|logical]", "write a consistent copy of the store to a file", "", nil)
	fs := c.Flags()
	dir := dataDir(fs)
	out := fs.String("out", "", "file to write the backup to (required)")
	format := cli.Choice(fs, "format", "native", "native (the store's own: a bbolt file, or an etcd snapshot) or logical (JSON that restores into either store)", "native", "logical")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stderr := c.ErrOrStderr()
		if *format != "native" && *format != "logical" {
			return cli.Usagef("--format %q: want native or logical", *format)
		}
		if *out == "" {
			return cli.Usagef("--out FILE is required")
		}
		tmp, err := os.CreateTemp(filepath.Dir(*out), ".backup-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if err := tmp.Chmod(0o600); err != nil {
			tmp.Close()
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		n, err := controller.NewAdminClient(*dir).BackupAs(ctx, *format, tmp)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := rename(tmp.Name(), *out); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d bytes to %s\n", n, *out)
		return nil
	}
	return c
}

// restoreChecked is called when restore has checked the data dir (holding
// its lock) and before it moves or writes anything; tests start a
// controller there.
var restoreChecked = func() {}

// rename renames a file and syncs its directory, so the rename survives a
// power loss; a variable so tests can see backup and restore use it.
var rename = atomicfile.Rename

// restore holds the data dir's lock (as a running controller does) from
// before its checks until the restored store is in place, so no controller
// can start between the check and the rename and serve a store that is
// then moved aside.
func restoreCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "restore FILE [--format native|logical] [--force] [--store bolt|etcd ...]", "restore a backup into a stopped controller's data dir, or a logical export into an empty etcd prefix", `Restores a backup into the data dir of a stopped controller (a running one is
refused), moving an existing store aside with --force; or, with --store etcd,
a logical export (--format logical) into an empty --etcd-prefix.`, cli.ExactArgs(1, "one FILE (a backup)"))
	fs := c.Flags()
	dir := dataDir(fs)
	force := fs.Bool("force", false, "move an existing store aside instead of refusing (bolt only)")
	format := cli.Choice(fs, "format", "native", "native (a bbolt file from backup) or logical (the JSON of backup --format logical, from either store)", "native", "logical")
	storeKind := cli.Choice(fs, "store", "bolt", "restore into: bolt (the data dir's store file) or etcd (an empty --etcd-prefix; logical format only)", "bolt", "etcd")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --store etcd: the cluster's client URLs, comma-separated")
	etcdCA := fs.String("etcd-ca", "", "with --store etcd: PEM file of the etcd members' CA")
	etcdCert := fs.String("etcd-cert", "", "with --store etcd: client certificate (PEM)")
	etcdKey := fs.String("etcd-key", "", "with --store etcd: client key (PEM)")
	etcdPrefix := fs.String("etcd-prefix", "/rustynet/", "with --store etcd: the prefix to restore under (must hold nothing)")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stderr := c.ErrOrStderr()
		if *format != "native" && *format != "logical" {
			return cli.Usagef("--format %q: want native or logical", *format)
		}
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		switch *storeKind {
		case "bolt":
		case "etcd":
			if *format != "logical" {
				return cli.Usagef("restore --store etcd takes a logical export (--format logical); an etcd snapshot restores with etcdutl snapshot restore")
			}
			eps, err := controller.ParseEndpoints(*etcdEndpoints)
			if err != nil {
				return cli.Usagef("--etcd-endpoints: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			st, closeStore, err := controller.OpenEtcd(ctx, controller.EtcdConfig{Endpoints: eps, CA: *etcdCA, Cert: *etcdCert, Key: *etcdKey, Prefix: *etcdPrefix}, nil)
			if err != nil {
				return err
			}
			defer closeStore()
			e, err := store.Import(ctx, st, f)
			if err != nil {
				return fmt.Errorf("restore into etcd %s: %w", *etcdPrefix, err)
			}
			var rev uint64
			if err := st.View(ctx, func(tx store.Tx) error { rev = tx.Revision(); return nil }); err != nil {
				return fmt.Errorf("restore into etcd %s: reading the revision back: %w", *etcdPrefix, err)
			}
			fmt.Fprintf(stderr, "restored %s into etcd prefix %s: %d nodes, %d auth keys, revision %d\n", pos[0], *etcdPrefix, len(e.Nodes), len(e.AuthKeys), rev)
			return nil
		default:
			return cli.Usagef("--store %q: want bolt or etcd", *storeKind)
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return err
		}
		unlock, err := controller.LockDataDir(*dir)
		if errors.Is(err, controller.ErrLocked) {
			// err names the lock file and asks the same question; say it once.
			return fmt.Errorf("refusing to restore: a controller is running on data dir %s, or another restore is (%w); stop it first",
				*dir, controller.ErrLocked)
		}
		if err != nil {
			return err
		}
		defer func() {
			if uerr := unlock(); uerr != nil && err == nil {
				err = fmt.Errorf("release the data dir lock: %w", uerr)
			}
		}()
		dst := filepath.Join(*dir, controller.StoreFile)
		_, statErr := os.Lstat(dst)
		exists := statErr == nil
		switch {
		case exists && !*force:
			return fmt.Errorf("%s exists; pass --force to move it aside", dst)
		case exists:
			// The lock keeps out controllers of this build; holding the store
			// open proves no older one (which took no lock) is using it.
			st, err := bolt.Open(dst)
			if err != nil {
				return fmt.Errorf("cannot restore over %s: %w", dst, err)
			}
			st.Close()
		case !errors.Is(statErr, os.ErrNotExist):
			return statErr
		}
		restoreChecked()
		if exists {
			aside := dst + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
			if err := rename(dst, aside); err != nil {
				return fmt.Errorf("move the existing store aside: %w", err)
			}
			fmt.Fprintf(stderr, "moved the existing store to %s\n", aside)
		}
		if *format == "logical" {
			if err := restoreLogical(f, dst); err != nil {
				return err
			}
		} else if err := bolt.Restore(f, dst); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "restored %s into %s\n", pos[0], dst)
		return nil
	}
	return c
}

// restoreLogical loads a logical export into a new bbolt store at dst,
// built beside it and renamed into place only when whole.
func restoreLogical(r io.Reader, dst string) (err error) {
	e, err := store.ParseExport(r)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp := dst + ".restore-logical"
	os.Remove(tmp)
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	st, err := bolt.Open(tmp)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := st.Load(context.Background(), e); err != nil {
		st.Close()
		return fmt.Errorf("restore: %w", err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return rename(tmp, dst)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
