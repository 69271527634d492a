package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/key"
)

// instance is one backend under test, living in a testbed host's network
// namespace (its sockets are opened there), on a channel TUN the suite
// feeds and drains packet by packet.
type instance struct {
	t    testing.TB
	spec backend.Spec
	host hostNS
	ip   netip.Addr
	key  key.NodePrivate
	tun  *tuntest.ChannelTUN
	b    backend.Backend
	// recv receives every packet the backend delivers to the device.
	recv   chan []byte
	done   chan struct{} // closed by close: stops the drain goroutine
	closed bool
}

// hostNS is what the suite needs of a namespace: run a function inside
// it, and its address on the shared network.
type hostNS interface {
	Do(fn func() error) error
	Address() netip.Addr
}

// newInstance creates a backend on a channel TUN inside h. Mesh address
// 100.64.0.N.
func newInstance(t testing.TB, spec backend.Spec, h hostNS, n int) *instance {
	t.Helper()
	in := &instance{t: t, spec: spec, host: h, key: key.NewNode(),
		ip: netip.AddrFrom4([4]byte{100, 64, byte(n >> 8), byte(n)}), tun: tuntest.NewChannelTUN(), recv: make(chan []byte, 8192), done: make(chan struct{})}
	if err := in.create(in.tun.TUN()); err != nil {
		t.Fatalf("%s: create backend: %v", spec.Name, err)
	}
	done := in.done
	go func() {
		for {
			select {
			case p := <-in.tun.Inbound:
				select {
				case in.recv <- p:
				default: // the test is not reading; drop rather than stall the backend
				}
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(in.close)
	return in
}

func (in *instance) create(dev tun.Device) error {
	return in.host.Do(func() error {
		b, err := in.spec.New(backend.Options{Device: dev, Logger: testLogger(in.spec.Name)})
		if err != nil {
			return err
		}
		in.b = b
		// A first Reconfig opens the sockets, here in the namespace.
		return in.b.Reconfig(&backend.Config{PrivateKey: in.key})
	})
}

func testLogger(name string) *slog.Logger {
	if os.Getenv("RUSTYNET_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("backend", name)
}

func (in *instance) close() {
	if in.closed {
		return
	}
	in.closed = true
	if err := in.b.Close(); err != nil {
		in.t.Errorf("Close: %v", err)
	}
	close(in.done)
}

// endpoint is where peers reach the instance.
func (in *instance) endpoint() netip.AddrPort {
	return netip.AddrPortFrom(in.host.Address(), in.b.Port())
}

// peer describes the instance as a peer of others.
func (in *instance) peer() backend.Peer {
	p := backend.Peer{PublicKey: in.key.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(in.ip, 32)}, Endpoint: in.endpoint()}
	if in.spec.PublicKey != nil {
		p.BackendKey = in.spec.PublicKey(in.key)
	}
	return p
}

// set configures the instance with peers (inside its namespace).
func (in *instance) set(peers ...backend.Peer) {
	in.t.Helper()
	if err := in.reconfig(peers...); err != nil && !errors.Is(err, backend.ErrNoChanges) {
		in.t.Fatalf("Reconfig: %v", err)
	}
}

func (in *instance) reconfig(peers ...backend.Peer) error {
	return in.host.Do(func() error {
		return in.b.Reconfig(&backend.Config{PrivateKey: in.key, Peers: peers})
	})
}

// connect configures a and b as each other's peers.
func connect(a, b *instance) {
	a.set(b.peer())
	b.set(a.peer())
}

// packet builds an IPv4 UDP packet of exactly size bytes (at least 28) from
// src to dst whose payload starts with seq and is random after it.
func packet(src, dst netip.Addr, size int, seq uint32) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:22], 40000)
	binary.BigEndian.PutUint16(p[22:24], 40001)
	binary.BigEndian.PutUint16(p[24:26], uint16(size-20))
	if size >= 32 {
		binary.BigEndian.PutUint32(p[28:32], seq)
		rand.Read(p[32:])
	}
	return p
}

// inject hands a packet to the backend as if the OS sent it.
func (in *instance) inject(p []byte) error {
	select {
	case in.tun.Outbound <- p:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("the backend did not read from its device for 5s")
	}
}

// expect waits up to d for want to be delivered to in, skipping other
// packets (keepalives of some backends, earlier retries).
func (in *instance) expect(want []byte, d time.Duration) error {
	deadline := time.After(d)
	for {
		select {
		case got := <-in.recv:
			if bytes.Equal(got, want) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("a %d-byte packet was not delivered to %s within %v", len(want), in.ip, d)
		}
	}
}

// send injects a packet at from for to and waits for it to arrive,
// re-sending every 500ms: the first packets may wait for a handshake.
func send(from, to *instance, size int, d time.Duration) error {
	p := packet(from.ip, to.ip, size, uint32(time.Now().UnixNano()))
	deadline := time.Now().Add(d)
	for {
		if err := from.inject(p); err != nil {
			return err
		}
		if err := to.expect(p, 500*time.Millisecond); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s -> %s: a %d-byte packet was not delivered within %v", from.ip, to.ip, size, d)
		}
	}
}

// quiet reports an error if in receives any of the packets in ps within d.
func (in *instance) quiet(d time.Duration, ps ...[]byte) error {
	deadline := time.After(d)
	for {
		select {
		case got := <-in.recv:
			for _, p := range ps {
				if bytes.Equal(got, p) {
					return fmt.Errorf("%s received a %d-byte packet it must not have", in.ip, len(got))
				}
			}
		case <-deadline:
			return nil
		}
	}
}

// drain discards whatever in has received so far.
func (in *instance) drain() {
	for {
		select {
		case <-in.recv:
		default:
			return
		}
	}
}

// stream sends a packet each way every interval until ctx is done and
// counts what arrives; the counts can be read while it runs.
type stream struct {
	mu       sync.Mutex
	received map[string]int // direction -> packets delivered
	last     map[string]time.Time
}

func (s *stream) count(dir string) (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[dir], s.last[dir]
}

func runStream(ctx context.Context, a, b *instance, every time.Duration) *stream {
	s := &stream{received: map[string]int{}, last: map[string]time.Time{}}
	for _, dir := range [][2]*instance{{a, b}, {b, a}} {
		from, to := dir[0], dir[1]
		name := from.ip.String() + ">" + to.ip.String()
		go func() {
			var seq uint32
			for ctx.Err() == nil {
				seq++
				from.inject(packet(from.ip, to.ip, 100, seq))
				select {
				case <-ctx.Done():
				case <-time.After(every):
				}
			}
		}()
		go func() {
			for {
				select {
				case p := <-to.recv:
					if len(p) >= 20 && netip.AddrFrom4([4]byte(p[12:16])) == from.ip {
						s.mu.Lock()
						s.received[name]++
						s.last[name] = time.Now()
						s.mu.Unlock()
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return s
}
