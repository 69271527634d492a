// Package slo is the slo gate: it runs a mesh (a controller and nodes in
// namespaces, their probers on) with a real Prometheus and Alertmanager
// (internal/promstack) evaluating the project's rules, drives the
// channel's load profile through it (policies/slo.yaml), then reads every
// SLO of slos/ over the run through Prometheus's HTTP API. It blocks when
// an SLI misses its objective, burns its error budget faster than the
// policy allows (over the run, or in any 5-minute window of it), has too
// few events to judge, or when an alert fires or a page is delivered. The
// evidence holds the rules' digest, every query with its raw result, the
// alerts and the notifications.
package slo

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/meshload"
	"github.com/rustynet/rustynet/internal/promstack"
	slospec "github.com/rustynet/rustynet/internal/slo"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/policies"
)

// Name is the gate's name.
const Name = "slo"

// PolicyFile is the gate's policy, relative to the repository root.
const PolicyFile = "policies/slo.yaml"

// AlertmanagerFile is the routing the gate runs.
const AlertmanagerFile = "ops/alertmanager/alertmanager.yml"

// Register adds the slo gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    "sre",
		Timeout:  3 * time.Hour,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot, gates.NeedPrometheus},
		Run:      run,
		Fields:   []string{"profile", "load_seconds", "load", "rules_sha256", "policy_sha256", "slos", "problems", "prometheus", "alertmanager"},
		// A few nodes and a Prometheus under a paced load, judged against
		// objectives with second-scale thresholds: it runs beside the soak.
		Concurrent: true,
	})
}

// metricsPort is where the mesh's daemons serve their metrics, on their
// hosts' addresses, for the observer's Prometheus.
const metricsPort = "9470"

func run(ctx context.Context, r *gates.Run) error {
	pol, err := policies.LoadSLO(filepath.Join(r.Root, PolicyFile))
	if err != nil {
		return err // could not run
	}
	prof, ok := pol.Profiles[r.Channel]
	if !ok {
		return fmt.Errorf("%s: no load profile for channel %s", PolicyFile, r.Channel)
	}
	specs, err := slospec.LoadSpecs(r.Root)
	if err != nil {
		return err
	}
	rules, err := filepath.Glob(filepath.Join(r.Root, slospec.RulesDir, "*.yml"))
	if err != nil || len(rules) == 0 {
		return fmt.Errorf("no rule files in %s", slospec.RulesDir)
	}
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	fmt.Fprintf(r.Log, "profile %s: %v of load, %d nodes probing every %v, %g registrations and %g removals a minute\n",
		r.Channel, prof.Duration.D, prof.Nodes, prof.ProbeInterval.D, prof.RegistrationsPerMinute, prof.RemovalsPerMinute)

	mesh, err := testbed.NewMesh(ctx, testbed.MeshConfig{ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log,
		MetricsListen: ":" + metricsPort, NodeArgs: []string{"--probe-interval", prof.ProbeInterval.D.String()}, Observer: true},
		"wireguard", prof.Nodes, 1420)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	defer mesh.Close()
	targets := map[string][]string{"rustynet-controller": {mesh.ControllerHost().Addr.String() + ":" + metricsPort}}
	for _, nd := range mesh.Nodes() {
		targets["rustynet-node"] = append(targets["rustynet-node"], nd.Host().Addr.String()+":"+metricsPort)
	}
	stack, err := promstack.Start(ctx, promstack.Config{Host: mesh.Observer(), Work: filepath.Join(r.Work, "observer"), Rules: rules,
		Targets: targets, ScrapeInterval: pol.ScrapeInterval.D, EvalInterval: pol.EvaluationInterval.D,
		Alertmanager: filepath.Join(r.Root, AlertmanagerFile), Log: r.Log})
	if err != nil {
		return err // a Prometheus that cannot start is an error, never a pass
	}
	defer stack.Close()
	fmt.Fprintf(r.Log, "prometheus and alertmanager up; rules sha256 %s\n", stack.RulesDigest())

	start := time.Now()
	ld, err := meshload.Run(ctx, meshload.Config{Mesh: mesh, ControllerBin: ctl, Duration: prof.Duration.D,
		RegistrationsPerMinute: prof.RegistrationsPerMinute, RemovalsPerMinute: prof.RemovalsPerMinute, Log: r.Log, Progress: r.Progress})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	// Let the last events be scraped and the rules evaluated once more.
	time.Sleep(2*pol.ScrapeInterval.D + 2*pol.EvaluationInterval.D)
	end := time.Now()
	fmt.Fprintf(r.Log, "load done in %v: %s\n", end.Sub(start).Round(time.Second), ld)

	j := judge(ctx, stack, specs, pol, start, end)
	for _, m := range j.measurements {
		r.Measure(m)
	}
	for _, q := range j.queries {
		fmt.Fprintf(r.Log, "query %s = %s\n", q.Query, strings.TrimSpace(q.Result))
	}
	if err := r.ArtifactJSON("queries.json", j.queries); err != nil {
		return err
	}
	alerts, err := stack.Alerts(ctx)
	if err != nil {
		return fmt.Errorf("prometheus alerts: %w", err)
	}
	notes := stack.Notifications()
	if err := r.ArtifactJSON("alerts.json", map[string]any{"prometheus_alerts": alerts, "notifications": notes}); err != nil {
		return err
	}
	problems := j.problems
	for _, a := range alerts {
		if a.State == "firing" {
			problems = append(problems, fmt.Sprintf("alert %s fired (%v)", a.Labels["alertname"], a.Labels))
		}
	}
	for _, n := range notes {
		if n.Status == "firing" {
			for _, a := range n.Alerts {
				problems = append(problems, fmt.Sprintf("alert %s was delivered to %s", a.Labels["alertname"], n.Receiver))
			}
		}
	}
	if err := r.Details(map[string]any{"profile": r.Channel, "load_seconds": end.Sub(start).Seconds(), "load": ld,
		"rules_sha256": stack.RulesDigest(), "policy_sha256": pol.Digest, "slos": j.summaries, "problems": problems,
		"prometheus": promstack.PrometheusBin, "alertmanager": promstack.AlertmanagerBin}); err != nil {
		return err
	}
	if j.err != nil {
		return j.err // a query that failed: could not judge
	}
	if len(problems) > 0 {
		return gates.Fail("%d problems; %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

// Query is one PromQL query the gate ran, with its raw result.
type Query struct {
	Query  string    `json:"query"`
	At     time.Time `json:"at"`
	Result string    `json:"result"` // the result as Prometheus's JSON
	Error  string    `json:"error,omitempty"`
}

// Summary is one SLO over the run. A figure Prometheus had no value for
// (no events: 0/0) is null.
type Summary struct {
	ID            string   `json:"id"`
	Objective     float64  `json:"objective"` // percent
	Attainment    *float64 `json:"attainment"`
	BurnRate      *float64 `json:"burn_rate"`
	MaxWindowBurn *float64 `json:"max_window_burn_rate"`
	Events        *float64 `json:"events"`
	Evaluations   *float64 `json:"evaluations"`
	Passed        bool     `json:"passed"`
}

// finite returns v, or nil when it is not a finite number.
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

type judgement struct {
	queries      []Query
	measurements []evidence.Measurement
	summaries    []Summary
	problems     []string
	err          error
}

// querier evaluates an instant query to one value (promstack.Stack).
type querier interface {
	Scalar(ctx context.Context, q string, t time.Time) (float64, model.Value, error)
}

// judge reads each SLO over [start, end] through Prometheus's API.
func judge(ctx context.Context, s querier, specs []slospec.Spec, pol *policies.SLOPolicy, start, end time.Time) judgement {
	var j judgement
	window := fmt.Sprintf("%ds", int(end.Sub(start).Seconds()))
	q := func(query string) (float64, bool) {
		v, raw, err := s.Scalar(ctx, query, end)
		rec := Query{Query: query, At: end}
		if raw != nil {
			b, _ := json.Marshal(raw)
			rec.Result = string(b)
		}
		if err != nil {
			rec.Error = err.Error()
		}
		j.queries = append(j.queries, rec)
		if err != nil {
			return math.NaN(), false
		}
		return v, true
	}
	for _, sp := range specs {
		for _, o := range sp.Spec.SLOs {
			id := sp.Spec.Service + "-" + o.Name
			budget := 1 - o.Objective/100
			var ratio, events float64
			var ok bool
			switch {
			case o.SLI.Events != nil:
				errQ := strings.ReplaceAll(o.SLI.Events.ErrorQuery, "{{.window}}", window)
				totQ := strings.ReplaceAll(o.SLI.Events.TotalQuery, "{{.window}}", window)
				ratio, ok = q("(" + errQ + ") / (" + totQ + ")")
				var rate float64
				if r, k := q(totQ); k {
					rate = r
				}
				events = rate * end.Sub(start).Seconds()
			case o.SLI.Raw != nil:
				ratio, ok = q(strings.ReplaceAll(o.SLI.Raw.ErrorRatioQuery, "{{.window}}", window))
				// A time-based SLI: its events are the samples it averages.
				events, _ = q(fmt.Sprintf(`sum(count_over_time(%s[%s]))`, rawMetric(o.SLI.Raw.ErrorRatioQuery), window))
			}
			evals, _ := q(fmt.Sprintf(`count_over_time(slo:sli_error:ratio_rate5m{sloth_id=%q}[%s])`, id, window))
			maxWin, winOK := q(fmt.Sprintf(`max_over_time(slo:sli_error:ratio_rate5m{sloth_id=%q}[%s])`, id, window))
			attain, burn, winBurn := 1-ratio, ratio/budget, maxWin/budget
			sum := Summary{ID: id, Objective: o.Objective, Attainment: finite(attain), BurnRate: finite(burn), MaxWindowBurn: finite(winBurn),
				Events: finite(events), Evaluations: finite(evals)}
			var why []string
			switch {
			case !ok || sum.Attainment == nil:
				why = append(why, "its SLI has no value over the run (no events, or a query that failed)")
			default:
				if attain*100 < o.Objective {
					why = append(why, fmt.Sprintf("SLI %.4f%% under its objective %g%%", attain*100, o.Objective))
				}
				if burn > pol.MaxBurnRate {
					why = append(why, fmt.Sprintf("burn rate %.3g over the run, above %g", burn, pol.MaxBurnRate))
				}
			}
			if winOK && sum.MaxWindowBurn != nil && winBurn > pol.MaxWindowBurnRate {
				why = append(why, fmt.Sprintf("a 5-minute window burnt at %.3g, above %g", winBurn, pol.MaxWindowBurnRate))
			}
			if sum.Events == nil || events < pol.MinEvents {
				why = append(why, fmt.Sprintf("%.0f events over the run, fewer than %g: too little load to judge", events, pol.MinEvents))
			}
			sum.Passed = len(why) == 0
			for _, w := range why {
				j.problems = append(j.problems, id+": "+w)
			}
			j.summaries = append(j.summaries, sum)
			method := fmt.Sprintf("PromQL over the %s run on a real Prometheus (scrapes every %v), the SLI of %s", window, pol.ScrapeInterval.D, sp.File)
			objective := o.Objective / 100
			// A figure with no value is not signed as one: the problem
			// above says so.
			add := func(m evidence.Measurement, v *float64) {
				if v != nil {
					m.Repetitions, m.Values = 1, []float64{*v}
					j.measurements = append(j.measurements, m)
				}
			}
			add(evidence.Measurement{Name: id + ":attainment", Unit: "ratio", Method: method + ": 1 - bad/all",
				Budget: &evidence.Budget{Min: &objective, Source: sp.File + " (objective)"}}, sum.Attainment)
			add(evidence.Measurement{Name: id + ":burn_rate", Unit: "ratio", Method: method + ": the run's error ratio over the error budget (1 spends it in exactly the SLO period)",
				Budget: &evidence.Budget{Max: &pol.MaxBurnRate, Source: PolicyFile + " (max_burn_rate)"}}, sum.BurnRate)
			add(evidence.Measurement{Name: id + ":events", Unit: "events", Method: method + ": all events (for a time-based SLI, the samples it averages)",
				Budget: &evidence.Budget{Min: &pol.MinEvents, Source: PolicyFile + " (min_events)"}}, sum.Events)
		}
	}
	for i := range j.measurements {
		j.measurements[i] = gates.Summarize(j.measurements[i])
	}
	sort.Strings(j.problems)
	// Every SLO query failing means Prometheus failed, not the SLOs.
	failed := 0
	for _, qq := range j.queries {
		if qq.Error != "" && !strings.Contains(qq.Error, promstack.ErrNoData.Error()) {
			failed++
		}
	}
	if failed > 0 && failed == len(j.queries) {
		j.err = fmt.Errorf("every query to Prometheus failed, first: %s", j.queries[0].Error)
	}
	return j
}

// rawMetric is the first metric name a raw SLI's query averages (inside
// avg_over_time(...)), for counting its samples.
func rawMetric(q string) string {
	_, after, ok := strings.Cut(q, "avg_over_time(")
	if !ok {
		return "up"
	}
	name, _, _ := strings.Cut(after, "[")
	return strings.TrimSpace(name)
}
