package wireguard

import (
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/proc"
	"github.com/rustynet/rustynet/node/backend"
)

// BenchmarkHandshake times WireGuard handshakes between two backends in
// this process over loopback UDP, classical and with a preshared key.
// wireguard-go sends at most one initiation per peer every 5 s
// (RekeyTimeout), so each iteration sets up a fresh pair (not timed) and
// starts one handshake with Rehandshake. It reports, per handshake, the
// time from Rehandshake to the completion the initiator records
// (handshake-ns/op; ns/op adds the set-up and the polling that waits for
// it), the process's CPU from Rehandshake to that completion less that of
// the polling (cpu-ns/op, both sides), and the UDP payload bytes both ways
// (wire-bytes/op: initiation, response and the keepalive that confirms
// it). The pq-readiness gate reads them.
func BenchmarkHandshake(b *testing.B) {
	for _, mode := range []string{"classical", "psk"} {
		b.Run(mode, func(b *testing.B) {
			var took, cpu time.Duration
			var wire uint64
			for range b.N {
				b.StopTimer()
				a, c := pair(b)
				if mode == "psk" {
					ap, cp := a.peer(a.b.Port()), c.peer(c.b.Port())
					ap.PresharedKey, cp.PresharedKey = [32]byte{7}, [32]byte{7}
					configure(b, a, cp)
					configure(b, c, ap)
				}
				// Let the new devices' start-up work finish first.
				time.Sleep(20 * time.Millisecond)
				// The cost of one poll, to take out of the CPU figure.
				const calib = 50
				p0 := selfCPU(b)
				for range calib {
					lastHandshake(b, c, a)
				}
				perPoll := (selfCPU(b) - p0) / calib
				b.StartTimer()
				polls := 0
				cpu0, start := selfCPU(b), time.Now()
				if err := c.b.(backend.Rehandshaker).Rehandshake(a.key.Public()); err != nil {
					b.Fatal(err)
				}
				for {
					time.Sleep(100 * time.Microsecond)
					polls++
					if hs := lastHandshake(b, c, a); !hs.IsZero() {
						took += hs.Sub(start)
						break
					}
					if time.Since(start) > 10*time.Second {
						b.Fatal("no handshake within 10s")
					}
				}
				cpu += selfCPU(b) - cpu0 - time.Duration(polls)*perPoll
				b.StopTimer()
				time.Sleep(20 * time.Millisecond) // the confirming keepalive
				st, err := a.b.Stats()
				if err != nil || len(st) != 1 {
					b.Fatalf("Stats = %v, %v", st, err)
				}
				wire += st[0].RxBytes + st[0].TxBytes
				a.b.Close()
				c.b.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(took)/float64(b.N), "handshake-ns/op")
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(wire)/float64(b.N), "wire-bytes/op")
		})
	}
}

// selfCPU is the process's CPU time so far.
func selfCPU(b *testing.B) time.Duration {
	d, err := proc.SelfCPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
