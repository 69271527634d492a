package containers

import (
	"slices"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/etcdproc"
	"github.com/rustynet/rustynet/internal/require"
)

// TestEtcdClusterSurvivesItsLeader: three members on two networks agree on
// a leader; killed, the leader is replaced by one of the other two, and
// started again it rejoins on its data.
func TestEtcdClusterSurvivesItsLeader(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	bin, err := etcdproc.Build(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewNetwork(ctx, t), NewNetwork(ctx, t)
	c := NewEtcdCluster("drill", "etcd-a", "etcd-b", "etcd-c")
	ms := []*EtcdMember{
		StartEtcdMember(ctx, t, bin, "etcd-a", c, []*Network{a}),
		StartEtcdMember(ctx, t, bin, "etcd-b", c, []*Network{a, b}),
		StartEtcdMember(ctx, t, bin, "etcd-c", c, []*Network{a, b}),
	}
	if err := WaitHealthy(ctx, ms...); err != nil {
		t.Fatal(err)
	}
	leader := func(among []*EtcdMember) (*EtcdMember, uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, m := range among {
				st, err := m.Status(ctx)
				if err == nil && st.Leader != 0 && st.Leader == st.ID {
					return m, st.ID
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("no leader among the members within 30 s")
		return nil, 0
	}
	old, oldID := leader(ms)
	if err := old.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	var rest []*EtcdMember
	for _, m := range ms {
		if m != old {
			rest = append(rest, m)
		}
	}
	if _, id := leader(rest); id == oldID {
		t.Fatalf("the killed member %x still leads", oldID)
	}
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := WaitHealthy(ctx, ms...); err != nil {
		t.Fatalf("after the old leader's restart: %v", err)
	}
}

// TestReplicasOnEtcd: three replicas over a three-member etcd, the second
// and third started on the first's CA as the README says; a key made on
// one registers a node through another, and the third lists it.
func TestReplicasOnEtcd(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	bin, err := etcdproc.Build(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := NewNetwork(ctx, t)
	names := []string{"etcd-a", "etcd-b", "etcd-c"}
	c := NewEtcdCluster("replicas", names...)
	var ms []*EtcdMember
	var endpoints []string
	for _, name := range names {
		m := StartEtcdMember(ctx, t, bin, name, c, []*Network{n})
		ms = append(ms, m)
		endpoints = append(endpoints, m.ClientURL)
	}
	if err := WaitHealthy(ctx, ms...); err != nil {
		t.Fatal(err)
	}
	first := StartReplica(ctx, t, Replica{Name: "ctl-a", Networks: []*Network{n}, EtcdEndpoints: endpoints})
	caPEM, caKey, err := first.CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second := StartReplica(ctx, t, Replica{Name: "ctl-b", Networks: []*Network{n}, EtcdEndpoints: endpoints, CAPEM: caPEM, CAKey: caKey})
	third := StartReplica(ctx, t, Replica{Name: "ctl-c", Networks: []*Network{n}, EtcdEndpoints: endpoints, CAPEM: caPEM, CAKey: caKey})
	if string(second.CAPEM) != string(caPEM) || string(third.CAPEM) != string(caPEM) {
		t.Fatal("a replica serves with another CA")
	}
	key := first.AuthKey(ctx, t, true)
	id := register(t, second, key, "laptop")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := listNodes(t, third)
		if slices.Contains(got, id+" laptop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl-c lists %q, want %q", got, id+" laptop")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
