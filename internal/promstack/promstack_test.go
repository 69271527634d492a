package promstack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

func needStack(t *testing.T) {
	t.Helper()
	require.Root(t)
	require.Command(t, PrometheusBin)
	require.Command(t, AlertmanagerBin)
}

// TestStack runs a real Prometheus and Alertmanager in one host of a
// testbed, scraping a target in another: a query reads the target's
// sample, and an alert that always fires reaches the webhook receiver
// through the routing, addressed to the receiver the route names.
func TestStack(t *testing.T) {
	needStack(t)
	nw := testbed.New(t, testbed.Options{Hosts: 2})
	target, observer := nw.Hosts[0], nw.Hosts[1]
	ln, err := target.Listen("tcp", target.Addr.String()+":9470")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE promstack_test_value gauge\npromstack_test_value 42\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	dir := t.TempDir()
	rules := filepath.Join(dir, "test.yml")
	os.WriteFile(rules, []byte(`groups:
  - name: test
    rules:
      - alert: PromstackTestFires
        expr: promstack_test_value > 0
        labels:
          severity: page
`), 0o644)
	am := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(am, []byte(`route:
  receiver: oncall-pager
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: oncall-pager
    webhook_configs:
      - url: http://127.0.0.1:1/unused
`), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	s, err := Start(ctx, Config{Host: observer, Work: filepath.Join(dir, "work"), Rules: []string{rules},
		Targets: map[string][]string{"test": {target.Addr.String() + ":9470"}}, ScrapeInterval: time.Second, EvalInterval: time.Second,
		Alertmanager: am, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.RulesDigest()) != 64 {
		t.Errorf("rules digest %q", s.RulesDigest())
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, _, err := s.Scalar(ctx, `promstack_test_value{job="test"}`, time.Now())
		if err == nil && v == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sample of the target: %v, %v", v, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		notes := s.Notifications()
		if len(notes) > 0 {
			n := notes[0]
			if n.Receiver != "oncall-pager" || n.Status != "firing" || len(n.Alerts) == 0 || n.Alerts[0].Labels["alertname"] != "PromstackTestFires" {
				t.Fatalf("notification %+v", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification reached the receiver")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStackRefusesBadRules: rules Prometheus cannot load are an error
// naming Prometheus, never a stack that runs without them.
func TestStackRefusesBadRules(t *testing.T) {
	needStack(t)
	nw := testbed.New(t, testbed.Options{Hosts: 1})
	dir := t.TempDir()
	rules := filepath.Join(dir, "bad.yml")
	os.WriteFile(rules, []byte("groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: this is not promql\n"), 0o644)
	am := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(am, []byte("route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://127.0.0.1:1/\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Host: nw.Hosts[0], Work: filepath.Join(dir, "work"), Rules: []string{rules}, Alertmanager: am})
	if err == nil {
		s.Close()
		t.Fatal("a stack started with rules that do not parse")
	}
	if !strings.Contains(err.Error(), "prometheus") {
		t.Fatalf("error %q does not name prometheus", err)
	}
}

// TestRewriteReceivers: every webhook is pointed at the stack's receiver;
// a receiver without a webhook is refused.
func TestRewriteReceivers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "am.yml")
	os.WriteFile(f, []byte("route:\n  receiver: a\nreceivers:\n  - name: a\n    webhook_configs:\n      - url: http://x/\n  - name: b\n    webhook_configs:\n      - url: http://y/\n        send_resolved: true\n"), 0o644)
	out, err := rewriteReceivers(f, "http://127.0.0.1:5")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"url: http://127.0.0.1:5/a", "url: http://127.0.0.1:5/b", "send_resolved: true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	os.WriteFile(f, []byte("route:\n  receiver: a\nreceivers:\n  - name: a\n    email_configs:\n      - to: x@y\n"), 0o644)
	if _, err := rewriteReceivers(f, "http://127.0.0.1:5"); err == nil || !strings.Contains(err.Error(), `receiver "a" has no webhook_configs`) {
		t.Fatalf("got %v", err)
	}
}
