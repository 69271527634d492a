package containers

import (
	"strings"
	"testing"
)

var _ T = testing.TB(nil)
var _ T = (*Drill)(nil)

// TestRunDrill: Fatalf ends the function, Errorf does not, cleanups run
// last first even after a Fatalf, and a panic is an error, not a crash.
func TestRunDrill(t *testing.T) {
	var log strings.Builder
	var order []string
	err := RunDrill("d", &log, func(d *Drill) {
		d.Cleanup(func() { order = append(order, "first") })
		d.Cleanup(func() { order = append(order, "second") })
		d.Errorf("soft %d", 1)
		if !d.Failed() {
			t.Error("Failed() after Errorf = false")
		}
		d.Fatalf("hard %d", 2)
		order = append(order, "after Fatalf")
	})
	if err == nil || err.Error() != "soft 1; hard 2" {
		t.Errorf("RunDrill = %v, want soft 1; hard 2", err)
	}
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("ran %v, want the cleanups last first and nothing after Fatalf", order)
	}
	if !strings.Contains(log.String(), "s hard 2\n") {
		t.Errorf("log %q lacks the timed line", log.String())
	}

	err = RunDrill("p", &log, func(d *Drill) {
		d.Cleanup(func() { panic("in cleanup") })
		var m map[string]int
		m["x"] = 1
	})
	if err == nil || !strings.Contains(err.Error(), "panic: assignment to entry in nil map") || !strings.Contains(err.Error(), "panic in cleanup: in cleanup") {
		t.Errorf("RunDrill with panics = %v", err)
	}
	if err := RunDrill("ok", &log, func(d *Drill) { d.Logf("fine") }); err != nil {
		t.Errorf("RunDrill of a clean drill = %v", err)
	}
}
