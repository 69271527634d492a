package router

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/rustynet/rustynet/internal/require"
)

// inNetNS runs fn on a locked thread inside a new network namespace that
// holds a TUN interface "rt0" (this kernel has no dummy links; a TUN is
// what the node routes into anyway).
func inNetNS(tb testing.TB, fn func()) {
	tb.Helper()
	require.Root(tb)
	netns, err := testutils.NewNS()
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		netns.Close()
		testutils.UnmountNS(netns)
	}()
	err = netns.Do(func(ns.NetNS) error {
		dev, err := tun.CreateTUN("rt0", 1420)
		if err != nil {
			return err
		}
		defer dev.Close()
		fn()
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func routes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	return out
}

func installed(t testing.TB) []netip.Prefix {
	link, err := netlink.LinkByName("rt0")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: Protocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		if p, ok := prefixOf(r.Dst); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

func TestSetAddsRemovesAndIsIdempotent(t *testing.T) {
	inNetNS(t, func() {
		r, err := NewLinux("rt0")
		if err != nil {
			t.Fatal(err)
		}
		self := []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd52:7573:7479::1/128")}
		all := append(routes(1000), netip.MustParsePrefix("fd52:7573:7479::2/128"))
		for range 2 { // the second Set must change nothing and not fail
			if err := r.Set(&Config{Addresses: self, Routes: all}); err != nil {
				t.Fatalf("Set(1001 routes): %v", err)
			}
		}
		if got := installed(t); len(got) != len(all) {
			t.Fatalf("%d routes installed, want %d", len(got), len(all))
		}
		link, _ := netlink.LinkByName("rt0")
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
		for _, want := range self {
			if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == want.String() }) {
				t.Errorf("address %s not on rt0 (have %v)", want, addrs)
			}
		}
		if err := r.Set(&Config{Addresses: self[:1], Routes: all[:10]}); err != nil {
			t.Fatal(err)
		}
		if got := installed(t); !slices.Equal(got, all[:10]) {
			t.Errorf("after shrinking to 10 routes: %d installed", len(got))
		}
		// A router created later takes over the routes and removes them.
		r2, err := NewLinux("rt0")
		if err != nil {
			t.Fatal(err)
		}
		if err := r2.Close(); err != nil {
			t.Fatal(err)
		}
		if got := installed(t); len(got) != 0 {
			t.Errorf("after Close, %d routes remain", len(got))
		}
	})
}

// BenchmarkRouteApply measures how long Set takes to install N routes (the
// peers' allowed IPs of a netmap) on a TUN interface in a namespace; each
// iteration starts from none. Reports p50 and p99 over the iterations.
func BenchmarkRouteApply(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			runtime.LockOSThread()
			inNetNS(b, func() {
				r, err := NewLinux("rt0")
				if err != nil {
					b.Fatal(err)
				}
				want := routes(n)
				var lat []time.Duration
				b.ResetTimer()
				for range b.N {
					start := time.Now()
					if err := r.Set(&Config{Routes: want}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
					b.StopTimer()
					if err := r.Set(&Config{}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[(len(lat)-1)*99/100].Microseconds())/1000, "p99-ms")
			})
		})
	}
}
