package gometrics

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The collector serves the live heap beside the memstats the gates and
// dashboards read, and the live heap follows what is kept.
func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	live := func() float64 {
		runtime.GC()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch {
				case m.GetGauge() != nil:
					got[mf.GetName()] = m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					got[mf.GetName()] = m.GetCounter().GetValue()
				}
			}
		}
		for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_heap_live_bytes"} {
			if _, ok := got[name]; !ok {
				t.Fatalf("%s is not served", name)
			}
		}
		return got["go_gc_heap_live_bytes"]
	}
	before := live()
	kept := make([][]byte, 64)
	for i := range kept {
		kept[i] = make([]byte, 1<<20)
	}
	after := live()
	if after-before < 48<<20 {
		t.Errorf("go_gc_heap_live_bytes went from %.0f to %.0f with 64 MiB more kept", before, after)
	}
	runtime.KeepAlive(kept)
}
