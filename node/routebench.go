package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/rustynet/rustynet/node/router"
)

// BenchRoutes is the address block MeasureRouteApply installs its routes
// in: 198.18.0.0/15, set aside for benchmarking (RFC 2544), so that a
// measurement on a host that also runs the mesh never shadows one of its
// routes (the mesh's addresses are in 100.64.0.0/10).
var BenchRoutes = netip.MustParsePrefix("198.18.0.0/15")

// MaxBenchRoutes is the most routes MeasureRouteApply installs at once:
// one /32 for each address of BenchRoutes.
const MaxBenchRoutes = 1 << 17

// MeasureRouteApply creates a TUN device named iface and times the node's
// router installing n routes on it, from none, reps times; the routes are
// removed between repetitions (not timed) and the device closed at the
// end. It is the release gate's route-apply measurement, run through the
// binary under test: it needs CAP_NET_ADMIN and a name no other device
// has, and the gate runs it in a namespace of its own.
func MeasureRouteApply(iface string, mtu, n, reps int) (_ []time.Duration, err error) {
	if n < 1 || n > MaxBenchRoutes {
		return nil, fmt.Errorf("%d routes: want 1 to %d", n, MaxBenchRoutes)
	}
	if reps < 1 {
		return nil, fmt.Errorf("%d repetitions: want at least 1", reps)
	}
	dev, err := tun.CreateTUN(iface, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN %s: %w", iface, err)
	}
	defer func() { err = errors.Join(err, dev.Close()) }()
	name, err := dev.Name()
	if err != nil {
		return nil, err
	}
	r, err := router.NewLinux(name)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	base := BenchRoutes.Addr().As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	routes := make([]netip.Prefix, n)
	for i := range routes {
		a := first + uint32(i)
		routes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 32)
	}
	lat := make([]time.Duration, 0, reps)
	for range reps {
		t0 := time.Now()
		if err := r.Set(&router.Config{Routes: routes}); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
		if err := r.Set(&router.Config{}); err != nil {
			return nil, err
		}
	}
	return lat, nil
}
