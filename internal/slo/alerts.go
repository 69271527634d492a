package slo

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	yaml3 "gopkg.in/yaml.v3"
)

// AlertCatalogue is the generated list of every alert and its runbook.
const AlertCatalogue = "documents/operations/alert-catalogue.md"

// RunbookSections are the sections every runbook has, as "## " headings,
// in this order. A section may be followed by more text of any kind;
// Mitigation may hold a scripted mitigation (a ```sh block) the incident
// drills run.
var RunbookSections = []string{"Symptoms", "Impact", "Diagnosis", "Mitigation", "Escalation"}

// Alert is one alerting rule, as the rule files declare it.
type Alert struct {
	Name        string
	File        string // relative to the repository root
	Expr        string
	For         string
	Severities  []string // the distinct severity labels of its rules
	Summary     string
	RunbookURL  string
	FromSLO     bool // generated from an SLO spec
	annotations map[string]string
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// LoadAlerts reads every alerting rule of root/RulesDir/*.yml. Rules that
// share a name (an SLO's page and ticket alerts) are one Alert; they must
// agree on their runbook.
func LoadAlerts(root string) ([]Alert, error) {
	files, err := filepath.Glob(filepath.Join(root, RulesDir, "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files (*.yml) in %s", filepath.Join(root, RulesDir))
	}
	sort.Strings(files)
	byName := map[string]*Alert{}
	var order []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rel := filepath.ToSlash(filepath.Join(RulesDir, filepath.Base(f)))
		var rf ruleFile
		if err := yaml3.Unmarshal(data, &rf); err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				a := byName[r.Alert]
				if a == nil {
					a = &Alert{Name: r.Alert, File: rel, Expr: oneLine(r.Expr), For: r.For, Summary: r.Annotations["summary"],
						RunbookURL: r.Annotations["runbook_url"], FromSLO: r.Labels["sloth_severity"] != "", annotations: r.Annotations}
					if a.Summary == "" {
						a.Summary = r.Annotations["title"]
					}
					byName[r.Alert] = a
					order = append(order, r.Alert)
				} else if a.File != rel {
					return nil, fmt.Errorf("%s: alert %s is also defined in %s", rel, r.Alert, a.File)
				} else if a.RunbookURL != r.Annotations["runbook_url"] {
					return nil, fmt.Errorf("%s: the rules of alert %s link different runbooks (%q, %q)", rel, r.Alert, a.RunbookURL, r.Annotations["runbook_url"])
				}
				if sev := r.Labels["severity"]; !slices.Contains(a.Severities, sev) {
					a.Severities = append(a.Severities, sev)
				}
			}
		}
	}
	out := make([]Alert, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out, nil
}

// RunbookPath is the runbook an alert must link, relative to the root.
func RunbookPath(alert string) string { return RunbookDir + "/" + alert + ".md" }

// CheckAlerts holds every alert to the on-call rules: a known severity on
// each of its rules, a runbook_url to its runbook, and that runbook
// present with every section of RunbookSections. It returns every
// problem, each naming the alert.
func CheckAlerts(root string, alerts []Alert) []error {
	var errs []error
	for _, a := range alerts {
		for _, sev := range a.Severities {
			if !slices.Contains(Severities, sev) {
				errs = append(errs, fmt.Errorf("alert %s (%s): severity %q is not one of %v", a.Name, a.File, sev, Severities))
			}
		}
		if want := RunbookURLPrefix + a.Name + ".md"; a.RunbookURL != want {
			errs = append(errs, fmt.Errorf("alert %s (%s): runbook_url %q, want %q", a.Name, a.File, a.RunbookURL, want))
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, RunbookPath(a.Name)))
		if err != nil {
			errs = append(errs, fmt.Errorf("alert %s (%s) has no runbook: %w", a.Name, a.File, err))
			continue
		}
		if missing := missingSections(string(data)); len(missing) > 0 {
			errs = append(errs, fmt.Errorf("runbook %s lacks the sections %s (every runbook has %s, in that order)", RunbookPath(a.Name), strings.Join(missing, ", "), strings.Join(RunbookSections, ", ")))
		}
	}
	return errs
}

// missingSections lists the RunbookSections a runbook lacks or holds out
// of order.
func missingSections(md string) []string {
	var headings []string
	for _, line := range strings.Split(md, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			headings = append(headings, strings.TrimSpace(h))
		}
	}
	var missing []string
	at := 0
	for _, want := range RunbookSections {
		i := slices.Index(headings[at:], want)
		if i < 0 {
			missing = append(missing, want)
			continue
		}
		at += i + 1
	}
	return missing
}

// MitigationScript returns the scripted mitigation of a runbook: the first
// ```sh block under its Mitigation section, or "" when it has none.
func MitigationScript(md string) string {
	_, after, ok := strings.Cut(md, "\n## Mitigation")
	if !ok {
		return ""
	}
	if i := strings.Index(after, "\n## "); i >= 0 {
		after = after[:i]
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		return ""
	}
	script, _, ok := strings.Cut(block, "```")
	if !ok {
		return ""
	}
	return script
}

// RenderAlertCatalogue lists every alert with its severity, condition and
// runbook.
func RenderAlertCatalogue(alerts []Alert) []byte {
	var b strings.Builder
	b.WriteString("# Alert catalogue\n\n")
	b.WriteString("Generated by `make rules` from the rule files in `" + RulesDir + "/`. Do not edit: change the rules (or the SLO specs in `" + SpecDir + "/`) and regenerate.\n\n")
	b.WriteString("Severities and what each asks of the on-call engineer are in [on-call.md](on-call.md). Every alert links its runbook (a test holds each runbook to its sections: symptoms, impact, diagnosis, mitigation, escalation), and every paging alert's runbook has a scripted mitigation.\n\n")
	b.WriteString("| Alert | Severity | Fires | Runbook | Rules |\n|---|---|---|---|---|\n")
	for _, a := range alerts {
		fires := "when its condition has held for " + a.For
		switch {
		case a.FromSLO:
			fires = "when the SLO's error budget burns too fast ([SLO catalogue](slo-catalogue.md))"
		case a.For == "":
			fires = "as soon as its condition holds"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | [%s](runbooks/%s.md) | `%s` |\n", a.Name, strings.Join(a.Severities, ", "), fires, a.Name, a.Name, a.File)
	}
	for _, a := range alerts {
		if a.FromSLO {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\nSummary: `%s`\n\n```promql\n%s\n```\n", a.Name, a.annotations["description"], a.Summary, a.Expr)
	}
	return []byte(b.String())
}
