package etcd

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestProberSetsEndpoints: the client gets the members that answered
// their last probe, all of them when none did, and a watch hears of a
// member lost, not of one back.
func TestProberSetsEndpoints(t *testing.T) {
	eps := []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop()}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	m := newMetrics(prometheus.NewRegistry())
	p, err := newProber(cli, cfg, "/k", time.Hour, time.Second, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	lost := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for _, c := range []struct {
		ok   []bool
		want []string
		lost bool
	}{
		{[]bool{true, false, true}, []string{eps[0], eps[2]}, true},
		{[]bool{true, false, true}, []string{eps[0], eps[2]}, false}, // no change
		{[]bool{false, false, false}, eps, true},
		{[]bool{false, true, false}, []string{eps[1]}, false},
		{[]bool{true, true, true}, eps, false},
	} {
		ch := p.lostMember()
		p.set(c.ok)
		if got := cli.Endpoints(); !slices.Equal(got, c.want) {
			t.Errorf("after probes %v: endpoints %q, want %q", c.ok, got, c.want)
		}
		if got := lost(ch); got != c.lost {
			t.Errorf("after probes %v: a member lost = %v, want %v", c.ok, got, c.lost)
		}
		for i, ep := range eps {
			want := 0.0
			if c.ok[i] {
				want = 1
			}
			if got := testutil.ToFloat64(m.memberUp.WithLabelValues(ep)); got != want {
				t.Errorf("after probes %v: %s up = %v, want %v", c.ok, ep, got, want)
			}
		}
	}
	if got := testutil.ToFloat64(m.endpointChanges); got != 4 {
		t.Errorf("endpoint changes = %v, want 4", got)
	}
	var none *prober
	if none.lostMember() != nil {
		t.Error("a store without probes has a lost-member channel")
	}
}
