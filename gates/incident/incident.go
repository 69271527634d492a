// Package incident is the incident gate: it runs the drills of
// scenarios/incidents/ — each a real fault injected into its own mesh (a
// controller and two nodes in namespaces) watched by a real Prometheus and
// Alertmanager with the project's rules and routing — and, for each,
// measures that the expected alerts fire and reach the on-call receivers
// within the drill's detect target, that the linked runbook's scripted
// mitigation ends the fault, and that the alerts resolve. Each drill
// writes a postmortem draft by the project's standard, its timeline filled
// from the measurements. It blocks on a missed target, a failed step, or a
// paging alert that no drill rehearses.
package incident

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	slospec "github.com/rustynet/rustynet/internal/slo"
)

// Name is the gate's name.
const Name = "incident"

// Owner owns the gate and the drafts' action items.
const Owner = "sre"

// AlertmanagerFile is the routing the drills run.
const AlertmanagerFile = "ops/alertmanager/alertmanager.yml"

// Prometheus's pace in a drill: the rules' own `for` and the routing's
// group_wait dominate the time to detect, not these.
const (
	scrapeInterval = 2 * time.Second
	evalInterval   = 2 * time.Second
)

// Register adds the incident gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    Owner,
		Timeout:  40 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedRoot, gates.NeedPrometheus},
		Run:      run,
		Fields:   []string{"drills", "coverage_problems", "routes", "problems", "scrape_interval_s", "evaluation_interval_s"},
		// Each drill waits on alert rules' minutes with a few idle
		// daemons; no figure it judges is tipped by a neighbour's load.
		Concurrent: true,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	drills, err := LoadAll(r.Root)
	if err != nil {
		return err // could not run
	}
	alerts, err := slospec.LoadAlerts(r.Root)
	if err != nil {
		return err
	}
	var problems []string
	for _, e := range slospec.CheckAlerts(r.Root, alerts) {
		problems = append(problems, e.Error())
	}
	amFile := filepath.Join(r.Root, AlertmanagerFile)
	route, routes, err := Routes(ctx, amFile, alerts)
	if err != nil {
		return err
	}
	var infos []AlertInfo
	for _, a := range alerts {
		infos = append(infos, AlertInfo{Name: a.Name, Severities: a.Severities})
	}
	script := func(alert string) string {
		md, err := os.ReadFile(filepath.Join(r.Root, slospec.RunbookPath(alert)))
		if err != nil {
			return ""
		}
		return slospec.MitigationScript(string(md))
	}
	coverage := Coverage(drills, infos, route, script)
	problems = append(problems, coverage...)
	ctl, node := r.Binaries["rustynet-controller"], r.Binaries["rustynetd"]
	if ctl == "" || node == "" {
		return fmt.Errorf("no binaries: the build gate did not run or failed")
	}
	rules, err := filepath.Glob(filepath.Join(r.Root, slospec.RulesDir, "*.yml"))
	if err != nil || len(rules) == 0 {
		return fmt.Errorf("no rule files in %s", slospec.RulesDir)
	}
	env := Env{Root: r.Root, ControllerBin: ctl, DaemonBin: node, Work: r.Work, Log: r.Log, Rules: rules,
		Alertmanager: amFile, ScrapeInterval: scrapeInterval, EvalPeriod: evalInterval, Routes: routes}
	fmt.Fprintf(r.Log, "%d drills, each on its own mesh, all at once\n", len(drills))

	// Every drill at once: each waits minutes on rules and routing with a
	// handful of idle daemons.
	results := make([]*Result, len(drills))
	errs := make([]error, len(drills))
	var wg sync.WaitGroup
	for i, d := range drills {
		wg.Go(func() { results[i], errs[i] = Run(ctx, env, d) })
	}
	wg.Wait()
	for i, d := range drills {
		if errs[i] != nil {
			return fmt.Errorf("drill %s could not run: %w", d.Name, errs[i])
		}
	}

	var summaries []map[string]any
	for _, res := range results {
		if err := r.Artifact("postmortems/"+res.Drill+".md", Postmortem(res, Owner)); err != nil {
			return err
		}
		for _, p := range res.Problems {
			problems = append(problems, res.Drill+": "+p)
		}
		method := fmt.Sprintf("drill %s (%s): a real fault on a mesh of a controller and %d nodes, watched by Prometheus (scrapes and evaluates every %v) and Alertmanager with %s; one run", res.Drill, res.File, nodes, scrapeInterval, AlertmanagerFile)
		measure := func(name string, v *float64, target float64, what string) {
			if v == nil {
				return
			}
			t := target
			r.Measure(gates.Summarize(evidence.Measurement{Name: res.Drill + ":" + name, Unit: "s", Method: method + "; " + what,
				Repetitions: 1, Values: []float64{*v}, Budget: &evidence.Budget{Max: &t, Source: res.File + " (targets)"}}))
		}
		measure("time_to_detect", res.TimeToDetect, res.Targets.Detect, "injected to the last expected alert delivered")
		measure("script", res.ScriptSeconds, res.Targets.Mitigate, "the runbook's scripted mitigation, start to success")
		if res.TimeToMitigate != nil {
			v := *res.TimeToMitigate
			r.Measure(gates.Summarize(evidence.Measurement{Name: res.Drill + ":time_to_mitigate", Unit: "s",
				Method: method + "; paged to resolved (the postmortem standard's time to mitigate)", Repetitions: 1, Values: []float64{v}}))
		}
		fmt.Fprintf(r.Log, "drill %s: passed=%v detect=%s mitigate=%s\n", res.Drill, res.Passed, fsecs(res.TimeToDetect), fsecs(res.TimeToMitigate))
		summaries = append(summaries, map[string]any{"drill": res.Drill, "passed": res.Passed, "injected": res.Injected,
			"paged": res.Paged, "mitigated": res.Mitigated, "resolved": res.Resolved,
			"time_to_detect_s": res.TimeToDetect, "time_to_mitigate_s": res.TimeToMitigate, "alerts": res.Alerts, "problems": res.Problems})
	}
	if err := r.ArtifactJSON("drills.json", results); err != nil {
		return err
	}
	sort.Strings(problems)
	if err := r.Details(map[string]any{"drills": summaries, "coverage_problems": coverage, "routes": route, "problems": problems,
		"scrape_interval_s": scrapeInterval.Seconds(), "evaluation_interval_s": evalInterval.Seconds()}); err != nil {
		return err
	}
	if len(problems) > 0 {
		return gates.Fail("%d problems; %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

func fsecs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0fs", *v)
}

// Routes asks Alertmanager's routing (amtool) where each alert goes: by
// name, the receiver of its most urgent severity (what a drill must see
// it reach), and by RouteKey, the receiver of each of its severities.
func Routes(ctx context.Context, amFile string, alerts []slospec.Alert) (byName, byKey map[string]string, err error) {
	byName, byKey = map[string]string{}, map[string]string{}
	for _, a := range alerts {
		for _, sev := range a.Severities {
			recv, err := routeOf(ctx, amFile, a.Name, sev)
			if err != nil {
				return nil, nil, err
			}
			byKey[RouteKey(a.Name, sev)] = recv
			if byName[a.Name] == "" || sev == "page" {
				byName[a.Name] = recv
			}
		}
	}
	return byName, byKey, nil
}

// routeOf asks amtool which receiver Alertmanager's routing gives an alert
// of that name and severity.
func routeOf(ctx context.Context, amFile, alert, severity string) (string, error) {
	out, err := exec.CommandContext(ctx, "amtool", "config", "routes", "test", "--config.file="+amFile,
		"alertname="+alert, "severity="+severity).Output()
	if err != nil {
		return "", fmt.Errorf("amtool config routes test %s: %w", alert, err)
	}
	return strings.TrimSpace(string(out)), nil
}
