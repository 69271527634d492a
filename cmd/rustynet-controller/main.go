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
	"flag"
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

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/ipam"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/atomicfile"
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

const usage = `usage: rustynet-controller <command> [flags]

commands:
  serve            run the controller
  authkey create   create a pre-auth key (prints only the key)
  authkey list     list pre-auth keys
  authkey revoke   revoke a pre-auth key by ID
  node list        list registered nodes
  node remove      remove a node by ID or name
  node rename      rename a node and bind the name, so policy "name:" rules match it
  policy set FILE  replace the ACL policy ("-" reads stdin)
  policy get       print the ACL policy in force
  backup           write a consistent copy of the store to a file (--format native|logical)
  restore FILE     restore a backup into a stopped controller's data dir, or a
                   logical export into an empty etcd prefix (--store etcd)
  version          print the version

Every command takes --data-dir DIR (default ` + defaultDataDir + `).
Run "rustynet-controller <command> -h" for its flags.
`

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(args, stdin, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "rustynet-controller: %s\n", ue.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "rustynet-controller: %s\n", err)
		return 1
	}
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 && (cmd == "authkey" || cmd == "node" || cmd == "policy") {
		sub, rest = rest[0], rest[1:]
	}
	switch cmd + " " + sub {
	case "serve ":
		return serve(rest, stderr)
	case "authkey create":
		return authkeyCreate(rest, stdout, stderr)
	case "authkey list":
		return authkeyList(rest, stdout, stderr)
	case "authkey revoke":
		return authkeyRevoke(rest, stdout, stderr)
	case "node list":
		return nodeList(rest, stdout, stderr)
	case "node remove":
		return nodeRemove(rest, stdout, stderr)
	case "node rename":
		return nodeRename(rest, stdout, stderr)
	case "policy set":
		return policySet(rest, stdin, stdout, stderr)
	case "policy get":
		return policyGet(rest, stdout, stderr)
	case "backup ":
		return backup(rest, stderr)
	case "restore ":
		return restore(rest, stderr)
	case "version ", "-version ", "--version ":
		fmt.Fprintf(stdout, "rustynet-controller %s (capability version %d, oldest client served %d)\n",
			version, api.CurrentCapabilityVersion, api.MinSupportedCapabilityVersion)
		return nil
	case "help ", "-h ", "-help ", "--help ":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", strings.TrimSpace(cmd+" "+sub))}
}

// flagSet returns a FlagSet with --data-dir.
func flagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", defaultDataDir, "controller data directory")
	return fs, dir
}

// parse parses flags wherever they appear among the positional arguments
// and checks the number of positionals.
func parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		want := "no arguments"
		if len(positional) > 0 {
			want = strings.Join(positional, " ")
		}
		return nil, usageError{fmt.Sprintf("%s: want %s, got %q", fs.Name(), want, pos)}
	}
	return pos, nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, strings.Split(v, ",")...); return nil }

// IsRepeatable says a config file may give a list (internal/config).
func (l *stringList) IsRepeatable() bool { return true }

func serve(args []string, stderr io.Writer) error {
	fs, dir := flagSet("serve", stderr)
	listen := fs.String("listen", ":8443", "address for the node API (HTTPS)")
	metrics := fs.String("metrics-listen", "127.0.0.1:9469", "address for Prometheus metrics (HTTP); empty disables")
	v4 := fs.String("ipv4-prefix", ipam.DefaultIPv4.String(), "IPv4 prefix nodes' addresses come from")
	v6 := fs.String("ipv6-prefix", ipam.DefaultIPv6.String(), "IPv6 prefix nodes' addresses come from")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	var sans stringList
	fs.Var(&sans, "tls-san", "extra DNS name or IP for the server certificate (repeatable, or comma-separated)")
	tlsCert := fs.String("tls-cert", "", "serve this certificate (PEM, then any intermediates) instead of one from the controller's own CA; reloaded when it changes, never renewed by the controller (needs --tls-key)")
	tlsKey := fs.String("tls-key", "", "the private key (PEM) of --tls-cert")
	maxConns := fs.Int("max-conns", controller.DefaultMaxConns, "open API connections allowed in all; 0 for no limit")
	maxConnsPerIP := fs.Int("max-conns-per-ip", controller.DefaultMaxConnsPerIP, "open API connections allowed from one IP address; 0 for no limit")
	readyFile := fs.String("ready-file", "", "once serving, write this JSON file with the addresses served (for supervisors and tests)")
	loopback := fs.Bool("allow-loopback-endpoints", false, "accept loopback endpoints: only for a test network where every node runs on this host")
	storeKind := fs.String("store", "bolt", "where the state is kept: bolt (a file in the data dir; one controller) or etcd (shared by several replicas)")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --store etcd: the etcd cluster's client URLs, comma-separated (http(s)://HOST:PORT)")
	etcdCA := fs.String("etcd-ca", "", "with --store etcd: PEM file of the CA that signed the etcd members' certificates (for https endpoints)")
	etcdCert := fs.String("etcd-cert", "", "with --store etcd: this replica's client certificate for etcd (PEM; needs --etcd-key)")
	etcdKey := fs.String("etcd-key", "", "with --store etcd: the private key of --etcd-cert (PEM)")
	etcdPrefix := fs.String("etcd-prefix", "/rustynet/", "with --store etcd: the prefix of every key the controller keeps (one per mesh)")
	advertise := fs.String("advertise-url", "", "with --store etcd: the URL nodes reach this replica at, https://HOST:PORT, announced to them in their netmaps (required)")
	replicaID := fs.String("replica-id", "", "with --store etcd: this replica's name in the election (default: the host and port of --advertise-url)")
	configFile := fs.String("config", "", "read settings from this YAML file: its keys are these flags' names (listen, data-dir, log-level, policy-file, ...); a flag on the command line overrides it. On SIGHUP the controller reads its log-level and policy-file again")
	policyFile := fs.String("policy-file", "", "keep the ACL policy in this file (YAML, as `policy set` takes): applied at start and on every SIGHUP, when it differs from the policy in force; a policy the file does not parse to is refused, the one in force kept")
	cryptoPolicy := fs.String("crypto-policy", "", "the crypto policy whose exceptions may turn an insecure mode on (RUSTYNET_INSECURE): a copy of policies/crypto.yaml with the operator's exception added (default: the policy built in)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	commandLine := config.CommandLine(fs)
	if *configFile != "" {
		entries, err := config.Load(*configFile)
		if err == nil {
			err = config.Apply(*configFile, entries, fs, "config")
		}
		if err != nil {
			return usageError{"--config: " + err.Error()}
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
				return usageError{fmt.Sprintf("--%s is for --store etcd; the store is bolt", name)}
			}
		}
	case "etcd":
		eps, err := controller.ParseEndpoints(*etcdEndpoints)
		if err != nil {
			return usageError{"--etcd-endpoints: " + err.Error()}
		}
		if *advertise == "" {
			return usageError{"--store etcd needs --advertise-url https://HOST:PORT, the URL nodes reach this replica at"}
		}
		etcdCfg = controller.EtcdConfig{Endpoints: eps, CA: *etcdCA, Cert: *etcdCert, Key: *etcdKey, Prefix: *etcdPrefix}
	default:
		return usageError{fmt.Sprintf("--store %q: want bolt or etcd", *storeKind)}
	}
	unlimited := func(n int) int {
		if n <= 0 {
			return -1
		}
		return n
	}
	p4, err := netip.ParsePrefix(*v4)
	if err != nil || !p4.Addr().Is4() {
		return usageError{fmt.Sprintf("--ipv4-prefix %q: want an IPv4 prefix such as 100.64.0.0/10", *v4)}
	}
	p6, err := netip.ParsePrefix(*v6)
	if err != nil || !p6.Addr().Is6() {
		return usageError{fmt.Sprintf("--ipv6-prefix %q: want an IPv6 prefix such as fd52:7573:7479::/48", *v6)}
	}
	// A LevelVar, so that SIGHUP can change the level of a running
	// controller.
	level := new(slog.LevelVar)
	var l slog.Level
	if err := l.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", *logLevel)}
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
		return usageError{fmt.Sprintf("--log-format %q: want text or json", *logFormat)}
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
			return nil, "", usageError{"--crypto-policy: " + err.Error()}
		}
		if err := pol.CheckHorizon(now); err != nil {
			return nil, "", usageError{"--crypto-policy: " + err.Error()}
		}
	}
	return insecure.GrantsOf(pol), pol.File, nil
}

func adminContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func authkeyCreate(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("authkey create", stderr)
	reusable := fs.Bool("reusable", false, "the key may register more than one node")
	ttl := fs.Duration("ttl", time.Hour, "how long the key can be used")
	desc := fs.String("description", "", "what the key is for")
	name := fs.String("name", "", "bind the name of the node the key registers (single-use keys only): policy \"name:\" rules match it")
	var tags stringList
	fs.Var(&tags, "tags", "tags for nodes registered with the key, e.g. tag:web,tag:prod")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ttl < time.Second {
		return usageError{"--ttl must be at least 1s"}
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

func authkeyList(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("authkey list", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
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

func authkeyRevoke(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("authkey revoke", stderr)
	pos, err := parse(fs, args, "ID")
	if err != nil {
		return err
	}
	ctx, cancel := adminContext()
	defer cancel()
	k, err := controller.NewAdminClient(*dir).RevokeAuthKey(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked auth key %s\n", k.ID)
	return nil
}

func nodeList(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("node list", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
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

func nodeRemove(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("node remove", stderr)
	pos, err := parse(fs, args, "ID")
	if err != nil {
		return err
	}
	ctx, cancel := adminContext()
	defer cancel()
	if err := controller.NewAdminClient(*dir).RemoveNode(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed node %s\n", pos[0])
	return nil
}

func nodeRename(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("node rename", stderr)
	pos, err := parse(fs, args, "ID-OR-NAME", "NEW-NAME")
	if err != nil {
		return err
	}
	if !api.ValidName(pos[1]) {
		return usageError{fmt.Sprintf("node rename: %q is not a name: want a lowercase DNS label (letters, digits, dashes) that is not of the form of a node ID", pos[1])}
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

func policySet(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, dir := flagSet("policy set", stderr)
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
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

func policyGet(args []string, stdout, stderr io.Writer) error {
	fs, dir := flagSet("policy get", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
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

func backup(args []string, stderr io.Writer) error {
	fs, dir := flagSet("backup", stderr)
	out := fs.String("out", "", "file to write the backup to (required)")
	format := fs.String("format", "native", "native (the store's own: a bbolt file, or an etcd snapshot) or logical (JSON that restores into either store)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *format != "native" && *format != "logical" {
		return usageError{fmt.Sprintf("backup: --format %q: want native or logical", *format)}
	}
	if *out == "" {
		return usageError{"backup: --out FILE is required"}
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
func restore(args []string, stderr io.Writer) (err error) {
	fs, dir := flagSet("restore", stderr)
	force := fs.Bool("force", false, "move an existing store aside instead of refusing (bolt only)")
	format := fs.String("format", "native", "native (a bbolt file from `backup`) or logical (the JSON of `backup --format logical`, from either store)")
	storeKind := fs.String("store", "bolt", "restore into: bolt (the data dir's store file) or etcd (an empty --etcd-prefix; logical format only)")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --store etcd: the cluster's client URLs, comma-separated")
	etcdCA := fs.String("etcd-ca", "", "with --store etcd: PEM file of the etcd members' CA")
	etcdCert := fs.String("etcd-cert", "", "with --store etcd: client certificate (PEM)")
	etcdKey := fs.String("etcd-key", "", "with --store etcd: client key (PEM)")
	etcdPrefix := fs.String("etcd-prefix", "/rustynet/", "with --store etcd: the prefix to restore under (must hold nothing)")
	pos, err := parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	if *format != "native" && *format != "logical" {
		return usageError{fmt.Sprintf("restore: --format %q: want native or logical", *format)}
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
			return usageError{"restore --store etcd takes a logical export (--format logical); an etcd snapshot restores with etcdutl snapshot restore"}
		}
		eps, err := controller.ParseEndpoints(*etcdEndpoints)
		if err != nil {
			return usageError{"--etcd-endpoints: " + err.Error()}
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
		return usageError{fmt.Sprintf("restore: --store %q: want bolt or etcd", *storeKind)}
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
