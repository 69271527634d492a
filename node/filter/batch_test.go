package filter

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestBatchesAsSinglePackets: the filter decides a batch exactly as it
// decides its packets one at a time (Read and Write skip the maps for a
// header equal to the previous one's): the same packets pass in the same
// order, the same are dropped, and the same flows are recorded. Batches
// are random runs of packets drawn from a few headers: to and from a
// restricted peer, a gated peer (the exchange and other traffic), a peer
// that is neither, ICMP echo, fragments and a packet that is not IP.
func TestBatchesAsSinglePackets(t *testing.T) {
	gatedPeer := netip.MustParseAddr("100.64.0.4")
	const port = 7777
	frag := ipv4(protoUDP, peer, local, 53, 40001)
	frag[7] = 8 // a fragment offset: a later fragment
	out := [][]byte{
		ipv4(protoTCP, local, peer, 40000, 5201),
		ipv4(protoTCP, local, peer, 40002, 5201),
		ipv4(protoUDP, local, peer, 40001, 53),
		ipv4(protoICMP, local, peer, 8, 9),
		ipv4(protoTCP, local, other, 40000, 22),
		ipv4(protoTCP, local, gatedPeer, 40003, port),
		ipv4(protoTCP, local, gatedPeer, 40004, 80),
		ipv4(protoTCP, local, gatedPeer, port, 40005),
		{0x00, 0x01},
	}
	in := [][]byte{
		ipv4(protoTCP, peer, local, 5201, 40000),
		ipv4(protoTCP, peer, local, 5201, 40002),
		ipv4(protoTCP, peer, local, 5201, 40009),
		ipv4(protoTCP, peer, local, 40010, port),
		ipv4(protoUDP, peer, local, 53, 40001),
		frag,
		ipv4(protoICMP, peer, local, 0, 9),
		ipv4(protoICMP, peer, local, 8, 9),
		ipv4(protoTCP, other, local, 22, 40000),
		ipv4(protoTCP, gatedPeer, local, port, 40003),
		ipv4(protoTCP, gatedPeer, local, 80, 40004),
		ipv4(protoTCP, gatedPeer, local, 40005, port),
		{0x00, 0x01},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// runs draws n packets from set, in runs of one header.
	runs := func(set [][]byte, n int) [][]byte {
		var p [][]byte
		for len(p) < n {
			pkt := set[rng.IntN(len(set))]
			for range 1 + rng.IntN(4) {
				p = append(p, pkt)
			}
		}
		return p[:n]
	}
	setup := func(f *fakeDev) *Device {
		d := Wrap(f)
		d.SetRestricted([]netip.Addr{peer})
		d.SetGated(port, []netip.Addr{gatedPeer})
		return d
	}
	for round := range 200 {
		fb, fs := &fakeDev{}, &fakeDev{}
		batched, single := setup(fb), setup(fs)
		for range 5 {
			// The node sends: one Read of the whole batch, or one per packet.
			sent := runs(out, 1+rng.IntN(16))
			fb.out = slices.Clone(sent)
			bufs, sizes := make([][]byte, len(sent)), make([]int, len(sent))
			for i := range bufs {
				bufs[i] = make([]byte, 1500)
			}
			var gotB [][]byte
			for len(fb.out) > 0 {
				n, _ := batched.Read(bufs, sizes, 0)
				for i := range n {
					gotB = append(gotB, slices.Clone(bufs[i][:sizes[i]]))
				}
			}
			var gotS [][]byte
			for _, p := range sent {
				fs.out = [][]byte{p}
				if n, _ := single.Read(bufs[:1], sizes[:1], 0); n == 1 {
					gotS = append(gotS, slices.Clone(bufs[0][:sizes[0]]))
				}
			}
			if !slices.EqualFunc(gotB, gotS, slices.Equal) {
				t.Fatalf("round %d: Read of a batch passed %d packets, one at a time %d", round, len(gotB), len(gotS))
			}
			// The peers send.
			recv := runs(in, 1+rng.IntN(16))
			fb.written, fs.written = nil, nil
			batched.Write(recv, 0)
			for _, p := range recv {
				single.Write([][]byte{p}, 0)
			}
			if !slices.EqualFunc(fb.written, fs.written, slices.Equal) {
				t.Fatalf("round %d: Write of a batch delivered %d packets, one at a time %d", round, len(fb.written), len(fs.written))
			}
		}
		if batched.Dropped() != single.Dropped() {
			t.Fatalf("round %d: dropped %d in batches, %d one at a time", round, batched.Dropped(), single.Dropped())
		}
		kb := slices.Collect(maps.Keys(batched.flows))
		ks := slices.Collect(maps.Keys(single.flows))
		if len(kb) != len(ks) || !sameFlows(kb, ks) {
			t.Fatalf("round %d: flows %v in batches, %v one at a time", round, kb, ks)
		}
	}
}

func sameFlows(a, b []flow) bool {
	for _, f := range a {
		if !slices.Contains(b, f) {
			return false
		}
	}
	return true
}
