// Package slo turns the service level objectives in slos/ (Sloth's
// prometheus/v1 spec format) into Prometheus recording and multi-window
// multi-burn-rate alert rules with Sloth's Go library, and writes the SLO
// and alert catalogues of documents/operations/ from the specs and the
// rules. The generated files are checked in; a test fails when they are
// stale (`make rules` regenerates them).
//
// This package reads and checks; package gen (internal/slo/gen) generates,
// with Sloth's library, which only the generator and its tests link.
package slo

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
