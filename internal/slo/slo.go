// Package slo turns the service level objectives in slos/ (Sloth's
// prometheus/v1 spec format) into Prometheus recording and multi-window
// multi-burn-rate alert rules with Sloth's Go library, and writes the SLO
// and alert catalogues of documents/operations/ from the specs and the
// rules. The generated files are checked in; a test fails when they are
// stale (`make rules` regenerates them).
//
//go:generate go run ./slogen -root ../..
package slo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/slok/sloth/pkg/common/model"
	"github.com/slok/sloth/pkg/lib"
	prometheusv1 "github.com/slok/sloth/pkg/prometheus/api/v1"
	"sigs.k8s.io/yaml"
)

// Paths, relative to the repository root.
const (
	SpecDir      = "slos"
	RulesDir     = "ops/prometheus/rules"
	RunbookDir   = "documents/operations/runbooks"
	SLOCatalogue = "documents/operations/slo-catalogue.md"
	// RunbookURLPrefix is where an alert's runbook_url must point: the
	// runbook of the same name under RunbookDir, on the main branch.
	RunbookURLPrefix = "https://github.com/rustynet/rustynet/blob/main/" + RunbookDir + "/"
)

// SlothVersion is the Sloth release the rules are generated with; it must
// be the version go.mod requires (a test checks). The generated files name
// it rather than what the library reads from the build, which differs
// between `go run` and `go test`.
const SlothVersion = "v0.16.0"

// Severities an alert may carry, most urgent first: page wakes the on-call
// engineer, ticket waits for working hours (documents/operations/on-call.md).
var Severities = []string{"page", "ticket"}

// Spec is one SLO spec file.
type Spec struct {
	File string // relative to the repository root
	Spec prometheusv1.Spec
}

// LoadSpecs reads every *.yaml spec in root/SpecDir, strictly: a field the
// format does not have (a misspelt key) is refused, naming the file and
// the field, where Sloth's own loader would drop it without a word. It also
// holds each SLO to this project's rules: both alerts enabled, each with a
// severity, and a runbook_url to the runbook named after the alert.
func LoadSpecs(root string) ([]Spec, error) {
	files, err := filepath.Glob(filepath.Join(root, SpecDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no SLO specs (*.yaml) in %s", filepath.Join(root, SpecDir))
	}
	sort.Strings(files)
	var out []Spec
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rel := filepath.ToSlash(filepath.Join(SpecDir, filepath.Base(f)))
		s, err := ParseSpec(rel, data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	seen := map[string]string{}
	for _, s := range out {
		if prev, ok := seen[s.Spec.Service]; ok {
			return nil, fmt.Errorf("%s: service %q is already specified in %s (one file per service)", s.File, s.Spec.Service, prev)
		}
		seen[s.Spec.Service] = s.File
	}
	return out, nil
}

// ParseSpec parses and checks one spec; file names it in errors.
func ParseSpec(file string, data []byte) (Spec, error) {
	var sp prometheusv1.Spec
	if err := yaml.UnmarshalStrict(data, &sp); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", file, err)
	}
	if sp.Version != prometheusv1.Version {
		return Spec{}, fmt.Errorf("%s: version: %q, want %q", file, sp.Version, prometheusv1.Version)
	}
	if sp.Service == "" {
		return Spec{}, fmt.Errorf("%s: service: required", file)
	}
	if len(sp.SLOs) == 0 {
		return Spec{}, fmt.Errorf("%s: slos: at least one SLO is required", file)
	}
	for i, o := range sp.SLOs {
		at := fmt.Sprintf("%s: slos[%d] (%s)", file, i, o.Name)
		if o.Description == "" {
			return Spec{}, fmt.Errorf("%s: description: required (the SLO catalogue shows it)", at)
		}
		a := o.Alerting
		if a.Name == "" {
			return Spec{}, fmt.Errorf("%s: alerting.name: required", at)
		}
		if want := RunbookURLPrefix + a.Name + ".md"; a.Annotations["runbook_url"] != want {
			return Spec{}, fmt.Errorf("%s: alerting.annotations.runbook_url: %q, want %q (every alert links its runbook)", at, a.Annotations["runbook_url"], want)
		}
		for _, al := range []struct {
			field, want string
			alert       prometheusv1.Alert
		}{{"page_alert", "page", a.PageAlert}, {"ticket_alert", "ticket", a.TicketAlert}} {
			if al.alert.Disable {
				return Spec{}, fmt.Errorf("%s: alerting.%s.disable: an SLO pages on a fast burn and opens a ticket on a slow one; both stay enabled", at, al.field)
			}
			if got := al.alert.Labels["severity"]; got != al.want {
				return Spec{}, fmt.Errorf("%s: alerting.%s.labels.severity: %q, want %q", at, al.field, got, al.want)
			}
		}
	}
	return Spec{File: file, Spec: sp}, nil
}

// Rules is one generated rule file.
type Rules struct {
	Spec   Spec
	Path   string // relative to the repository root
	Data   []byte
	Result model.PromSLOGroupResult
}

// Generate turns each spec into a standard Prometheus rule file, with the
// library's default 30-day SLO period and Google's window catalogue.
// Sloth's validation errors (a query without {{.window}}, an objective
// over 100) come back naming the file, the SLO and the field.
func Generate(ctx context.Context, specs []Spec) ([]Rules, error) {
	gen, err := lib.NewPrometheusSLOGenerator(lib.PrometheusSLOGeneratorConfig{CallerAgent: lib.CallerAgentAPI})
	if err != nil {
		return nil, fmt.Errorf("sloth: %w", err)
	}
	var out []Rules
	for _, s := range specs {
		res, err := gen.GenerateFromSlothV1(ctx, s.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.File, err)
		}
		pinVersion(res)
		var buf bytes.Buffer
		if err := gen.WriteResultAsPrometheusStd(ctx, *res, &buf); err != nil {
			return nil, fmt.Errorf("%s: %w", s.File, err)
		}
		data := headerRE.ReplaceAll(buf.Bytes(), []byte(header(s.File)))
		out = append(out, Rules{Spec: s, Path: RulesDir + "/slo-" + s.Spec.Service + ".yml", Data: data, Result: *res})
	}
	return out, nil
}

var headerRE = regexp.MustCompile(`(?m)^# Code generated by Sloth \([^)]*\): https://github\.com/slok/sloth\.\n# DO NOT EDIT\.\n`)

func header(spec string) string {
	return fmt.Sprintf("# Code generated by Sloth (%s, github.com/slok/sloth/pkg/lib) from %s by `make rules`.\n# DO NOT EDIT.\n", SlothVersion, spec)
}

// pinVersion sets the sloth_version label of the info rule to
// SlothVersion, so the output does not depend on how the binary was built.
func pinVersion(res *model.PromSLOGroupResult) {
	for i := range res.SLOResults {
		rules := res.SLOResults[i].PrometheusRules.MetadataRecRules.Rules
		for j := range rules {
			if _, ok := rules[j].Labels["sloth_version"]; ok {
				rules[j].Labels["sloth_version"] = SlothVersion
			}
		}
	}
}

// Catalogue renders the SLO catalogue: every objective, its SLI, and the
// alerts it raises, from the specs and the generated rules.
func Catalogue(rules []Rules) []byte {
	var b strings.Builder
	b.WriteString("# SLO catalogue\n\n")
	b.WriteString("Generated by `make rules` from the specs in `" + SpecDir + "/` (Sloth prometheus/v1) and the rules generated from them in `" + RulesDir + "/`. Do not edit: change the spec and regenerate.\n\n")
	b.WriteString("Every SLO is measured over a 30-day period. Its alert pages on a fast burn of the error budget (14.4 times the sustainable rate over 5 minutes and 1 hour, or 6 times over 30 minutes and 6 hours) and opens a ticket on a slow one (3 times over 2 hours and 1 day, or once over 6 hours and 3 days).\n\n")
	b.WriteString("| Service | SLO | Objective | Error budget over the period | Alert | Spec |\n|---|---|---|---|---|---|\n")
	for _, r := range rules {
		for _, res := range r.Result.SLOResults {
			s := res.SLO
			budget := (100 - s.Objective) / 100 * s.TimeWindow.Minutes()
			fmt.Fprintf(&b, "| %s | %s | %g%% | %.3g%% of events (%.1f minutes of full outage) | [%s](runbooks/%s.md) | `%s` |\n", s.Service, s.Name, s.Objective, 100-s.Objective, budget, s.PageAlertMeta.Name, s.PageAlertMeta.Name, r.Spec.File)
		}
	}
	for _, r := range rules {
		for _, res := range r.Result.SLOResults {
			s := res.SLO
			fmt.Fprintf(&b, "\n## %s / %s\n\n%s\n\n", s.Service, s.Name, s.Description)
			fmt.Fprintf(&b, "- Objective: %g%% over %g days (`sloth_id=%q`).\n", s.Objective, s.TimeWindow.Hours()/24, s.ID)
			if s.SLI.Events != nil {
				fmt.Fprintf(&b, "- Bad events: `%s`\n- All events: `%s`\n", oneLine(s.SLI.Events.ErrorQuery), oneLine(s.SLI.Events.TotalQuery))
			}
			if s.SLI.Raw != nil {
				fmt.Fprintf(&b, "- Error ratio: `%s`\n", oneLine(s.SLI.Raw.ErrorRatioQuery))
			}
			fmt.Fprintf(&b, "- Recording rules: `slo:sli_error:ratio_rate<window>{sloth_id=%q}`, burn rate `slo:current_burn_rate:ratio`, budget left `slo:period_error_budget_remaining:ratio`.\n", s.ID)
			fmt.Fprintf(&b, "- Alert: `%s` (severity page on a fast burn, ticket on a slow one); runbook [%s](runbooks/%s.md).\n", s.PageAlertMeta.Name, s.PageAlertMeta.Name, s.PageAlertMeta.Name)
		}
	}
	return []byte(b.String())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
