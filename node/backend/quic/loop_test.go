package quic

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// loopPair is a plain quic-go connection over loopback with datagrams on
// and quic-go's defaults otherwise, between two endpoints holding this
// backend's certificates: the dialer's end and the acceptor's.
func loopPair(tb testing.TB) (dialer, acceptor *quicgo.Conn) {
	tb.Helper()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	return loopPairOn(tb, s)
}

// identities returns a dialer's and an acceptor's certificates and keys,
// the dialer's key the lower.
func identities(tb testing.TB) (ccert, scert tls.Certificate, ckey, skey edKey) {
	tb.Helper()
	kc, ks := keys()
	ccert, err := certificate(signingKey(kc))
	if err != nil {
		tb.Fatal(err)
	}
	scert, err = certificate(signingKey(ks))
	if err != nil {
		tb.Fatal(err)
	}
	ckey, _ = parseKey(PublicKey(kc))
	skey, _ = parseKey(PublicKey(ks))
	return ccert, scert, ckey, skey
}

// loopPairOn is loopPair with the dialer on the socket dc.
func loopPairOn(tb testing.TB, dc net.PacketConn) (dialer, acceptor *quicgo.Conn) {
	tb.Helper()
	ccert, scert, ckey, skey := identities(tb)
	transport := func(s net.PacketConn) *quicgo.Transport {
		t := &quicgo.Transport{Conn: s}
		tb.Cleanup(func() { t.Close(); s.Close() })
		return t
	}
	ss, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	st, ct := transport(ss), transport(dc)
	cfg := &quicgo.Config{EnableDatagrams: true}
	ln, err := st.Listen(serverTLS(scert, func(k edKey) bool { return k == ckey }), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *quicgo.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	dialer, err = ct.Dial(ctx, st.Conn.LocalAddr(), clientTLS(ccert, skey), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	acceptor = <-accepted
	if acceptor == nil {
		tb.Fatal("no connection accepted")
	}
	tb.Cleanup(func() { dialer.CloseWithError(0, ""); acceptor.CloseWithError(0, "") })
	return dialer, acceptor
}

// BenchmarkDatagramLoop is the naive ceiling the backend is measured
// against: plain quic-go, one connection over loopback, the sender
// calling SendDatagram as fast as it returns and the receiver calling
// ReceiveDatagram, nothing else (no device, no fragmenting, no queues of
// ours). size=1200 is the datagram size quic-go guarantees on any path;
// size=MaxMTU is the largest this backend sends whole once path MTU
// discovery has run (the benchmark waits for it). It reports the goodput
// received and the share of datagrams lost (quic-go drops what its
// receive queue cannot hold).
func BenchmarkDatagramLoop(b *testing.B) {
	for _, size := range []int{1200, MaxMTU} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			d, a := loopPair(b)
			waitDatagramRoom(b, d, size)
			// What waitDatagramRoom sent is not the benchmark's: let it
			// arrive, and take it from the queue.
			time.Sleep(settle)
			for {
				if _, err := a.ReceiveDatagram(drained); err != nil {
					break
				}
			}
			msg := make([]byte, size)
			var got atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					_, err := a.ReceiveDatagram(ctx)
					cancel()
					if err != nil {
						return // the sender is done and the queue is empty
					}
					got.Add(1)
				}
			}()
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := d.SendDatagram(msg); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			elapsed := time.Since(start) - 200*time.Millisecond
			b.StopTimer()
			b.ReportMetric(float64(got.Load())*float64(size)*8/elapsed.Seconds()/1e9, "Gbit/s")
			b.ReportMetric(100*(1-float64(got.Load())/float64(b.N)), "%lost")
		})
	}
}

// waitDatagramRoom waits until c can send a datagram of size bytes whole:
// path MTU discovery raises quic-go's limit from its initial 1,200-byte
// packets within a few round trips of traffic.
func waitDatagramRoom(tb testing.TB, c *quicgo.Conn, size int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	small := make([]byte, 64)
	for {
		err := c.SendDatagram(make([]byte, size))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no %d-byte datagram fits after 10 s: %v", size, err)
		}
		c.SendDatagram(small) // traffic, for discovery to probe alongside
		time.Sleep(5 * time.Millisecond)
	}
}
