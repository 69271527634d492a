package incident

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	slospec "github.com/rustynet/rustynet/internal/slo"
)

const goodDrill = `version: 1
name: good
summary: The controller is killed.
fault:
  kind: kill-controller
expect:
  - alert: RustynetControllerDown
    receiver: oncall-pager
    resolves: true
targets: {detect: 3m, mitigate: 1m, resolve: 3m}
mitigation: {runbook: RustynetControllerDown, in: observer}
`

func TestParseGood(t *testing.T) {
	s, err := Parse("scenarios/incidents/good.yaml", []byte(goodDrill))
	if err != nil {
		t.Fatal(err)
	}
	if s.Fault.Kind != KillController || len(s.Expect) != 1 || s.Targets.Detect.D.Minutes() != 3 || s.Digest == "" {
		t.Errorf("parsed %+v", s)
	}
}

// Every refusal names the file and the field at fault.
func TestParseRefuses(t *testing.T) {
	cases := []struct{ name, edit, from, want string }{
		{"unknown field", "fault:\n  kind: kill-controller\n", "fault:\n  kind: kill-controller\n  colour: red\n", "colour"},
		{"unknown kind", "kind: kill-controller", "kind: unplug-everything", "fault.kind"},
		{"no expectations", "expect:\n  - alert: RustynetControllerDown\n    receiver: oncall-pager\n    resolves: true\n", "expect: []\n", "expect"},
		{"unresolved without why", "resolves: true", "resolves: false", "why_not_resolved"},
		{"zero target", "detect: 3m", "detect: 0s", "targets.detect"},
		{"bad duration", "detect: 3m", "detect: soon", "not a duration"},
		{"long target", "resolve: 3m", "resolve: 2h", "targets.resolve"},
		{"bad runbook", "runbook: RustynetControllerDown", "runbook: ../../etc/passwd", "mitigation.runbook"},
		{"node for a controller fault", "in: observer", "in: node", "mitigation.in"},
		{"wrong file name", "name: good", "name: other", "must be named"},
		{"param of another kind", "kind: kill-controller\n", "kind: kill-controller\n  disk_bytes: 100\n", "disk_bytes"},
		{"version", "version: 1", "version: 2", "version 2"},
		{"two documents", "in: observer}\n", "in: observer}\n---\nversion: 1\n", "more than one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := goodDrill
			if !strings.Contains(src, c.edit) {
				t.Fatalf("test bug: %q not in the good drill", c.edit)
			}
			src = strings.Replace(src, c.edit, c.from, 1)
			_, err := Parse("scenarios/incidents/good.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "scenarios/incidents/good.yaml") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name the file and %q", err, c.want)
			}
		})
	}
}

func TestParseFaultParameters(t *testing.T) {
	drop := strings.Replace(goodDrill, "kind: kill-controller\n", "kind: drop-traffic\n  node: 1\n  traffic: tunnel\n", 1)
	drop = strings.Replace(drop, "resolves: true", "resolves: false\n    why_not_resolved: burn windows", 1)
	if _, err := Parse("good.yaml", []byte(drop)); err == nil || !strings.Contains(err.Error(), "recovered") {
		t.Errorf("a drill with no resolving alert and no recovered expression: %v", err)
	}
	drop += "recovered: up == 1\n"
	if _, err := Parse("good.yaml", []byte(drop)); err != nil {
		t.Errorf("drop-traffic drill refused: %v", err)
	}
	for _, bad := range []string{"node: 3", "node: 0", "traffic: everything"} {
		k, _, _ := strings.Cut(bad, ":")
		src := drop
		if k == "node" {
			src = strings.Replace(src, "node: 1", bad, 1)
		} else {
			src = strings.Replace(src, "traffic: tunnel", bad, 1)
		}
		if _, err := Parse("good.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "fault."+k) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	for _, pct := range []string{"0", "0.5", "80", ".nan"} {
		thr := strings.Replace(goodDrill, "kind: kill-controller\n", "kind: throttle-controller\n  cpu_percent: "+pct+"\n", 1)
		if _, err := Parse("good.yaml", []byte(thr)); err == nil || !strings.Contains(err.Error(), "fault.cpu_percent") {
			t.Errorf("cpu_percent %s: %v", pct, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodDrill))
	files, _ := filepath.Glob(filepath.Join("..", "..", Dir, "*.yaml"))
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\nfault: {kind: fill-disk, disk_bytes: -1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("scenarios/incidents/good.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "scenarios/incidents/good.yaml") {
				t.Fatalf("a refusal that does not name the file: %v", err)
			}
			return
		}
		if s.Name != "good" || len(s.Expect) == 0 || s.Targets.Detect.D <= 0 {
			t.Fatalf("accepted a drill that breaks the rules: %+v", s)
		}
	})
}

// The repository's drills parse, and cover every paging alert of the
// repository's rules, each at the receiver the routing gives it.
func TestRepositoryDrillsCoverPagingAlerts(t *testing.T) {
	root := filepath.Join("..", "..")
	drills, err := LoadAll(root)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := slospec.LoadAlerts(root)
	if err != nil {
		t.Fatal(err)
	}
	var infos []AlertInfo
	route := map[string]string{}
	for _, a := range alerts {
		infos = append(infos, AlertInfo{Name: a.Name, Severities: a.Severities})
		route[a.Name] = "tickets"
		for _, s := range a.Severities {
			if s == "page" {
				route[a.Name] = "oncall-pager"
			}
		}
	}
	script := func(alert string) string {
		md, err := os.ReadFile(filepath.Join(root, slospec.RunbookPath(alert)))
		if err != nil {
			return ""
		}
		return slospec.MitigationScript(string(md))
	}
	for _, p := range Coverage(drills, infos, route, script) {
		t.Error(p)
	}
}

// A paging alert no drill expects blocks, as does a drill that names an
// alert no rule defines, a receiver the routing does not give, or a
// runbook with no script.
func TestCoverageBlocks(t *testing.T) {
	s, err := Parse("good.yaml", []byte(goodDrill))
	if err != nil {
		t.Fatal(err)
	}
	alerts := []AlertInfo{{Name: "RustynetControllerDown", Severities: []string{"page"}}, {Name: "Undrilled", Severities: []string{"page", "ticket"}}, {Name: "TicketOnly", Severities: []string{"ticket"}}}
	route := map[string]string{"RustynetControllerDown": "oncall-pager", "Undrilled": "oncall-pager", "TicketOnly": "tickets"}
	withScript := func(string) string { return "true\n" }
	got := Coverage([]*Scenario{s}, alerts, route, withScript)
	if len(got) != 1 || !strings.Contains(got[0], "paging alert Undrilled has no drill") {
		t.Errorf("coverage = %q; want only the undrilled paging alert", got)
	}
	route["RustynetControllerDown"] = "tickets"
	got = Coverage([]*Scenario{s}, alerts[:1], route, func(string) string { return "" })
	if len(got) != 2 || !strings.Contains(strings.Join(got, "\n"), "routes it to tickets") || !strings.Contains(strings.Join(got, "\n"), "no scripted mitigation") {
		t.Errorf("coverage = %q; want the wrong receiver and the missing script", got)
	}
	if got := Coverage([]*Scenario{s}, nil, nil, withScript); len(got) == 0 || !strings.Contains(got[0], "no rule file defines") {
		t.Errorf("coverage with no rules = %q", got)
	}
}
