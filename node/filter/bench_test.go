package filter

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// nullDev returns a full batch on every Read (the packets already in the
// buffers) and discards Writes: what the filter costs, without a device.
type nullDev struct{ size int }

func (f *nullDev) File() *os.File { return nil }
func (f *nullDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for i := range bufs {
		sizes[i] = f.size
	}
	return len(bufs), nil
}
func (f *nullDev) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (f *nullDev) MTU() (int, error)                            { return 1420, nil }
func (f *nullDev) Name() (string, error)                        { return "null", nil }
func (f *nullDev) Events() <-chan tun.Event                     { return nil }
func (f *nullDev) Close() error                                 { return nil }
func (f *nullDev) BatchSize() int                               { return 128 }

// BenchmarkFilter is the filter's cost per packet, in batches of 128 (a
// Linux TUN's batch with offloads), each packet a 1420-byte TCP segment of
// one flow: with no restricted or gated peer (the filter passes batches
// through), and with the flow's peer restricted (each packet sent records
// the flow; each received is checked against it), and with another peer
// restricted (the lookups only).
func BenchmarkFilter(b *testing.B) {
	const batch = 128
	for _, mode := range []string{"inactive", "restricted-peer", "other-restricted"} {
		for _, dir := range []string{"read", "write"} {
			b.Run(fmt.Sprintf("%s/%s", mode, dir), func(b *testing.B) {
				nd := &nullDev{size: 1420}
				fd := &fakeDev{}
				d := Wrap(fd)
				switch mode {
				case "restricted-peer":
					d.SetRestricted([]netip.Addr{peer})
				case "other-restricted":
					d.SetRestricted([]netip.Addr{other})
				}
				bufs := make([][]byte, batch)
				sizes := make([]int, batch)
				for i := range bufs {
					bufs[i] = make([]byte, 1500)
					var p []byte
					if dir == "read" {
						p = ipv4(protoTCP, local, peer, 40000, 5201) // the node sends
					} else {
						p = ipv4(protoTCP, peer, local, 5201, 40000) // the reply
					}
					copy(bufs[i], p)
				}
				// The flow the replies answer.
				send(d, fd, ipv4(protoTCP, local, peer, 40000, 5201))
				d.Device = nd
				b.SetBytes(batch * 1420)
				b.ReportAllocs()
				for b.Loop() {
					if dir == "read" {
						if n, _ := d.Read(bufs, sizes, 0); n != batch {
							b.Fatalf("Read kept %d of %d", n, batch)
						}
					} else {
						d.Write(bufs, 0)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/packet")
				if d.Dropped() != 0 {
					b.Fatalf("dropped %d", d.Dropped())
				}
			})
		}
	}
}
