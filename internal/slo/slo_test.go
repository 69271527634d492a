package slo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/internal/require"
)

const root = "../.."

// TestAlertsHaveRunbooks holds every alert of the checked-in rule files to
// a severity and a runbook with every section.
func TestAlertsHaveRunbooks(t *testing.T) {
	alerts, err := LoadAlerts(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) < 5 {
		t.Fatalf("%d alerts; want the SLOs' and the hand-written ones", len(alerts))
	}
	for _, err := range CheckAlerts(root, alerts) {
		t.Error(err)
	}
	// Every paging alert's runbook has a scripted mitigation for the
	// incident drills to run.
	for _, a := range alerts {
		if a.FromSLO || !contains(a.Severities, "page") {
			continue
		}
		md, err := os.ReadFile(filepath.Join(root, RunbookPath(a.Name)))
		if err != nil {
			continue // reported above
		}
		if MitigationScript(string(md)) == "" {
			t.Errorf("runbook of paging alert %s has no scripted mitigation (a ```sh block under Mitigation)", a.Name)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// goodSpec is a spec every check accepts (testdata/spec.yaml, also read by
// package gen's tests).
var goodSpec = func() string {
	data, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		panic(err)
	}
	return string(data)
}()

// TestParseSpecRefuses feeds specs with one fault each: each is refused,
// naming the file and the field.
func TestParseSpecRefuses(t *testing.T) {
	if _, err := ParseSpec("slos/good.yaml", []byte(goodSpec)); err != nil {
		t.Fatalf("the good spec: %v", err)
	}
	cases := []struct{ name, from, to, want string }{
		{"misspelt key", "error_query:", "error_querry:", `unknown field "error_querry"`},
		{"wrong version", `version: "prometheus/v1"`, `version: "prometheus/v2"`, "version:"},
		{"no service", `service: "svc"`, `service: ""`, "service: required"},
		{"no description", `description: "answers"`, `description: ""`, "description: required"},
		{"no alert name", "name: SvcBurn", "name: ''", "alerting.name: required"},
		{"runbook elsewhere", "runbooks/SvcBurn.md", "runbooks/Other.md", "alerting.annotations.runbook_url"},
		{"ticket disabled", "      ticket_alert:\n", "      ticket_alert:\n        disable: true\n", "alerting.ticket_alert.disable"},
		{"page not paging", "severity: page", "severity: ticket", "alerting.page_alert.labels.severity"},
		{"not yaml", "slos:", "slos: [", "slos/bad.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(goodSpec, tc.from, tc.to, 1)
			if bad == goodSpec {
				t.Fatalf("the case changes nothing")
			}
			_, err := ParseSpec("slos/bad.yaml", []byte(bad))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "slos/bad.yaml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name the file and %q", err, tc.want)
			}
		})
	}
}

// TestCheckAlertsRefuses: an alert without its runbook, or with a runbook
// that lacks a section, is refused, naming the alert.
func TestCheckAlertsRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, RunbookDir), 0o755); err != nil {
		t.Fatal(err)
	}
	full := "# X\n\n## Symptoms\n\n## Impact\n\n## Diagnosis\n\n## Mitigation\n\n## Escalation\n"
	os.WriteFile(filepath.Join(dir, RunbookPath("Complete")), []byte(full), 0o644)
	os.WriteFile(filepath.Join(dir, RunbookPath("NoEscalation")), []byte(strings.Replace(full, "## Escalation\n", "", 1)), 0o644)
	alerts := []Alert{
		{Name: "Complete", Severities: []string{"page"}, RunbookURL: RunbookURLPrefix + "Complete.md"},
		{Name: "NoRunbook", Severities: []string{"page"}, RunbookURL: RunbookURLPrefix + "NoRunbook.md"},
		{Name: "NoEscalation", Severities: []string{"ticket"}, RunbookURL: RunbookURLPrefix + "NoEscalation.md"},
		{Name: "NoURL", Severities: []string{"page"}},
		{Name: "Complete", Severities: []string{"urgent"}, RunbookURL: RunbookURLPrefix + "Complete.md"},
	}
	errs := CheckAlerts(dir, alerts)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{"alert NoRunbook", "has no runbook", "NoEscalation.md lacks the sections Escalation", "alert NoURL", `severity "urgent"`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if len(errs) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(errs), got)
	}
}

func TestMitigationScript(t *testing.T) {
	md := "## Diagnosis\n\n```sh\nnot this\n```\n\n## Mitigation\n\nText.\n\n```sh\nrestart it\n```\n\n## Escalation\n\n```sh\nnor this\n```\n"
	if got := MitigationScript(md); got != "restart it\n" {
		t.Fatalf("got %q", got)
	}
	if got := MitigationScript("## Mitigation\n\nby hand\n\n## Escalation\n\n```sh\nx\n```\n"); got != "" {
		t.Fatalf("a block of another section was taken: %q", got)
	}
}

// TestPromtool runs promtool over the rule files: every file passes
// `check rules`, and the unit tests in ops/prometheus/tests pass, one of
// which exists for every alert.
func TestPromtool(t *testing.T) {
	promtool := require.Command(t, "promtool")
	rules, _ := filepath.Glob(filepath.Join(root, RulesDir, "*.yml"))
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, _ := filepath.Glob(filepath.Join(root, "ops/prometheus/tests/*.yml"))
	if len(tests) == 0 {
		t.Fatal("no promtool tests in ops/prometheus/tests")
	}
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert is tested: named by an alert_rule_test of some test file.
	var all strings.Builder
	for _, f := range tests {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
	}
	alerts, err := LoadAlerts(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !strings.Contains(all.String(), "alertname: "+a.Name+"\n") {
			t.Errorf("alert %s has no promtool unit test in ops/prometheus/tests", a.Name)
		}
	}
}

// TestAmtool checks the Alertmanager configuration.
func TestAmtool(t *testing.T) {
	amtool := require.Command(t, "amtool")
	out, err := exec.Command(amtool, "check-config", filepath.Join(root, "ops/alertmanager/alertmanager.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte("version: prometheus/v1\nservice: s\nslos: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("f.yaml", data)
		if err == nil && (s.Spec.Service == "" || len(s.Spec.SLOs) == 0) {
			t.Fatalf("accepted a spec without a service or SLOs: %+v", s.Spec)
		}
	})
}
