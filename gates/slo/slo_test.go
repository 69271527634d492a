package slo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rustynet/rustynet/internal/promstack"
	slospec "github.com/rustynet/rustynet/internal/slo"
	"github.com/rustynet/rustynet/policies"
)

// fakeProm answers each query with the value of the first entry whose
// substring the query contains; a query it does not know has no data.
type fakeProm []struct {
	sub string
	v   float64
}

func (f fakeProm) Scalar(_ context.Context, q string, _ time.Time) (float64, model.Value, error) {
	for _, e := range f {
		if strings.Contains(q, e.sub) {
			return e.v, model.Vector{{Value: model.SampleValue(e.v)}}, nil
		}
	}
	return 0, model.Vector{}, fmt.Errorf("query %q: %w", q, promstack.ErrNoData)
}

// with puts an answer ahead of f's.
func (f fakeProm) with(sub string, v float64) fakeProm {
	return append(fakeProm{{sub, v}}, f...)
}

func loadRepo(t *testing.T) ([]slospec.Spec, *policies.SLOPolicy) {
	t.Helper()
	specs, err := slospec.LoadSpecs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policies.LoadSLO("../../" + PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	return specs, pol
}

// healthy answers every SLO of the repository's specs with no errors,
// plenty of events and quiet 5-minute windows.
func healthy() fakeProm {
	return fakeProm{
		{") / (", 0},              // an events SLI's error ratio
		{"1 - avg(", 0},           // the raw SLI
		{"count_over_time(", 150}, // evaluations, samples
		{"max_over_time(", 0},     // the worst 5-minute window
		{"sum(rate(", 2},          // an events SLI's total rate
	}
}

// TestJudge: a healthy run passes every SLO; a run whose API availability
// misses its objective (the slo mutant: 2% of netmaps failing), whose
// SLI has no data, or has too few events, blocks, naming the SLO and why.
func TestJudge(t *testing.T) {
	specs, pol := loadRepo(t)
	start := time.Now().Add(-5 * time.Minute)
	end := time.Now()
	j := judge(context.Background(), healthy(), specs, pol, start, end)
	if len(j.problems) > 0 || j.err != nil {
		t.Fatalf("a healthy run: %v %v", j.problems, j.err)
	}
	if len(j.summaries) < 5 {
		t.Fatalf("%d SLOs judged, want every SLO of slos/", len(j.summaries))
	}
	for _, s := range j.summaries {
		if !s.Passed || s.Attainment == nil || *s.Attainment != 1 {
			t.Errorf("%+v", s)
		}
	}
	if len(j.queries) == 0 || len(j.measurements) != 3*len(j.summaries) {
		t.Errorf("%d queries, %d measurements", len(j.queries), len(j.measurements))
	}

	// 2% of the API's requests failing: 20 times its budget.
	bad := healthy().with(`code=~"5.."`, 0.02) // only the availability SLI's error ratio names it
	j = judge(context.Background(), bad, specs, pol, start, end)
	got := strings.Join(j.problems, "\n")
	for _, want := range []string{"rustynet-controller-api-availability: SLI 98.0000% under its objective 99.9%", "rustynet-controller-api-availability: burn rate 20 over the run, above 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}

	// A quiet run proves nothing.
	quiet := healthy().with("sum(rate(rustynet_controller_http_requests_total[", 0.01) // 3 events over 5 minutes
	j = judge(context.Background(), quiet, specs, pol, start, end)
	if !strings.Contains(strings.Join(j.problems, "\n"), "fewer than 20: too little load to judge") {
		t.Errorf("a run with 3 events passed: %v", j.problems)
	}

	// A 5-minute window burning at 20 times the budget blocks though the
	// run as a whole stayed within it.
	spike := healthy().with("max_over_time(", 0.02)
	j = judge(context.Background(), spike, specs, pol, start, end)
	if !strings.Contains(strings.Join(j.problems, "\n"), "a 5-minute window burnt at 20") {
		t.Errorf("a burning window passed: %v", j.problems)
	}

	// Prometheus answering nothing at all: the gate could not run.
	j = judge(context.Background(), fakeProm{}, specs, pol, start, end)
	if len(j.problems) == 0 {
		t.Error("no data passed")
	}
}

func TestRawMetric(t *testing.T) {
	if got := rawMetric("1 - avg(avg_over_time(rustynet_node_control_connected[{{.window}}]))"); got != "rustynet_node_control_connected" {
		t.Fatalf("got %q", got)
	}
}
