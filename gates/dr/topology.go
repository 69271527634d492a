package dr

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/rustynet/rustynet/internal/containers"
)

// Bins are the binaries a drill runs, each static (CGO_ENABLED=0).
type Bins struct {
	Controller, Daemon, CLI, Etcd, Relay, Load string
}

// Names in a drill's topology. Region r has etcd member etcd-r and
// controller replica ctl-r on its own network; node i of region r is
// node-r-i, on the wan; the relay of the path from region a to region b
// is relay-a-b.
func etcdName(r string) string { return "etcd-" + r }
func ctlName(r string) string  { return "ctl-" + r }
func ctlURL(r string) string   { return "https://" + ctlName(r) + ":8443" }
func nodeName(r string, i int) string {
	return "node-" + r + "-" + strconv.Itoa(i)
}
func relayName(a, b string) string { return "relay-" + a + "-" + b }

// Where each node logs its probes and its netmaps.
const (
	probeLog  = containers.DataDir + "/probes.jsonl"
	netmapLog = containers.DataDir + "/netmaps.jsonl"
)

// The relays' ingress ports: a relay takes what its peer relay sends on
// these, and hands it to its region's etcd member on 2379 and 2380.
const (
	ingressClient = 12379
	ingressPeer   = 12380
)

// LatencyMethod says how the drill's inter-region latency is made, for
// the evidence.
func LatencyMethod(l time.Duration) string {
	return fmt.Sprintf("%v one way, each direction, on etcd's peer (2380) and client (2379) paths between regions, added by a userspace TCP relay (internal/relay) in each region for each other region, because this kernel has no netem (sch_netem); the nodes' paths (to the replicas and to each other, over the wan network) and the replicas' hand-overs to the writer are not delayed", l)
}

// mesh is a drill's running topology.
type mesh struct {
	s      *Scenario
	wan    *containers.Network
	nets   map[string]*containers.Network
	etcd   map[string]*containers.EtcdMember
	relays map[string]*containers.Proc // by relayName
	ctl    map[string]*containers.Controller
	nodes  map[string][]*containers.Node
	caPEM  []byte
	caKey  []byte
	key    string // reusable pre-auth key
	bins   Bins
	t      containers.T
	// spareEtcd is the spare region's etcd member, once a restore
	// started one.
	spareEtcd *containers.EtcdMember
}

// up starts the scenario's topology: networks, relays, etcd, replicas
// and nodes, each waited for; the spare region gets its network only.
// Everything is removed when t ends.
func up(ctx context.Context, t containers.T, s *Scenario, b Bins) *mesh {
	t.Helper()
	m := &mesh{s: s, nets: map[string]*containers.Network{}, etcd: map[string]*containers.EtcdMember{},
		relays: map[string]*containers.Proc{}, ctl: map[string]*containers.Controller{}, nodes: map[string][]*containers.Node{}, bins: b, t: t}
	m.wan = containers.NewNetwork(ctx, t)
	var live []string
	for _, r := range s.Topology.Regions {
		m.nets[r.Name.Value] = containers.NewNetwork(ctx, t)
		if !r.Spare {
			live = append(live, r.Name.Value)
		}
	}
	delay := s.Topology.Latency.D
	for _, a := range live {
		for _, b2 := range live {
			if a == b2 {
				continue
			}
			peer := relayName(b2, a)
			m.relays[relayName(a, b2)] = containers.StartProcess(ctx, t, containers.Process{
				What: relayName(a, b2), Image: "relay", Bin: b.Relay,
				Args: []string{
					"--route", fmt.Sprintf(":2379=%s:%d@%v", peer, ingressClient, delay),
					"--route", fmt.Sprintf(":2380=%s:%d@%v", peer, ingressPeer, delay),
					"--route", fmt.Sprintf(":%d=%s:2379", ingressClient, etcdName(a)),
					"--route", fmt.Sprintf(":%d=%s:2380", ingressPeer, etcdName(a)),
				},
				Networks: []containers.Attachment{{Network: m.nets[a], Aliases: []string{etcdName(b2)}}, {Network: m.wan, Aliases: []string{relayName(a, b2)}}},
			})
		}
	}
	var names, endpoints []string
	for _, r := range live {
		names = append(names, etcdName(r))
		endpoints = append(endpoints, "http://"+etcdName(r)+":2379")
	}
	cluster := containers.NewEtcdCluster("drill-"+s.Name, names...)
	var members []*containers.EtcdMember
	for _, r := range live {
		em := containers.StartEtcdMember(ctx, t, b.Etcd, etcdName(r), cluster, []*containers.Network{m.nets[r]})
		m.etcd[r] = em
		members = append(members, em)
	}
	if err := containers.WaitHealthy(ctx, members...); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	for i, r := range live {
		rep := containers.Replica{Name: ctlName(r), Networks: []*containers.Network{m.nets[r], m.wan}, Bin: b.Controller, EtcdEndpoints: endpoints}
		if i > 0 {
			rep.CAPEM, rep.CAKey = m.caPEM, m.caKey
		}
		m.ctl[r] = containers.StartReplica(ctx, t, rep)
		if i == 0 {
			var err error
			if m.caPEM, m.caKey, err = m.ctl[r].CA(ctx); err != nil {
				t.Fatalf("the first replica's CA: %v", err)
			}
			m.key = m.ctl[r].AuthKey(ctx, t, true)
		}
	}
	var all []string
	for _, r := range s.Topology.Regions {
		all = append(all, r.Name.Value)
	}
	// One at a time: a node that cannot start fails the drill (Fatalf),
	// which only the drill's own goroutine may do.
	for _, r := range s.Topology.Regions {
		for i := 1; i <= r.Nodes; i++ {
			region := r.Name.Value
			// Its own region's replica first, then the others in turn
			// (the spare's too: a restore brings one up there).
			var ctls []string
			for k := range all {
				ctls = append(ctls, ctlURL(all[(k+slices.Index(all, region))%len(all)]))
			}
			m.nodes[region] = append(m.nodes[region], containers.StartNodeWith(ctx, t, containers.NodeOptions{
				Name: nodeName(region, i), Networks: []*containers.Network{m.wan}, Controllers: ctls, CAPEM: m.caPEM, AuthKey: m.key,
				DaemonBin: b.Daemon, CLIBin: b.CLI,
				Args: []string{"--probe-interval", s.Workload.ProbeEvery.D.String(), "--probe-peers", "0",
					"--probe-log", probeLog, "--netmap-log", netmapLog},
			}))
		}
	}
	return m
}
