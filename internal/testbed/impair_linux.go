package testbed

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Impairment degrades a host's egress on eth0. The zero value is an
// unimpaired link.
type Impairment struct {
	// Delay is added to every packet; Jitter varies it by up to ±Jitter
	// (and needs a Delay). At most a minute each.
	Delay, Jitter time.Duration
	// Loss is the percentage of packets dropped at random, 0 to 100.
	Loss float64
	// Rate limits the link to this many bits per second; 0 is unlimited.
	Rate uint64
}

// maxDelay keeps netem's delays (32-bit counts of 64 ns ticks) in range.
const maxDelay = time.Minute

// netemLimit is netem's queue in packets: 1 Gbit/s for 100 ms of delay in
// 1500-byte packets, where tc's default of 1000 would drop.
const netemLimit = 10000

func (im Impairment) validate() error {
	switch {
	case im.Delay < 0 || im.Delay > maxDelay:
		return fmt.Errorf("impairment: delay %v out of range [0, %v]", im.Delay, maxDelay)
	case im.Jitter < 0 || im.Jitter > maxDelay:
		return fmt.Errorf("impairment: jitter %v out of range [0, %v]", im.Jitter, maxDelay)
	case im.Jitter > 0 && im.Delay == 0:
		return errors.New("impairment: jitter needs a delay")
	case im.Loss < 0 || im.Loss > 100:
		return fmt.Errorf("impairment: loss %v%% out of range [0, 100]", im.Loss)
	case im.Rate > 0 && im.Rate < 8:
		return fmt.Errorf("impairment: rate %d bit/s is below one byte per second", im.Rate)
	}
	return nil
}

// Impair applies im to the host's eth0 egress (packets it sends), replacing
// the previous impairment atomically; Impair(Impairment{}) removes it.
//
// Delay, jitter and loss make a netem root qdisc (carrying the rate too, as
// netem's own rate, when there is one); a rate alone makes a tbf root qdisc
// with a burst of 10 ms at that rate (at least two frames) and a queue of
// 50 ms more. Without the kernel's netem (CONFIG_NET_SCH_NETEM) the error
// wraps errors.ErrUnsupported.
func (h *Host) Impair(im Impairment) error {
	if err := im.validate(); err != nil {
		return err
	}
	return h.Do(func() error {
		link, err := netlink.LinkByName(h.Link)
		if err != nil {
			return fmt.Errorf("impair %s: %w", h.Name, err)
		}
		if im == (Impairment{}) {
			return removeRootQdisc(link)
		}
		q, kind := im.qdisc(link.Attrs().Index, h.mtu)
		// Replace with handle 0: the kernel swaps in a qdisc of another
		// kind, or changes one of the same kind, in one step.
		if err := netlink.QdiscReplace(q); err != nil {
			if kind == "netem" && errors.Is(err, unix.ENOENT) {
				err = fmt.Errorf("%w (kernel without sch_netem): %w", errors.ErrUnsupported, err)
			}
			return fmt.Errorf("impair %s: %s: %w", h.Name, kind, err)
		}
		return nil
	})
}

// qdisc builds the root qdisc for im, and names its kind.
func (im Impairment) qdisc(linkIndex, mtu int) (netlink.Qdisc, string) {
	attrs := netlink.QdiscAttrs{LinkIndex: linkIndex, Parent: netlink.HANDLE_ROOT}
	rate := im.Rate / 8 // bytes per second
	if im.Delay > 0 || im.Loss > 0 {
		return netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
			Latency: uint32(im.Delay.Microseconds()),
			Jitter:  uint32(im.Jitter.Microseconds()),
			Loss:    float32(im.Loss),
			Limit:   netemLimit,
			Rate64:  rate,
		}), "netem"
	}
	frame := uint64(mtu + 14)
	burst := max(rate/100, 2*frame)
	burst = min(burst, 1<<30)
	limit := min(burst+rate/20, 1<<31)
	return &netlink.Tbf{
		QdiscAttrs: attrs,
		Rate:       rate,
		Buffer:     netlink.Xmittime(rate, uint32(burst)),
		Limit:      uint32(limit),
	}, "tbf"
}

// removeRootQdisc deletes the configured root qdisc, leaving the device's
// default (noqueue for a veth, which has no handle).
func removeRootQdisc(link netlink.Link) error {
	qs, err := netlink.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qs {
		a := q.Attrs()
		if a.Parent != netlink.HANDLE_ROOT || a.Handle == 0 {
			continue
		}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete %s qdisc of %s: %w", q.Type(), link.Attrs().Name, err)
		}
	}
	return nil
}
