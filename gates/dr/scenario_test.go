package dr

import (
	"strings"
	"testing"

	"github.com/rustynet/rustynet/policies"
)

func TestLoadAll(t *testing.T) {
	drills, err := LoadAll("../..")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, d := range drills {
		for _, f := range d.Faults {
			kinds[f.Kind.Value] = true
		}
		if len(d.Live()) < MinRegions {
			t.Errorf("%s: %d live regions", d.Name, len(d.Live()))
		}
	}
	for _, k := range FaultKinds {
		if !kinds[k] {
			t.Errorf("no drill in %s injects %s", Dir, k)
		}
	}
}

const good = `version: 1
name: x
summary: s
duration: 100s
topology:
  regions:
    - {name: eu, nodes: 2}
    - {name: us, nodes: 2}
    - {name: ap, nodes: 2}
  latency: 25ms
workload:
  registrations_per_minute: 60
  probe_every: 200ms
faults:
  - at: 40s
    kind: lose-region
    region: eu
`

func TestParse(t *testing.T) {
	s, err := Parse("scenarios/dr/x.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D.Seconds() != 100 || len(s.Live()) != 3 || s.Faults[0].Region.Value != "eu" || s.Digest == "" {
		t.Errorf("parsed %+v", s)
	}
}

// TestParseRefusals: every refusal names the file and the line of what
// it refuses.
func TestParseRefusals(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"    region: eu\n", "    region: eu\n    regoin: us\n", "x.yaml:18: field regoin not found"},
		{"kind: lose-region", "kind: lose-datacenter", `x.yaml:16: faults[0].kind: "lose-datacenter"; want one of`},
		{"    region: eu\n", "    region: mars\n", `x.yaml:17: faults[0].region: "mars" is not a region`},
		{"  latency: 25ms\n", "  latency: 25ms\n  jitter: 5ms\n", "x.yaml:11: field jitter not found"},
		{"    - {name: ap, nodes: 2}\n", "", "x.yaml:6: topology.regions: 2 regions that are not spare; want 3 to 5"},
		{"{name: us, nodes: 2}", "{name: eu, nodes: 2}", "x.yaml:8: region eu is declared twice"},
		{"{name: us, nodes: 2}", "{name: us, nodes: 9}", "x.yaml:8: region us: nodes 9"},
		{"  - at: 40s", "  - at: 100s", "x.yaml:15: faults[0].at: 1m40s; want a time after the start"},
		{"duration: 100s", "duration: 2h", "x.yaml:4: duration: 2h0m0s"},
		{"duration: 100s", "duration: soon", `x.yaml:4: "soon" is not a duration`},
		{"  probe_every: 200ms\n", "  probe_every: 1ms\n", "x.yaml:13: workload.probe_every: 1ms"},
		{"  registrations_per_minute: 60\n", "  registrations_per_minute: 0\n", "x.yaml:11: workload: no writes"},
		{"    region: eu\n", "", "x.yaml:15: faults[0]: lose-region needs a region"},
		{"kind: lose-region", "kind: kill-controller", "x.yaml:15: faults[0].for: 0s; kill-controller needs how long it lasts"},
		{"kind: lose-region\n    region: eu", "kind: kill-etcd-leader\n    region: eu\n    for: 10s", "x.yaml:17: faults[0].region: kill-etcd-leader takes no region"},
		{"kind: lose-region\n    region: eu", "kind: restore-from-backup\n    for: 5s", "x.yaml:17: faults[0].for: restore-from-backup is not undone"},
		{"version: 1", "version: 2", "x.yaml:1: version 2"},
		{"name: x", "name: y", `x.yaml:2: name "y": the file must be named y.yaml`},
		{"  latency: 25ms\n", "  latency: 1s\n", "x.yaml:10: topology.latency: 1s"},
		{"    - {name: ap, nodes: 2}\n", "    - {name: ap, nodes: 2}\n    - {name: dr, spare: true}\n", "x.yaml:6: topology.regions: a spare region is for a restore-from-backup fault or restore_confidence"},
		{"faults:\n", "restore_confidence: {backups: 5}\nfaults:\n", "x.yaml:14: restore_confidence.backups: 5; want 20 to 100"},
		{"  - at: 40s\n    kind: lose-region\n    region: eu\n", "  - at: 40s\n    kind: restore-from-backup\n", "x.yaml:15: faults[0]: restore-from-backup restores into the spare region; the topology has none"},
		{"\nfaults:\n  - at: 40s\n    kind: lose-region\n    region: eu\n", "\nfaults: []\n", "x.yaml:14: faults: a drill injects at least one"},
		{"version: 1\n", "version: 1\n---\n", "x.yaml"},
	} {
		if !strings.Contains(good, c.from) {
			t.Fatalf("the case %q does not apply", c.from)
		}
		data := strings.Replace(good, c.from, c.to, 1)
		_, err := Parse("scenarios/dr/x.yaml", []byte(data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q -> %q: %v, want %q", c.from, c.to, err, c.want)
		}
	}
	for _, data := range []string{"", "[]", "version: [1]", strings.Repeat("#", MaxScenarioBytes+1)} {
		if _, err := Parse("scenarios/dr/x.yaml", []byte(data)); err == nil || !strings.HasPrefix(err.Error(), "scenarios/dr/x.yaml") {
			t.Errorf("Parse(%.20q) = %v, want an error naming the file", data, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("version: 1\nfaults: [{at: 1s}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("scenarios/dr/x.yaml", data)
		if err == nil && (len(s.Live()) < MinRegions || len(s.Faults) == 0) {
			t.Fatalf("accepted a drill with %d live regions and %d faults", len(s.Live()), len(s.Faults))
		}
	})
}

// TestResiliencePolicy: the repository's policy names only drills that
// exist, runs every one, and judges each wherever it runs.
func TestResiliencePolicy(t *testing.T) {
	drills, p, err := Load("../..")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Drills(policies.Nightly); len(got) != 1 {
		t.Errorf("the nightly channel runs %v, want one short drill", got)
	}
	for _, name := range p.Drills(policies.Nightly) {
		for _, d := range drills {
			if d.Name == name && d.Duration.D > NightlyMaxDuration {
				t.Errorf("the nightly drill %s lasts %v, over %v", name, d.Duration.D, NightlyMaxDuration)
			}
		}
	}
}
