package testbed

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestImpairmentQdisc checks the qdisc built for an impairment without a
// kernel: netem whenever there is delay or loss (carrying the rate in bytes
// per second), tbf for a rate alone, in the units netlink expects.
func TestImpairmentQdisc(t *testing.T) {
	im := Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Rate: 8_000_000}
	q, kind := im.qdisc(7, 1500)
	netem, ok := q.(*netlink.Netem)
	if kind != "netem" || !ok {
		t.Fatalf("%+v.qdisc() = %T, %q; want *netlink.Netem, %q", im, q, kind, "netem")
	}
	if got, want := netem.Rate64, uint64(1_000_000); got != want {
		t.Errorf("%+v.qdisc().Rate64 = %d, want %d bytes/s", im, got, want)
	}
	if got, want := netem.Latency, uint32(20_000*netlink.TickInUsec()); got != want {
		t.Errorf("%+v.qdisc().Latency = %d, want %d ticks", im, got, want)
	}
	if got, want := netem.Loss, netlink.Percentage2u32(1); got != want {
		t.Errorf("%+v.qdisc().Loss = %d, want %d", im, got, want)
	}
	if a := netem.Attrs(); a.LinkIndex != 7 || a.Parent != netlink.HANDLE_ROOT || a.Handle != 0 {
		t.Errorf("%+v.qdisc().Attrs() = %+v, want link 7, parent root, handle 0", im, a)
	}

	im = Impairment{Rate: 80_000_000}
	q, kind = im.qdisc(7, 1500)
	tbf, ok := q.(*netlink.Tbf)
	if kind != "tbf" || !ok {
		t.Fatalf("%+v.qdisc() = %T, %q; want *netlink.Tbf, %q", im, q, kind, "tbf")
	}
	const rate, burst = 10_000_000, 100_000 // bytes/s; 10 ms of it
	if tbf.Rate != rate {
		t.Errorf("%+v.qdisc().Rate = %d, want %d bytes/s", im, tbf.Rate, rate)
	}
	if got, want := tbf.Buffer, netlink.Xmittime(rate, burst); got != want {
		t.Errorf("%+v.qdisc().Buffer = %d, want %d ticks (%d bytes)", im, got, want, burst)
	}
	if got, want := tbf.Limit, uint32(burst+rate/20); got != want {
		t.Errorf("%+v.qdisc().Limit = %d, want %d bytes", im, got, want)
	}
}
