package node

import (
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"

	"github.com/rustynet/rustynet/internal/require"
)

func TestMeasureRouteApplyRefuses(t *testing.T) {
	for _, c := range []struct {
		n, reps int
		want    string
	}{
		{0, 1, "0 routes: want 1 to 131072"},
		{MaxBenchRoutes + 1, 1, "want 1 to 131072"},
		{10, 0, "0 repetitions"},
	} {
		if _, err := MeasureRouteApply("rbm0", 1420, c.n, c.reps); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("MeasureRouteApply(%d routes, %d reps) = %v, want an error about %q", c.n, c.reps, err, c.want)
		}
	}
}

// TestMeasureRouteApply: in a namespace of its own, every repetition is
// timed and the device is gone afterwards.
func TestMeasureRouteApply(t *testing.T) {
	require.Root(t)
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		netns.Close()
		testutils.UnmountNS(netns)
	}()
	err = netns.Do(func(ns.NetNS) error {
		lat, err := MeasureRouteApply("rbm0", 1420, 300, 3)
		if err != nil {
			return err
		}
		if len(lat) != 3 {
			t.Errorf("%d latencies, want 3", len(lat))
		}
		for i, d := range lat {
			if d <= 0 {
				t.Errorf("repetition %d took %v", i, d)
			}
		}
		if _, err := netlink.LinkByName("rbm0"); err == nil {
			t.Error("the device rbm0 outlived the measurement")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
