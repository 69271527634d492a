package pathbench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/rustynet/rustynet/internal/testbed"
)

const (
	// naiveSize is the naive path's datagram payload: the size quic-go
	// guarantees on any path (node/backend/quic's BenchmarkDatagramLoop,
	// size=1200).
	naiveSize = 1200
	// naiveName is the name in the naive server's certificate, and the
	// one the client checks.
	naiveName = "naive.pathbench.invalid"
	// naiveALPN is the application protocol both ends offer.
	naiveALPN = "rustynet-pathbench-naive"
	// naiveHandshakeTimeout bounds the listen, dial and accept of a run.
	naiveHandshakeTimeout = 10 * time.Second
	// naiveDrain is how long the receiver keeps counting after the
	// sender stops (what is in flight), before it takes only what is
	// queued; naiveSlack bounds the rest of a run beyond its warm-up and
	// measured window (closing, a sender blocked on a full queue).
	naiveDrain = 200 * time.Millisecond
	naiveSlack = 10 * time.Second
)

// naiveLoop is the naive path: plain quic-go (the module go.mod names, as
// replaced there), one connection with quic-go's defaults plus
// EnableDatagrams, from a UDP socket in client's namespace to one in
// server's, over the veth path between them (each socket is bound to its
// host's address). A sender calls SendDatagram with naiveSize bytes as
// fast as it returns and a receiver calls ReceiveDatagram, nothing else:
// node/backend/quic's BenchmarkDatagramLoop between two testbed hosts
// instead of over loopback. The server's certificate is self-signed,
// made for the benchmark, and the only one the client accepts.
type naiveLoop struct {
	server, client *testbed.Host
	serverTLS      *tls.Config
	clientTLS      *tls.Config
}

// naiveResult is one run of the naive path.
type naiveResult struct {
	// Bytes is the datagram payload the receiver got over the measured
	// window, which lasted Duration.
	Bytes    int64
	Duration time.Duration
	// Sent and Received count the datagrams of the whole run (warm-up
	// and drain included); quic-go drops what its receive queue cannot
	// hold, and what the network loses it does not resend.
	Sent, Received int64
	// RcvbufErrors is how many UDP datagrams the receiver's kernel
	// dropped over the run for want of socket buffer (its namespace's
	// Udp RcvbufErrors); the rest of the loss is quic-go's receive queue
	// (or the sender's kernel).
	RcvbufErrors int64
}

// GbitPerSecond is the goodput of the measured window, in Gbit/s.
func (r *naiveResult) GbitPerSecond() float64 {
	return float64(r.Bytes) * 8 / r.Duration.Seconds() / 1e9
}

// LostPercent is the share of the run's datagrams that did not arrive.
func (r *naiveResult) LostPercent() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * (1 - float64(r.Received)/float64(r.Sent))
}

// newNaiveLoop makes the naive path's TLS configurations: an ed25519 key
// and a self-signed certificate for naiveName, which the client trusts
// alone (its only root, and checked byte for byte).
func newNaiveLoop(server, client *testbed.Host) (*naiveLoop, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: naiveName},
		DNSNames:              []string{naiveName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, // and not a CA: nothing chains to it
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &naiveLoop{
		server: server,
		client: client,
		serverTLS: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
			NextProtos:   []string{naiveALPN},
			MinVersion:   tls.VersionTLS13,
		},
		clientTLS: &tls.Config{
			RootCAs:    roots,
			ServerName: naiveName,
			NextProtos: []string{naiveALPN},
			MinVersion: tls.VersionTLS13,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) != 1 || !bytes.Equal(cs.PeerCertificates[0].Raw, der) {
					return errors.New("naive: the server's certificate is not the benchmark's")
				}
				return nil
			},
		},
	}, nil
}

// run opens the sockets, the listener and the connection, sends for warm
// (not counted) and then dur (counted at the receiver), and closes it all
// before it returns. The whole run is bounded by ctx and by warm + dur +
// naiveHandshakeTimeout + naiveSlack.
func (l *naiveLoop) run(ctx context.Context, warm, dur time.Duration) (_ *naiveResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, warm+dur+naiveHandshakeTimeout+naiveSlack)
	defer cancel()

	sc, err := l.server.ListenPacket("udp4", netip.AddrPortFrom(l.server.Addr, 0).String())
	if err != nil {
		return nil, fmt.Errorf("naive: socket in %s: %w", l.server.Name, err)
	}
	defer sc.Close()
	cc, err := l.client.ListenPacket("udp4", netip.AddrPortFrom(l.client.Addr, 0).String())
	if err != nil {
		return nil, fmt.Errorf("naive: socket in %s: %w", l.client.Name, err)
	}
	defer cc.Close()
	// Deferred calls run last in first: connections, then the listener,
	// then the transports (which wait for their read loops), then the
	// sockets.
	st := &quicgo.Transport{Conn: sc}
	defer st.Close()
	ct := &quicgo.Transport{Conn: cc}
	defer ct.Close()
	cfg := &quicgo.Config{EnableDatagrams: true}
	ln, err := st.Listen(l.serverTLS, cfg)
	if err != nil {
		return nil, fmt.Errorf("naive: listen: %w", err)
	}
	defer ln.Close()

	hctx, hcancel := context.WithTimeout(ctx, naiveHandshakeTimeout)
	defer hcancel()
	type accepted struct {
		c   *quicgo.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept(hctx)
		acc <- accepted{c, err}
	}()
	d, dialErr := ct.Dial(hctx, sc.LocalAddr(), l.clientTLS, cfg)
	if dialErr != nil {
		hcancel()
	}
	ar := <-acc
	if ar.c != nil {
		defer ar.c.CloseWithError(0, "")
	}
	if dialErr != nil {
		return nil, fmt.Errorf("naive: dial %s from %s: %w", sc.LocalAddr(), l.client.Name, dialErr)
	}
	defer d.CloseWithError(0, "")
	if ar.err != nil {
		return nil, fmt.Errorf("naive: accept in %s: %w", l.server.Name, ar.err)
	}
	a := ar.c
	if s := d.ConnectionState().SupportsDatagrams; !s.Local || !s.Remote {
		return nil, fmt.Errorf("naive: datagrams not negotiated (local %t, remote %t)", s.Local, s.Remote)
	}
	// A sender blocked in SendDatagram (the send queue full) returns when
	// its connection closes: close both if the run overstays its bound.
	defer context.AfterFunc(ctx, func() {
		d.CloseWithError(1, "naive: run timed out")
		a.CloseWithError(1, "naive: run timed out")
	})()

	var stop atomic.Bool
	var sent, got, gotBytes atomic.Int64
	var sendErr error
	var sender, receiver sync.WaitGroup
	msg := make([]byte, naiveSize)
	sender.Go(func() {
		for !stop.Load() {
			if err := d.SendDatagram(msg); err != nil {
				sendErr = err
				return
			}
			sent.Add(1)
		}
	})
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	receiver.Go(func() {
		for {
			// With rctx canceled, this returns what is already queued
			// and then the error (third_party/quic-go, patch 2).
			p, err := a.ReceiveDatagram(rctx)
			if err != nil {
				return
			}
			got.Add(1)
			gotBytes.Add(int64(len(p)))
		}
	})
	wait := func(t time.Duration) error {
		tm := time.NewTimer(t)
		defer tm.Stop()
		select {
		case <-tm.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	rcvbuf0, rcvbufErr := udpRcvbufErrors(l.server)
	var b0, b1 int64
	var t0, t1 time.Time
	err = wait(warm)
	if err == nil {
		b0, t0 = gotBytes.Load(), time.Now()
		err = wait(dur)
		b1, t1 = gotBytes.Load(), time.Now()
	}
	stop.Store(true)
	sender.Wait()
	if err == nil {
		err = wait(naiveDrain)
	}
	rcancel()
	receiver.Wait()
	if err != nil {
		return nil, fmt.Errorf("naive: %w", err)
	}
	if sendErr != nil {
		return nil, fmt.Errorf("naive: send: %w", sendErr)
	}
	rcvbuf1, err := udpRcvbufErrors(l.server)
	if err = errors.Join(rcvbufErr, err); err != nil {
		return nil, fmt.Errorf("naive: %w", err)
	}
	return &naiveResult{
		Bytes: b1 - b0, Duration: t1.Sub(t0), Sent: sent.Load(), Received: got.Load(),
		RcvbufErrors: rcvbuf1 - rcvbuf0,
	}, nil
}

// udpRcvbufErrors reads Udp RcvbufErrors from /proc/net/snmp in h's
// namespace (through thread-self: the thread Do locks in it).
func udpRcvbufErrors(h *testbed.Host) (int64, error) {
	var n int64
	err := h.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "RcvbufErrors" && i < len(f) {
					n, err = strconv.ParseInt(f[i], 10, 64)
					return err
				}
			}
		}
		return errors.New("no Udp RcvbufErrors")
	})
	if err != nil {
		return 0, fmt.Errorf("%s: /proc/net/snmp: %w", h.Name, err)
	}
	return n, nil
}
