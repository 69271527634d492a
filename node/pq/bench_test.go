package pq

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/proc"
)

// BenchmarkExchange runs whole exchanges, both sides in this process over
// loopback TCP, a connection each, as the node does. Beside ns/op it
// reports the process's CPU per exchange (cpu-ns/op, both sides) and the
// bytes of the exchange's messages (msg-bytes/op). The pq-readiness gate
// reads all three.
func BenchmarkExchange(b *testing.B) {
	a, c := pair()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx := context.Background()
	msgBytes := 0
	cpu0 := selfCPU(b)
	b.ResetTimer()
	for i := range b.N {
		served := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			defer conn.Close()
			_, err = Serve(ctx, conn, c, a.Public(), noRefusal)
			served <- err
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		res, err := Initiate(ctx, conn, a, c.Public(), uint64(i+1))
		conn.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := <-served; err != nil {
			b.Fatal(err)
		}
		msgBytes += res.Sent + res.Received
	}
	b.StopTimer()
	b.ReportMetric(float64(selfCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(msgBytes)/float64(b.N), "msg-bytes/op")
}

// selfCPU is the process's CPU time so far.
func selfCPU(b *testing.B) time.Duration {
	d, err := proc.SelfCPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
