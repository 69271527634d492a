// Package promstack runs a real Prometheus and a real Alertmanager in one
// host of a testbed, with the project's rules and routing, and a webhook
// receiver in the harness standing in for the on-call pager and the ticket
// queue: what the slo and incident gates observe a mesh with.
//
// The binaries are Debian's (`prometheus`, `prometheus-alertmanager`,
// installed by .ci/install-deps); both listen on the host's loopback and
// are reached through the host's namespace, never from the machine's.
package promstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/rustynet/rustynet/internal/daemon"
	"github.com/rustynet/rustynet/internal/testbed"
)

// The binaries, as Debian names them.
const (
	PrometheusBin   = "prometheus"
	AlertmanagerBin = "prometheus-alertmanager"
)

// Listen addresses inside the stack's host.
const (
	promAddr = "127.0.0.1:9090"
	amAddr   = "127.0.0.1:9093"
)

// Config is what a Stack runs.
type Config struct {
	Host *testbed.Host
	// Work is a scratch directory (the TSDB, Alertmanager's state, the
	// generated configuration).
	Work string
	// Rules are the rule files Prometheus evaluates, copied into Work.
	Rules []string
	// Targets are the scrape targets by job (host:port, reachable from
	// Host).
	Targets map[string][]string
	// ScrapeInterval and EvalInterval; zero takes 2 s.
	ScrapeInterval, EvalInterval time.Duration
	// Alertmanager is the routing configuration to run
	// (ops/alertmanager/alertmanager.yml); every receiver's webhook URL is
	// pointed at the stack's receiver, at /<receiver name>.
	Alertmanager string
	// Log receives the daemons' logs when they stop.
	Log io.Writer
}

// Notification is one webhook delivery from Alertmanager.
type Notification struct {
	Receiver string    `json:"receiver"` // the receiver it was routed to
	Status   string    `json:"status"`   // firing or resolved
	At       time.Time `json:"at"`       // when the harness received it
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

// Stack is a running Prometheus, Alertmanager and webhook receiver.
type Stack struct {
	cfg      Config
	prom, am *daemon.Process
	hook     *http.Server
	api      v1.API
	hc       *http.Client
	digest   string

	mu    sync.Mutex
	notes []Notification
}

// Available says whether the binaries are installed, and if not, which.
func Available() error {
	var missing []string
	for _, b := range []string{PrometheusBin, AlertmanagerBin} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not installed (Debian packages prometheus and prometheus-alertmanager; .ci/install-deps installs them)", strings.Join(missing, " and "))
	}
	return nil
}

// Start starts the webhook receiver, Alertmanager and Prometheus, and waits
// until both daemons answer their readiness endpoints. A daemon that does
// not start is an error naming it, with its log.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.ScrapeInterval == 0 {
		cfg.ScrapeInterval = 2 * time.Second
	}
	if cfg.EvalInterval == 0 {
		cfg.EvalInterval = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	h := cfg.Host
	s := &Stack{cfg: cfg}
	s.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialContext(ctx, network, addr)
		},
	}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// The receiver, standing in for the pager and the ticket queue.
	ln, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{receiver}", func(w http.ResponseWriter, r *http.Request) {
		var n Notification
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&n); err != nil {
			http.Error(w, "not an Alertmanager webhook payload: "+err.Error(), http.StatusBadRequest)
			return
		}
		n.At = time.Now()
		if n.Receiver != r.PathValue("receiver") {
			http.Error(w, fmt.Sprintf("payload for receiver %q posted to /%s", n.Receiver, r.PathValue("receiver")), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.notes = append(s.notes, n)
		s.mu.Unlock()
	})
	s.hook = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.hook.Serve(ln)
	hookURL := "http://" + ln.Addr().String()

	// Alertmanager, with the project's routing.
	amDir := filepath.Join(cfg.Work, "alertmanager")
	if err := os.MkdirAll(amDir, 0o755); err != nil {
		return nil, err
	}
	amConf, err := rewriteReceivers(cfg.Alertmanager, hookURL)
	if err != nil {
		return nil, err
	}
	amFile := filepath.Join(amDir, "alertmanager.yml")
	if err := os.WriteFile(amFile, amConf, 0o644); err != nil {
		return nil, err
	}
	s.am, _, err = daemon.Start(ctx, h.Command(ctx, AlertmanagerBin, "--config.file="+amFile, "--storage.path="+filepath.Join(amDir, "data"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=", "--log.level=warn"), nil, 0)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	if err := s.waitReady(ctx, "alertmanager", s.am, "http://"+amAddr+"/-/ready"); err != nil {
		return nil, err
	}

	// Prometheus, with the project's rules.
	promDir := filepath.Join(cfg.Work, "prometheus")
	if err := os.MkdirAll(filepath.Join(promDir, "rules"), 0o755); err != nil {
		return nil, err
	}
	var ruleFiles []string
	sum := sha256.New()
	rules := append([]string(nil), cfg.Rules...)
	sort.Strings(rules)
	for _, f := range rules {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(sum, "%s %x\n", filepath.Base(f), sha256.Sum256(data))
		dst := filepath.Join(promDir, "rules", filepath.Base(f))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return nil, err
		}
		ruleFiles = append(ruleFiles, dst)
	}
	s.digest = hex.EncodeToString(sum.Sum(nil))
	promConf, err := prometheusConfig(cfg, ruleFiles)
	if err != nil {
		return nil, err
	}
	promFile := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(promFile, promConf, 0o644); err != nil {
		return nil, err
	}
	s.prom, _, err = daemon.Start(ctx, h.Command(ctx, PrometheusBin, "--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn"), nil, 0)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	if err := s.waitReady(ctx, "prometheus", s.prom, "http://"+promAddr+"/-/ready"); err != nil {
		return nil, err
	}
	client, err := promapi.NewClient(promapi.Config{Address: "http://" + promAddr, RoundTripper: s.hc.Transport})
	if err != nil {
		return nil, err
	}
	s.api = v1.NewAPI(client)
	// Every rule file loaded, no group failing to evaluate later.
	rs, err := s.api.Rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("prometheus rules: %w", err)
	}
	loaded := map[string]bool{}
	for _, g := range rs.Groups {
		loaded[filepath.Base(g.File)] = true
	}
	for _, f := range ruleFiles {
		if !loaded[filepath.Base(f)] {
			return nil, fmt.Errorf("prometheus did not load the rules of %s\n%s", filepath.Base(f), s.prom.Logs())
		}
	}
	return s, nil
}

func (s *Stack) waitReady(ctx context.Context, name string, p *daemon.Process, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := s.hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before it was ready\n%s", name, p.Logs())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready within 60 s (last: %v)\n%s", name, err, p.Logs())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prometheusConfig writes the scrape jobs, the rules and the Alertmanager.
func prometheusConfig(cfg Config, ruleFiles []string) ([]byte, error) {
	type static struct {
		Targets []string `yaml:"targets"`
	}
	type job struct {
		Name          string   `yaml:"job_name"`
		StaticConfigs []static `yaml:"static_configs"`
	}
	var jobs []job
	names := make([]string, 0, len(cfg.Targets))
	for n := range cfg.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		jobs = append(jobs, job{Name: n, StaticConfigs: []static{{Targets: cfg.Targets[n]}}})
	}
	conf := map[string]any{
		"global": map[string]string{
			"scrape_interval":     model.Duration(cfg.ScrapeInterval).String(),
			"evaluation_interval": model.Duration(cfg.EvalInterval).String(),
		},
		"rule_files":     ruleFiles,
		"alerting":       map[string]any{"alertmanagers": []map[string]any{{"static_configs": []static{{Targets: []string{amAddr}}}}}},
		"scrape_configs": jobs,
	}
	return yaml.Marshal(conf)
}

// rewriteReceivers points every webhook of the Alertmanager configuration
// at base/<receiver name>; a receiver with no webhook is refused (the
// stack could not see what it delivers).
func rewriteReceivers(file, base string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var conf map[string]any
	if err := yaml.Unmarshal(raw, &conf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	recs, _ := conf["receivers"].([]any)
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no receivers", file)
	}
	for _, r := range recs {
		rec, _ := r.(map[string]any)
		name, _ := rec["name"].(string)
		hooks, _ := rec["webhook_configs"].([]any)
		if len(hooks) == 0 {
			return nil, fmt.Errorf("%s: receiver %q has no webhook_configs: the on-call receivers are webhooks", file, name)
		}
		for _, h := range hooks {
			hm, _ := h.(map[string]any)
			if hm == nil {
				return nil, fmt.Errorf("%s: receiver %q: a webhook_config that is not a mapping", file, name)
			}
			hm["url"] = base + "/" + name
		}
	}
	return yaml.Marshal(conf)
}

// RulesDigest is the SHA-256 over the loaded rule files (each file's name
// and digest, one per line, sorted by name).
func (s *Stack) RulesDigest() string { return s.digest }

// Query evaluates an instant PromQL query at t.
func (s *Stack) Query(ctx context.Context, q string, t time.Time) (model.Value, error) {
	v, warns, err := s.api.Query(ctx, q, t)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if len(warns) > 0 {
		return v, fmt.Errorf("query %q: warnings %v", q, warns)
	}
	return v, nil
}

// Alerts returns the alerts Prometheus holds now (pending and firing).
func (s *Stack) Alerts(ctx context.Context) ([]v1.Alert, error) {
	r, err := s.api.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	return r.Alerts, nil
}

// Notifications returns what the webhook receiver has received so far.
func (s *Stack) Notifications() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.notes...)
}

// Close stops Prometheus, Alertmanager and the receiver, and writes the
// daemons' logs to the configured log.
func (s *Stack) Close() {
	for _, p := range []struct {
		name string
		p    *daemon.Process
	}{{"prometheus", s.prom}, {"alertmanager", s.am}} {
		if p.p == nil {
			continue
		}
		p.p.Stop(10 * time.Second)
		if l := p.p.Logs(); l != "" {
			fmt.Fprintf(s.cfg.Log, "--- %s log\n%s", p.name, l)
		}
	}
	if s.hook != nil {
		s.hook.Close()
	}
	if s.hc != nil {
		s.hc.CloseIdleConnections()
	}
}

// ErrNoData is a query that returned no sample.
var ErrNoData = errors.New("no data")

// Scalar evaluates q at t and returns its single sample's value.
func (s *Stack) Scalar(ctx context.Context, q string, t time.Time) (float64, model.Value, error) {
	v, err := s.Query(ctx, q, t)
	if err != nil {
		return 0, v, err
	}
	switch x := v.(type) {
	case model.Vector:
		if len(x) == 0 {
			return 0, v, fmt.Errorf("query %q: %w", q, ErrNoData)
		}
		if len(x) > 1 {
			return 0, v, fmt.Errorf("query %q: %d samples, want one", q, len(x))
		}
		return float64(x[0].Value), v, nil
	case *model.Scalar:
		return float64(x.Value), v, nil
	}
	return 0, v, fmt.Errorf("query %q: a %s, want a vector or scalar", q, v.Type())
}
