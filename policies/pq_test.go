package policies

import (
	"errors"
	"strings"
	"testing"
)

func TestPQPolicyLoads(t *testing.T) {
	p, err := LoadPQ("pq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range Channels {
		if len(p.Blocking(ch)) == 0 {
			t.Errorf("no decision gate blocks %s", ch)
		}
	}
}

func TestPQRefusals(t *testing.T) {
	base, err := readFile("pq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) string {
		if !strings.Contains(string(base), old) {
			t.Fatalf("pq.yaml has no %q", old)
		}
		return strings.Replace(string(base), old, new, 1)
	}
	for _, c := range []struct {
		name, yaml, contains string
	}{
		{"version", replace("version: 1", "version: 2"), "this build reads version 1"},
		{"period", replace("period: 5s", "period: 500ms"), "experiment.period 500ms: want at least 1s"},
		{"idle", replace("idle_window: 30s", "idle_window: 10s"), "want at least 3 periods"},
		{"rounds", replace("throughput_rounds: 12", "throughput_rounds: 1"), "a spread needs two"},
		{"fleet", replace("fleet: 8", "fleet: 3"), "want at least 4 nodes"},
		{"waves down", replace("waves: [0, 25, 50, 100]", "waves: [0, 50, 25, 100]"), "waves only go up"},
		{"waves end", replace("waves: [0, 25, 50, 100]", "waves: [0, 25, 50]"), "the first wave 0 and the last 100"},
		{"rule", replace("rule: waves", "rule: vibes"), `rule "vibes": want one of`},
		{"missing threshold", replace("    max_lost: 0\n", ""), "rule rotation-loss needs max_lost"},
		{"no handshake bound", replace("    max_handshake_cpu: 10ms\n", ""), "rule cost needs max_handshake_cpu"},
		{"foreign threshold", replace("    max_lost: 0\n", "    max_lost: 0\n    max_spread: 0.1\n"), "max_spread does not belong to rule rotation-loss"},
		{"twice", replace("id: G1", "id: G0"), "decision gate G0 twice"},
		{"channel", replace("  nightly: [G2, G3]", "  weekly: [G2, G3]"), `"weekly" is not a channel`},
		{"unknown gate", replace("  nightly: [G2, G3]", "  nightly: [G2, G9]"), `channels.nightly: "G9" is not a decision gate`},
		{"unknown field", replace("version: 1", "version: 1\nstrict: true"), "field strict not found"},
	} {
		_, err := ParsePQ("pq.yaml", []byte(c.yaml))
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("%s: ParsePQ = %v, want an error containing %q", c.name, err, c.contains)
		}
	}
}

func FuzzParsePQ(f *testing.F) {
	shipped, err := readFile("pq.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	f.Add([]byte("version: 1\nexperiment: {period: 1s, idle_window: 3s, throughput_rounds: 2, fleet: 4, waves: [0, 100]}\ndecision_gates: [{id: G, name: n, owner: o, rule: waves}]\nchannels: {ga: [G]}\n"))
	f.Add([]byte("version: 1\ndecision_gates: [{id: G, name: n, owner: o, rule: review, review: x, max_lost: 1}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePQ("pq.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("error %v (%T) is not a *policies.Error with a message", err, err)
			}
			return
		}
		for ch := range p.Channels {
			p.Blocking(ch)
		}
	})
}
