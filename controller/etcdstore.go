package controller

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/rustynet/rustynet/controller/store/etcd"
)

// EtcdConfig says how a replica reaches its etcd cluster.
type EtcdConfig struct {
	// Endpoints are the cluster's client URLs (http:// or https://).
	Endpoints []string
	// CA, Cert and Key are PEM files for TLS to etcd: the CA that signed
	// the members' certificates, and this replica's client certificate
	// and key when etcd asks for one (--client-cert-auth).
	CA, Cert, Key string
	// Prefix of the controller's keys (etcd.DefaultPrefix when empty).
	Prefix string
	// Timeout bounds one store transaction (default 5 s).
	Timeout time.Duration
}

// ParseEndpoints checks a comma-separated list of etcd client URLs.
func ParseEndpoints(list string) ([]string, error) {
	var eps []string
	seen := map[string]bool{}
	for _, ep := range strings.Split(list, ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("etcd endpoint %q: want http(s)://HOST:PORT", ep)
		}
		if seen[u.Host] {
			return nil, fmt.Errorf("etcd endpoint %q is listed twice", ep)
		}
		seen[u.Host] = true
		eps = append(eps, u.Scheme+"://"+u.Host)
	}
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoint: want --etcd-endpoints URL[,URL...]")
	}
	return eps, nil
}

// OpenEtcd connects to etcd and opens the store on it (for restore and
// other offline work; a nil reg keeps its metrics private). The returned
// close function closes the store, then the client.
func OpenEtcd(ctx context.Context, cfg EtcdConfig, reg prometheus.Registerer) (*etcd.Store, func() error, error) {
	return openEtcd(ctx, cfg, reg)
}

func openEtcd(ctx context.Context, cfg EtcdConfig, reg prometheus.Registerer) (*etcd.Store, func() error, error) {
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		// Keepalives notice a dead member and move to another.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// etcd's retries are logged in the controller's own terms
		// (store errors, metrics); its zap logs would only repeat them.
		Logger: zap.NewNop(),
	}
	if cfg.CA != "" || cfg.Cert != "" || cfg.Key != "" {
		if (cfg.Cert == "") != (cfg.Key == "") {
			return nil, nil, errors.New("etcd TLS: a client certificate needs both --etcd-cert and --etcd-key")
		}
		tc, err := transport.TLSInfo{CertFile: cfg.Cert, KeyFile: cfg.Key, TrustedCAFile: cfg.CA}.ClientConfig()
		if err != nil {
			return nil, nil, fmt.Errorf("etcd TLS: %w", err)
		}
		cc.TLS = tc
	}
	for _, ep := range cfg.Endpoints {
		if strings.HasPrefix(ep, "https://") && cc.TLS == nil {
			return nil, nil, fmt.Errorf("etcd endpoint %s is https: give --etcd-ca", ep)
		}
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	// Each member is also probed on a connection of its own, so that one
	// that stops answering leaves the client's rotation within a second
	// rather than at the keepalive's 15 s (see etcd.Options.Probe).
	st, err := etcd.Open(ctx, cli, etcd.Options{Prefix: cfg.Prefix, Timeout: cfg.Timeout, Probe: &cc, Registerer: reg})
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return st, func() error {
		err := st.Close()
		if cerr := cli.Close(); err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = cerr
		}
		return err
	}, nil
}
