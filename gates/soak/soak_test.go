package soak

import (
	"bytes"
	"math"
	"testing"
)

// TestByteStreamSplits: however a stream is cut, both ends agree.
func TestByteStreamSplits(t *testing.T) {
	whole := make([]byte, 1000)
	newByteStream(42).fill(whole)
	s := newByteStream(42)
	var got []byte
	for _, n := range []int{1, 7, 8, 3, 100, 5, 876} {
		b := make([]byte, n)
		s.fill(b)
		got = append(got, b...)
	}
	if !bytes.Equal(got, whole) {
		t.Error("a stream read in odd pieces differs from the stream read whole")
	}
	other := make([]byte, 1000)
	newByteStream(43).fill(other)
	if bytes.Equal(other, whole) {
		t.Error("two seeds give the same stream")
	}
}

func TestSlopeAfter(t *testing.T) {
	ts := []float64{0, 60, 120, 180, 240, 300}
	ys := []float64{100, 500, 10, 11, 12, 13} // warm-up noise, then +1 a minute
	s, ok := slopeAfter(ts, ys, 100)
	if !ok || math.Abs(s-60) > 1e-9 {
		t.Errorf("slopeAfter = %v, %v; want 60 per hour", s, ok)
	}
	if _, ok := slopeAfter(ts[:2], ys[:2], 0); ok {
		t.Error("a slope from two points")
	}
}
