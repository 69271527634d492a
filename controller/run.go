package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/certs"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/gometrics"
	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/internal/readyfile"
)

// Files in the data directory.
const (
	StoreFile     = bolt.FileName
	AdminSocket   = "admin.sock"
	TLSDir        = "tls"
	shutdownGrace = 10 * time.Second
)

// RunConfig configures Run.
type RunConfig struct {
	// PolicyFile, when set, is an ACL policy file (HuJSON) applied once
	// the controller serves and on every receive from Reload, when its
	// text differs from the policy in force.
	PolicyFile    string
	Reload        <-chan struct{}
	DataDir       string
	Listen        string   // the API's TCP address, e.g. ":8443"
	MetricsListen string   // the metrics' TCP address; "" disables them
	TLSNames      []string // extra DNS names or IPs for the server certificate
	// TLSCert and TLSKey, when set, are an operator's certificate and key
	// (PEM files) served instead of one from the controller's own CA, and
	// reloaded when they change (certs.OpenFiles).
	TLSCert, TLSKey string
	IPv4, IPv6      netip.Prefix
	Logger          *slog.Logger
	// Limits bound connections and per-node requests; zero fields take
	// defaults.
	Limits Limits
	// AllowLoopbackEndpoints accepts loopback endpoints (test networks
	// on one host only).
	AllowLoopbackEndpoints bool
	// Timeouts of the node API; zero fields take the defaults.
	Timeouts Timeouts
	// Ready, if set, is called with the bound addresses once every
	// listener is open.
	Ready func(api, metrics net.Addr)
	// ReadyFile, if set, is written then (internal/readyfile) with the
	// addresses, for whoever started the controller.
	ReadyFile string
	// Version is the build's version, for rustynet_controller_build_info.
	Version string
	// Etcd, when it has endpoints, puts the store on etcd: this
	// controller is then one replica of several sharing it. Without, the
	// store is the bbolt file in DataDir.
	Etcd EtcdConfig
	// AdvertiseURL is the URL nodes reach this replica at
	// (https://HOST:PORT), announced to them in their netmaps; required
	// with Etcd.
	AdvertiseURL string
	// ReplicaID names this replica in the election (default: the
	// advertised URL's host and port).
	ReplicaID string
	// Now is the clock insecure modes' exceptions are judged by (nil:
	// time.Now): one lapses in a running controller at its expiry.
	Now func() time.Time
	// Exceptions are the crypto policy's exceptions (CryptoPolicy names
	// the policy): an insecure mode the environment asks for
	// (RUSTYNET_INSECURE) is on only if one of them grants it. None:
	// every mode stays off.
	Exceptions   []insecure.Grant
	CryptoPolicy string
}

// Timeouts of the node API. A request's headers have ReadHeader to
// arrive, and the whole request (headers and body) Read; a netmap
// long-poll extends that by its wait. An idle connection is closed after
// Idle: a node keeps its connection busy with its long-poll, so only a
// client that does nothing is idle.
type Timeouts struct {
	ReadHeader time.Duration // default 5 s
	Read       time.Duration // default 20 s
	Idle       time.Duration // default 30 s
}

func (t Timeouts) withDefaults() Timeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = 5 * time.Second
	}
	if t.Read <= 0 {
		t.Read = 20 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = 30 * time.Second
	}
	return t
}

// Run serves the controller until ctx is done, then shuts down cleanly:
// long-polls are answered, in-flight requests finish (up to 10 s), the
// committer drains, and the store is closed.
func Run(ctx context.Context, cfg RunConfig) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return errors.New("no data dir")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := LockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	reg := prometheus.NewRegistry()
	reg.MustRegister(gometrics.Collector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var (
		st         store.Store
		closeStore func() error
		replicaID  = cfg.ReplicaID
	)
	if len(cfg.Etcd.Endpoints) > 0 {
		u, uerr := url.Parse(cfg.AdvertiseURL)
		if cfg.AdvertiseURL == "" || uerr != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("a replica on etcd needs --advertise-url https://HOST:PORT, the URL nodes reach it at (got %q)", cfg.AdvertiseURL)
		}
		if replicaID == "" {
			replicaID = u.Host
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		est, closeEtcd, err := openEtcd(octx, cfg.Etcd, reg)
		cancel()
		if err != nil {
			return err
		}
		for _, m := range est.Migrated() {
			log.Info("store migrated", "migration", m)
		}
		st, closeStore = est, closeEtcd
		log.Info("store on etcd", "endpoints", cfg.Etcd.Endpoints, "prefix", cfg.Etcd.Prefix, "replica", replicaID, "advertise_url", cfg.AdvertiseURL)
	} else {
		bst, err := bolt.Open(filepath.Join(cfg.DataDir, StoreFile))
		if err != nil {
			return err
		}
		for _, m := range bst.Migrated() {
			log.Info("store migrated", "migration", m)
		}
		st, closeStore = bst, bst.Close
	}
	defer func() {
		if cerr := closeStore(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()

	srv, err := New(Config{Store: st, IPv4: cfg.IPv4, IPv6: cfg.IPv6, Logger: log, Registerer: reg,
		Version: cfg.Version, Limits: cfg.Limits, AllowLoopbackEndpoints: cfg.AllowLoopbackEndpoints})
	if err != nil {
		return err
	}
	defer srv.Close()

	hosts, err := certs.HostsFor(cfg.Listen, cfg.TLSNames)
	if err != nil {
		return err
	}
	var cm *certs.Manager
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return errors.New("tls: an operator's certificate needs both its certificate and its key file")
		}
		cm, err = certs.OpenFiles(cfg.TLSCert, cfg.TLSKey, nil)
	} else {
		cm, err = certs.Open(filepath.Join(cfg.DataDir, TLSDir), hosts, nil)
	}
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	reg.MustRegister(certExpiry{cm})
	if len(cfg.Etcd.Endpoints) > 0 {
		if tlsConf, err := cm.ReplicaClientTLS(); err == nil {
			srv.ForwardWrites(cfg.AdvertiseURL, tlsConf, cm.IsReplica)
		} else {
			log.Warn("each replica commits its own registrations: replicas hand them to one writer only when they share the controller's CA", "reason", err)
		}
	}

	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLn, err := ListenAdmin(filepath.Join(cfg.DataDir, AdminSocket), log)
	if err != nil {
		apiLn.Close()
		return err
	}
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			apiLn.Close()
			adminLn.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
	}

	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	tlsConf := cm.TLSConfig()
	tls12 := insecure.Lookup(os.Getenv(insecure.Env), "controller-tls12", now()).Authorize(cfg.Exceptions, cfg.CryptoPolicy, now())
	switch {
	case tls12.Enabled:
		args := []any{"mode", tls12.Mode, "expires", tls12.Expires.Format(time.DateOnly)}
		if g := tls12.Grant; g != nil {
			args = append(args, "owner", g.Owner, "ticket", g.Ticket, "granted_at", g.Source)
		}
		log.Warn("INSECURE: accepting TLS 1.2 clients by exception", args...)
		var stop func() bool
		tlsConf, stop = acceptTLS12Until(tlsConf, tls12.Expires, now, log)
		defer stop()
	case tls12.Problem != "":
		log.Error("insecure mode refused; TLS 1.3 only", "mode", tls12.Mode, "reason", tls12.Problem)
	}
	promauto.With(reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "rustynet_controller_insecure_mode_enabled",
		Help:        "1 while an insecure compatibility mode is on by an exception in force (RUSTYNET_INSECURE), else 0: it turns 0 by itself at the exception's expiry.",
		ConstLabels: prometheus.Labels{"mode": tls12.Mode},
	}, func() float64 {
		if tls12.Enabled && now().Before(tls12.Expires) {
			return 1
		}
		return 0
	})
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	to := cfg.Timeouts.withDefaults()
	apiSrv := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: to.ReadHeader,
		ReadTimeout:       to.Read,
		WriteTimeout:      api.MaxWait + pollGrace,
		IdleTimeout:       to.Idle,
		MaxHeaderBytes:    16 << 10,
		HTTP2: &http.HTTP2Config{
			// A node holds one long-poll and sends a request now and
			// then; a few streams serve it.
			MaxConcurrentStreams:      16,
			MaxReceiveBufferPerStream: api.MaxBodyBytes,
			// A peer that stops answering pings is gone.
			SendPingTimeout:  to.Idle,
			PingTimeout:      10 * time.Second,
			WriteByteTimeout: 30 * time.Second,
		},
		ErrorLog: errLog,
	}
	limits := srv.limits
	if cfg.AllowLoopbackEndpoints {
		log.Warn("accepting loopback endpoints: for a test network on one host only")
	}
	apiLn = newLimitListener(apiLn, limits.MaxConns, limits.MaxConnsPerIP, srv.metrics)
	adminSrv := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	servers := []*http.Server{apiSrv, adminSrv}
	errc := make(chan error, 3)
	go func() { errc <- apiSrv.ServeTLS(apiLn, "", "") }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	var metricsAddr net.Addr
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		servers = append(servers, metricsSrv)
		go func() { errc <- metricsSrv.Serve(metricsLn) }()
		metricsAddr = metricsLn.Addr()
	}
	log.Info("controller serving",
		"listen", apiLn.Addr().String(), "metrics", fmt.Sprint(metricsAddr),
		"admin_socket", adminLn.Addr().String(), "ca", cm.CAFile(), "operator_certificate", cfg.TLSCert,
		"tls_names", cm.Leaf().DNSNames, "tls_ips", fmt.Sprint(cm.Leaf().IPAddresses),
		"capability_version", int(api.CurrentCapabilityVersion), "nodes", srv.st.count())
	if cfg.Ready != nil {
		cfg.Ready(apiLn.Addr(), metricsAddr)
	}
	info := readyfile.Info{PID: os.Getpid(), API: apiLn.Addr().String(), AdminSocket: adminLn.Addr().String()}
	if metricsAddr != nil {
		info.Metrics = metricsAddr.String()
	}
	readyfile.Ready(log, cfg.ReadyFile, info, "serving on "+info.API)
	// systemd's watchdog (WatchdogSec) is fed while the store answers: a
	// controller that lost its store is restarted, not left refusing.
	go readyfile.Watchdog(ctx, log, func(ctx context.Context) error {
		return srv.store.View(ctx, func(store.Tx) error { return nil })
	})
	defer readyfile.Stopping(log)

	if cfg.PolicyFile != "" || cfg.Reload != nil {
		go func() {
			apply := func() {
				if cfg.PolicyFile == "" {
					return
				}
				if err := srv.applyPolicyFile(ctx, cfg.PolicyFile); err != nil {
					log.Error("policy file not applied; the policy in force is unchanged", "file", cfg.PolicyFile, "err", err)
				}
			}
			apply()
			for {
				select {
				case <-ctx.Done():
					return
				case <-cfg.Reload:
					apply()
				}
			}
		}()
	}

	rctx, stopReplica := context.WithCancel(ctx)
	replicaDone := make(chan struct{})
	go func() {
		defer close(replicaDone)
		srv.RunReplica(rctx, ReplicaConfig{ID: replicaID, URL: cfg.AdvertiseURL})
	}()
	defer func() {
		stopReplica()
		<-replicaDone
	}()

	select {
	case <-ctx.Done():
		log.Info("controller shutting down", "reason", context.Cause(ctx))
	case err = <-errc:
		log.Error("listener failed; shutting down", "err", err)
	}
	srv.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil {
			log.Warn("server shutdown", "err", serr)
			s.Close()
		}
	}
	srv.Close()
	log.Info("controller stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ListenAdmin opens the admin socket at path with mode 0600 and accepts
// connections only from the user the controller runs as (or root), checked
// with SO_PEERCRED. A stale socket left by a crash is replaced; a live one
// means another controller owns the data dir.
func ListenAdmin(path string, log *slog.Logger) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use: is another controller running on this data dir?", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket: %w", err)
	}
	// Create the socket with no permissions for others from the start.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &peerCredListener{Listener: ln, uid: uint32(os.Getuid()), log: log}, nil
}

type peerCredListener struct {
	net.Listener
	uid uint32
	log *slog.Logger
}

func (l *peerCredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		l.log.Warn("admin connection refused", "peer_uid", uid, "err", err)
		c.Close()
	}
}

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

var descCertExpiry = prometheus.NewDesc("rustynet_controller_certificate_expiry_timestamp_seconds",
	"When each of the controller's certificates expires (Unix time), by certificate (server: the one it serves now, ca: the CA nodes trust).",
	[]string{"certificate"}, nil)

// certExpiry reports the certificates' expiry at scrape time: the server
// certificate is renewed in place, so it is read each time.
type certExpiry struct{ cm *certs.Manager }

func (c certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

func (c certExpiry) Collect(ch chan<- prometheus.Metric) {
	leaf, _ := c.cm.Renewed() // a failed renewal shows as the old expiry drawing near
	ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), "server")
	if ca := c.cm.CA(); ca != nil { // none for an operator's certificate
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(ca.NotAfter.Unix()), "ca")
	}
}

// acceptTLS12Until returns conf accepting TLS 1.2 clients too until the
// exception's expiry, and TLS 1.3 only from then on, by itself: the
// running controller logs the lapse once (at the expiry, or at the first
// handshake after it by now's clock). stop ends the expiry's timer.
func acceptTLS12Until(conf *tls.Config, until time.Time, now func() time.Time, log *slog.Logger) (*tls.Config, func() bool) {
	// The configurations a handshake gets replace the server's, whose
	// ALPN list http.Server fills in: they carry it themselves.
	lax, strict := conf.Clone(), conf.Clone()
	lax.MinVersion = tls.VersionTLS12
	lax.NextProtos, strict.NextProtos = []string{"h2", "http/1.1"}, []string{"h2", "http/1.1"}
	var lapsed sync.Once
	lapse := func() {
		lapsed.Do(func() {
			log.Warn("the exception for controller-tls12 has expired: TLS 1.3 only from now on", "mode", "controller-tls12", "expired", until.Format(time.DateOnly))
		})
	}
	out := conf.Clone()
	out.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if now().Before(until) {
			return lax, nil
		}
		lapse()
		return strict, nil
	}
	return out, time.AfterFunc(until.Sub(now()), lapse).Stop
}
