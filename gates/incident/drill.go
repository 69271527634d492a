package incident

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rustynet/rustynet/internal/meshload"
	"github.com/rustynet/rustynet/internal/procgroup"
	"github.com/rustynet/rustynet/internal/promstack"
	slospec "github.com/rustynet/rustynet/internal/slo"
	"github.com/rustynet/rustynet/internal/testbed"
)

// Env is what every drill runs with.
type Env struct {
	Root                       string // the repository (rules, runbooks, routing)
	ControllerBin, DaemonBin   string
	Work                       string
	Log                        io.Writer
	Rules                      []string // rule files Prometheus evaluates
	Alertmanager               string   // the routing to run
	ScrapeInterval, EvalPeriod time.Duration
	// Routes gives the receiver Alertmanager's routing sends each alert
	// to, by RouteKey(alert, severity): an alert's page and ticket rules
	// share its name, and only the one routed to the expected receiver
	// counts as firing for it.
	Routes map[string]string
}

// RouteKey is an Env.Routes key.
func RouteKey(alert, severity string) string { return alert + "/" + severity }

// AlertTimes is one expected alert's course through a drill.
type AlertTimes struct {
	Alert    string     `json:"alert"`
	Receiver string     `json:"receiver"`
	Fired    *time.Time `json:"fired,omitempty"`    // first seen firing in Prometheus
	Paged    *time.Time `json:"paged,omitempty"`    // its firing notification reached Receiver
	Resolved *time.Time `json:"resolved,omitempty"` // its resolved notification reached Receiver
	Resolves bool       `json:"resolves"`
	Why      string     `json:"why_not_resolved,omitempty"`
}

// Result is one drill's outcome: the timeline measured, and every problem.
type Result struct {
	Drill   string `json:"drill"`
	File    string `json:"file"`
	Digest  string `json:"sha256"`
	Summary string `json:"summary"`
	Fault   string `json:"fault"` // what was injected, in words

	Injected  *time.Time   `json:"injected,omitempty"`
	Alerts    []AlertTimes `json:"alerts"`
	Paged     *time.Time   `json:"paged,omitempty"`     // the last expected alert delivered
	Mitigated *time.Time   `json:"mitigated,omitempty"` // the runbook's script succeeded
	Resolved  *time.Time   `json:"resolved,omitempty"`  // every resolving alert resolved, and the fault shown gone
	// The postmortem standard's durations, in seconds (nil when a step
	// never happened): time to detect is injected to paged, time to
	// mitigate is paged to resolved; the script's own run time besides.
	TimeToDetect   *float64 `json:"time_to_detect_s,omitempty"`
	TimeToMitigate *float64 `json:"time_to_mitigate_s,omitempty"`
	ScriptSeconds  *float64 `json:"script_s,omitempty"`
	Targets        struct {
		Detect, Mitigate, Resolve float64 // seconds
	} `json:"targets_s"`

	Runbook       string                   `json:"runbook"`
	Script        string                   `json:"script"`
	ScriptOutput  string                   `json:"script_output"`
	Load          *meshload.Stats          `json:"load,omitempty"`
	Notifications []promstack.Notification `json:"notifications"`
	RulesDigest   string                   `json:"rules_sha256"`
	// SLIs are every SLO's 5-minute error ratio at the end of detection,
	// by SLO id: what the burn-rate alerts saw (an SLO with no events in
	// the window is left out).
	SLIs     map[string]float64 `json:"slis_at_detection"`
	Problems []string           `json:"problems"`
	Passed   bool               `json:"passed"`
}

func secondsSince(from, to *time.Time) *float64 {
	if from == nil || to == nil {
		return nil
	}
	v := to.Sub(*from).Seconds()
	return &v
}

func at(t time.Time) *time.Time { return &t }

// nodes is how many nodes a drill's mesh runs: enough for peers to probe
// and for one node's fault to be a share of the fleet.
const nodes = 2

// probeInterval is the nodes' prober period in a drill: short, so the
// peer-reachability SLI has events within the drill's minutes.
const probeInterval = 2 * time.Second

// metricsPort is where the mesh's daemons serve metrics to the observer.
const metricsPort = "9470"

// Run runs one drill to its end and returns its result; an error is a
// drill that could not run (a mesh or a Prometheus that did not start).
func Run(ctx context.Context, env Env, s *Scenario) (res *Result, err error) {
	res = &Result{Drill: s.Name, File: s.File, Digest: s.Digest, Summary: strings.TrimSpace(s.Summary), Runbook: slospec.RunbookPath(s.Mitigate.Runbook)}
	res.Targets.Detect, res.Targets.Mitigate, res.Targets.Resolve = s.Targets.Detect.D.Seconds(), s.Targets.Mitigate.D.Seconds(), s.Targets.Resolve.D.Seconds()
	problem := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	logf := func(format string, args ...any) {
		fmt.Fprintf(env.Log, "[%s] %s\n", s.Name, fmt.Sprintf(format, args...))
	}
	md, err := os.ReadFile(filepath.Join(env.Root, res.Runbook))
	if err != nil {
		return res, fmt.Errorf("runbook: %w", err)
	}
	res.Script = slospec.MitigationScript(string(md))
	if res.Script == "" {
		return res, fmt.Errorf("%s has no scripted mitigation", res.Runbook)
	}
	work := filepath.Join(env.Work, s.Name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return res, err
	}
	f, err := newFault(s, work)
	if err != nil {
		return res, err
	}
	defer f.cleanup()

	mcfg := testbed.MeshConfig{ControllerBin: env.ControllerBin, DaemonBin: env.DaemonBin, Work: work, Log: env.Log,
		MetricsListen: ":" + metricsPort, NodeArgs: []string{"--probe-interval", probeInterval.String()}, Observer: true}
	f.configure(&mcfg)
	mesh, err := testbed.NewMesh(ctx, mcfg, "wireguard", nodes, 1420)
	if err != nil {
		return res, fmt.Errorf("mesh: %w", err)
	}
	defer mesh.Close()
	f.mesh = mesh
	obs := mesh.Observer()

	targets := map[string][]string{"rustynet-controller": {mesh.ControllerHost().Addr.String() + ":" + metricsPort}}
	for _, nd := range mesh.Nodes() {
		targets["rustynet-node"] = append(targets["rustynet-node"], nd.Host().Addr.String()+":"+metricsPort)
	}
	stack, err := promstack.Start(ctx, promstack.Config{Host: obs, Work: filepath.Join(work, "observer"), Rules: env.Rules,
		Targets: targets, ScrapeInterval: env.ScrapeInterval, EvalInterval: env.EvalPeriod, Alertmanager: env.Alertmanager, Log: env.Log})
	if err != nil {
		return res, err // a Prometheus that cannot start is an error, never a pass
	}
	defer stack.Close()
	res.RulesDigest = stack.RulesDigest()

	// The service manager the runbooks' CONTROLLER_RESTART stands for:
	// POST /restart stops the controller if it runs and starts it again.
	svc, err := serveRestarts(ctx, obs, mesh, logf)
	if err != nil {
		return res, err
	}
	defer svc.Close()

	// A healthy start: every target scraped, no expected alert active.
	want := len(targets["rustynet-node"]) + 1
	if err := waitFor(ctx, 2*time.Minute, func() (bool, error) {
		v, _, err := stack.Scalar(ctx, `count(up == 1)`, time.Now())
		if errors.Is(err, promstack.ErrNoData) {
			return false, nil
		}
		return err == nil && int(v) == want, err
	}); err != nil {
		return res, fmt.Errorf("prometheus did not scrape all %d targets within 2 minutes: %w", want, err)
	}

	deadline := s.Targets.Detect.D + s.Targets.Mitigate.D + s.Targets.Resolve.D + 2*time.Minute
	drillCtx, stopDrill := context.WithTimeout(ctx, deadline)
	defer stopDrill()
	var loadWG sync.WaitGroup
	if s.Load != nil {
		loadCtx, stopLoad := context.WithCancel(drillCtx)
		defer func() { stopLoad(); loadWG.Wait() }()
		loadWG.Go(func() {
			st, err := meshload.Run(loadCtx, meshload.Config{Mesh: mesh, ControllerBin: env.ControllerBin, Duration: deadline,
				RegistrationsPerMinute: s.Load.RegistrationsPerMinute, RemovalsPerMinute: s.Load.RemovalsPerMinute, Log: io.Discard})
			if err != nil && loadCtx.Err() == nil {
				logf("load: %v", err)
			}
			res.Load = &st
		})
		// A minute of healthy load, so that the SLIs have a baseline.
		select {
		case <-time.After(time.Minute):
		case <-drillCtx.Done():
			return res, drillCtx.Err()
		}
	}
	// No expected alert active before the fault (an evaluation or two may
	// still hold the state from before the first scrape).
	var active map[string]string
	quietErr := waitFor(drillCtx, time.Minute, func() (bool, error) {
		var err error
		if active, err = activeAlerts(drillCtx, stack); err != nil {
			return false, err
		}
		return !slices.ContainsFunc(s.Expect, func(e Expectation) bool { return active[e.Alert] != "" }), nil
	})
	if quietErr != nil {
		for _, e := range s.Expect {
			if active[e.Alert] != "" {
				problem("%s was already %s a minute before the fault: the drill would prove nothing", e.Alert, active[e.Alert])
			}
		}
	}

	// Inject.
	res.Fault = f.describe()
	if err := f.inject(drillCtx); err != nil {
		return res, fmt.Errorf("inject %s: %w", s.Fault.Kind, err)
	}
	res.Injected = at(time.Now())
	logf("injected: %s", res.Fault)
	for _, e := range s.Expect {
		res.Alerts = append(res.Alerts, AlertTimes{Alert: e.Alert, Receiver: e.Receiver, Resolves: e.Resolves, Why: strings.TrimSpace(e.Why)})
	}

	// Detect: every expected alert firing in Prometheus and delivered.
	watch := func() error {
		firing, err := stack.Alerts(drillCtx)
		if err != nil {
			return err
		}
		notes := stack.Notifications()
		for i := range res.Alerts {
			a := &res.Alerts[i]
			for _, pa := range firing {
				if a.Fired == nil && pa.State == "firing" && string(pa.Labels["alertname"]) == a.Alert &&
					env.Routes[RouteKey(a.Alert, string(pa.Labels["severity"]))] == a.Receiver {
					a.Fired = at(time.Now())
				}
			}
			for _, n := range notes {
				if n.At.Before(*res.Injected) || n.Receiver != a.Receiver {
					continue
				}
				for _, na := range n.Alerts {
					if na.Labels["alertname"] != a.Alert {
						continue
					}
					if na.Status == "firing" && a.Paged == nil {
						a.Paged = at(n.At)
					}
					if na.Status == "resolved" && a.Paged != nil && a.Resolved == nil && res.Mitigated != nil && n.At.After(*res.Mitigated) {
						a.Resolved = at(n.At)
					}
				}
			}
		}
		return nil
	}
	detectBy := res.Injected.Add(s.Targets.Detect.D)
	allPaged := func() bool {
		return !slices.ContainsFunc(res.Alerts, func(a AlertTimes) bool { return a.Paged == nil })
	}
	lastSLI := time.Now()
	for !allPaged() && time.Now().Before(detectBy) && drillCtx.Err() == nil {
		if err := watch(); err != nil {
			return res, fmt.Errorf("prometheus: %w", err)
		}
		if time.Since(lastSLI) >= 15*time.Second {
			lastSLI = time.Now()
			logf("+%.0fs: 5-minute error ratios %v; active alerts %v", time.Since(*res.Injected).Seconds(), sliSnapshot(drillCtx, stack), activeNames(drillCtx, stack))
		}
		sleep(drillCtx, time.Second)
	}
	res.SLIs = sliSnapshot(drillCtx, stack)
	for _, a := range res.Alerts {
		if a.Paged != nil {
			t := *a.Paged
			if res.Paged == nil || t.After(*res.Paged) {
				res.Paged = at(t)
			}
			continue
		}
		if a.Fired != nil {
			problem("%s fired at +%.0fs but was not delivered to %s within the %v detect target", a.Alert, a.Fired.Sub(*res.Injected).Seconds(), a.Receiver, s.Targets.Detect.D)
		} else {
			problem("%s did not fire within the %v detect target", a.Alert, s.Targets.Detect.D)
		}
	}
	if res.Paged != nil {
		logf("paged after %.0fs", res.Paged.Sub(*res.Injected).Seconds())
	}

	// Mitigate: the runbook's script, as the on-call engineer would run
	// it (even when detection failed: the drill restores what it broke).
	host, scriptEnv := obs, f.scriptEnv(svc.url)
	if s.Mitigate.In == InNode {
		host = f.node().Host()
	}
	mctx, stopM := context.WithTimeout(drillCtx, s.Targets.Mitigate.D)
	scriptStart := at(time.Now())
	// nsenter, not `ip netns exec`: the script joins the host's network
	// namespace only, and sees the machine's /sys (its cgroups) as an
	// operator's shell would.
	cmd := exec.CommandContext(mctx, "nsenter", "--net="+host.NSPath, "sh", "-eu", "-c", res.Script)
	procgroup.Set(cmd) // what the script started ends with it
	cmd.Env = append(os.Environ(), scriptEnv...)
	out, err := cmd.CombinedOutput()
	stopM()
	res.ScriptOutput = tail(string(out), 4096)
	if err != nil {
		problem("the scripted mitigation of %s failed within %v: %v", res.Runbook, s.Targets.Mitigate.D, err)
		f.restore(ctx) // so that the mesh can be torn down cleanly
	} else {
		res.Mitigated = at(time.Now())
		res.ScriptSeconds = secondsSince(scriptStart, res.Mitigated)
		logf("mitigated after %.0fs", res.Mitigated.Sub(*res.Injected).Seconds())
	}

	// Resolve: every resolving alert resolved and delivered, and the
	// fault shown gone.
	if res.Mitigated != nil {
		resolveBy := res.Mitigated.Add(s.Targets.Resolve.D)
		var recovered *time.Time
		done := func() bool {
			for _, a := range res.Alerts {
				if a.Resolves && a.Resolved == nil {
					return false
				}
			}
			return s.Recovered == "" || recovered != nil
		}
		for !done() && time.Now().Before(resolveBy) && drillCtx.Err() == nil {
			if err := watch(); err != nil {
				return res, fmt.Errorf("prometheus: %w", err)
			}
			if s.Recovered != "" && recovered == nil {
				v, err := stack.Query(drillCtx, s.Recovered, time.Now())
				if err != nil {
					return res, fmt.Errorf("recovered: %w", err)
				}
				if v != nil && v.String() != "" {
					recovered = at(time.Now())
				}
			}
			sleep(drillCtx, time.Second)
		}
		if done() {
			last := *res.Mitigated
			for _, a := range res.Alerts {
				if a.Resolved != nil && a.Resolved.After(last) {
					last = *a.Resolved
				}
			}
			if recovered != nil && recovered.After(last) {
				last = *recovered
			}
			res.Resolved = at(last)
		} else {
			for _, a := range res.Alerts {
				if a.Resolves && a.Resolved == nil {
					problem("%s did not resolve within %v of the mitigation", a.Alert, s.Targets.Resolve.D)
				}
			}
			if s.Recovered != "" && recovered == nil {
				problem("the fault did not show gone (%s) within %v of the mitigation", s.Recovered, s.Targets.Resolve.D)
			}
		}
	}
	stopDrill()
	loadWG.Wait()

	// Quiet alerts: never delivered while the fault was in place.
	res.Notifications = stack.Notifications()
	for _, n := range res.Notifications {
		if res.Injected == nil || n.At.Before(*res.Injected) || (res.Mitigated != nil && n.At.After(*res.Mitigated)) {
			continue
		}
		for _, na := range n.Alerts {
			if slices.Contains(s.Quiet, na.Labels["alertname"]) && na.Status == "firing" {
				problem("%s was delivered to %s while the fault was in place; the drill expects it held back", na.Labels["alertname"], n.Receiver)
			}
		}
	}
	res.TimeToDetect = secondsSince(res.Injected, res.Paged)
	res.TimeToMitigate = secondsSince(res.Paged, res.Resolved)
	if res.TimeToDetect != nil && *res.TimeToDetect > res.Targets.Detect {
		problem("detected in %.0fs, over the %v target", *res.TimeToDetect, s.Targets.Detect.D)
	}
	sort.Strings(res.Problems)
	res.Passed = len(res.Problems) == 0
	return res, nil
}

// sliSnapshot reads every SLO's 5-minute error ratio now.
func sliSnapshot(ctx context.Context, s *promstack.Stack) map[string]float64 {
	v, err := s.Query(ctx, `slo:sli_error:ratio_rate5m`, time.Now())
	out := map[string]float64{}
	if vec, ok := v.(model.Vector); ok && err == nil {
		for _, smp := range vec {
			// An SLI with no events in the window is 0/0: left out, as
			// JSON has no NaN.
			if v := float64(smp.Value); !math.IsNaN(v) && !math.IsInf(v, 0) {
				out[string(smp.Metric["sloth_id"])] = v
			}
		}
	}
	return out
}

func activeNames(ctx context.Context, s *promstack.Stack) map[string]string {
	a, _ := activeAlerts(ctx, s)
	return a
}

// activeAlerts maps each alert Prometheus holds to its state (pending or
// firing; firing wins).
func activeAlerts(ctx context.Context, s *promstack.Stack) (map[string]string, error) {
	as, err := s.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range as {
		n := string(a.Labels["alertname"])
		if out[n] != "firing" {
			out[n] = string(a.State)
		}
	}
	return out, nil
}

func waitFor(ctx context.Context, d time.Duration, ok func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		done, err := ok()
		if done {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("timed out")
			}
			return last
		}
		if sleep(ctx, time.Second) != nil {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// restarts is the stand-in for the controller's service manager.
type restarts struct {
	srv *http.Server
	url string
}

func (r *restarts) Close() { r.srv.Close() }

// serveRestarts serves POST /restart on the observer's loopback: the
// command the runbooks' CONTROLLER_RESTART runs (systemctl restart in
// production) is a curl to it.
func serveRestarts(ctx context.Context, obs *testbed.Host, mesh *testbed.Mesh, logf func(string, ...any)) (*restarts, error) {
	ln, err := obs.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if p := mesh.Controller(); p != nil && !p.Exited() {
			p.Stop(10 * time.Second)
		}
		if err := mesh.StartController(ctx); err != nil {
			logf("restart: %v", err)
			http.Error(w, "the controller did not start: "+err.Error(), http.StatusInternalServerError)
			return
		}
		logf("controller restarted (pid %d)", mesh.Controller().Pid())
		io.WriteString(w, "restarted, pid "+strconv.Itoa(mesh.Controller().Pid())+"\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return &restarts{srv: srv, url: "http://" + ln.Addr().(*net.TCPAddr).String() + "/restart"}, nil
}
