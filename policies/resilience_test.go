package policies

import (
	"strings"
	"testing"
)

var drDrills = []string{"a", "b"}

const goodResilience = `version: 1
channels:
  nightly: [a]
  beta: [a, b]
  ga: [a, b]
targets:
  - drill: a
    channels: [nightly, beta, ga]
    control_plane_rto: 3s
    max_lost_writes: 0
    basis: x
  - drill: b
    channels: [beta, ga]
    min_restore_confidence: 1
    basis: y
`

func TestParseResilience(t *testing.T) {
	p, err := ParseResilience("r.yaml", []byte(goodResilience), drDrills)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Drills(Beta); len(got) != 2 || got[1] != "b" {
		t.Errorf("Drills(beta) = %v", got)
	}
	if tg := p.Target("a", Nightly); tg == nil || tg.ControlPlaneRTO.D.Seconds() != 3 || *tg.MaxLostWrites != 0 {
		t.Errorf("Target(a, nightly) = %+v", tg)
	}
	if p.Target("b", Nightly) != nil {
		t.Error("b has targets on nightly, which does not run it")
	}
}

func TestParseResilienceRefusals(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"  nightly: [a]\n", "  nightly: [c]\n", `r.yaml:3: channels.nightly: "c" is not a drill`},
		{"  nightly: [a]\n", "", "channels: nightly runs no drill"},
		{"  beta: [a, b]\n  ga: [a, b]\n", "  beta: [a]\n  ga: [a]\n", "no channel runs the drill b"},
		{"    control_plane_rto: 3s\n", "    control_plane_rto: 3s\n    rto: 3s\n", "r.yaml:10: field rto not found here"},
		{"    control_plane_rto: 3s\n", "    control_plane_rto: -3s\n", "r.yaml:9: targets[0].control_plane_rto: -3s"},
		{"    min_restore_confidence: 1\n", "    min_restore_confidence: 1.5\n", "targets[1].min_restore_confidence: 1.5"},
		{"    min_restore_confidence: 1\n", "", "targets[1] (b): no target set"},
		{"    basis: y\n", "", "targets[1] (b): basis"},
		{"    channels: [beta, ga]\n", "    channels: [beta]\n", "channels.ga: b has no targets on ga"},
		{"    channels: [beta, ga]\n", "    channels: [nightly, beta, ga]\n", "channel nightly does not run b"},
		{"  - drill: b\n", "  - drill: a\n", "a already has targets on beta"},
		{"  beta: [a, b]\n", "  beta: [a, b, a]\n", "channels.beta: a is listed twice"},
		{"  ga: [a, b]\n", "  ga: [a, b]\n  canary: [a]\n", `"canary" is not a channel`},
		{"version: 1", "version: 2", "version 2"},
	} {
		if !strings.Contains(goodResilience, c.from) {
			t.Fatalf("the case %q does not apply", c.from)
		}
		_, err := ParseResilience("r.yaml", []byte(strings.Replace(goodResilience, c.from, c.to, 1)), drDrills)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q -> %q: %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

func FuzzParseResilience(f *testing.F) {
	f.Add([]byte(goodResilience))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseResilience("r.yaml", data, drDrills)
		if err != nil {
			return
		}
		for _, ch := range Channels {
			for _, d := range p.Drills(ch) {
				if p.Target(d, ch) == nil {
					t.Fatalf("accepted: %s runs %s with no targets", ch, d)
				}
			}
		}
	})
}
