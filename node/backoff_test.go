package node

import (
	"testing"
	"time"
)

// TestBackoffSchedule: each delay is drawn from [d/2, d], d doubling from
// retryMin to retryMax; once grown, the delays stay within [retryMax/2,
// retryMax] and are spread over that range (a fleet does not retry in
// step); a reset starts again from retryMin. The cap is what bounds the
// time from a controller's first answer to a node's reconnect (node.go).
func TestBackoffSchedule(t *testing.T) {
	if retryMax > time.Second {
		t.Fatalf("retryMax = %v: a node could wait longer than 1 s after the controller answers again", retryMax)
	}
	b := backoff{min: retryMin, max: retryMax}
	for round := range 2 {
		d := retryMin
		for i := range 8 {
			got := b.next()
			if got < d/2 || got > d {
				t.Fatalf("round %d, delay %d = %v, want within [%v, %v]", round, i, got, d/2, d)
			}
			d = min(2*d, retryMax)
		}
		if d != retryMax {
			t.Fatalf("after 8 delays the schedule is at %v, want the cap %v", d, retryMax)
		}
		lo, hi := retryMax, time.Duration(0)
		for range 1000 {
			got := b.next()
			if got < retryMax/2 || got > retryMax {
				t.Fatalf("delay at the cap = %v, want within [%v, %v]", got, retryMax/2, retryMax)
			}
			lo, hi = min(lo, got), max(hi, got)
		}
		if hi-lo < retryMax/4 {
			t.Errorf("1000 delays at the cap span [%v, %v], want them spread over [%v, %v]", lo, hi, retryMax/2, retryMax)
		}
		b.reset()
	}
}
