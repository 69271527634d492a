package proc

import (
	"os"
	"testing"
)

func TestSelf(t *testing.T) {
	// Burn some CPU so the counter has something to show.
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	_ = x
	cpu, err := CPUTime(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("CPUTime(self) = %v, %v; want a positive time", cpu, err)
	}
	rss, peak, err := Memory(os.Getpid())
	if err != nil || rss <= 0 || peak < rss {
		t.Errorf("Memory(self) = %d, %d, %v; want 0 < rss <= peak", rss, peak, err)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Error("CPUTime(-1) succeeded")
	}
}
