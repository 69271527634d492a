package soak

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustynet/rustynet/internal/testbed"
)

// stream sends a pseudo-random byte stream at a bounded rate over TCP and
// checks every byte on arrival.
type stream struct {
	verified atomic.Int64
	mu       sync.Mutex
	failure  error
	wg       sync.WaitGroup
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
}

func (s *stream) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

func (s *stream) wait() { s.wg.Wait() }

func startStream(ctx context.Context, from, to *testbed.Host, dst netip.Addr, mbps float64) (*stream, error) {
	ln, err := to.Listen("tcp", netip.AddrPortFrom(dst, 7400).String())
	if err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	s := &stream{}
	s.wg.Go(func() {
		defer ln.Close()
		go func() { <-ctx.Done(); ln.Close() }()
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("accept: %w", err))
			}
			return
		}
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		want := newByteStream(seed)
		buf, exp := make([]byte, 64<<10), make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				want.fill(exp[:n])
				for i := range n {
					if buf[i] != exp[i] {
						s.fail(fmt.Errorf("corrupted byte at offset %d of the stream", s.verified.Load()+int64(i)))
						return
					}
				}
				s.verified.Add(int64(n))
			}
			if err != nil {
				if ctx.Err() == nil && err != io.EOF {
					s.fail(fmt.Errorf("receive: %w", err))
				}
				return
			}
		}
	})
	s.wg.Go(func() {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := from.DialContext(dctx, "tcp", netip.AddrPortFrom(dst, 7400).String())
		cancel()
		if err != nil {
			s.fail(fmt.Errorf("dial: %w", err))
			return
		}
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		src := newByteStream(seed)
		const chunk = 32 << 10
		buf := make([]byte, chunk)
		interval := time.Duration(float64(chunk*8) / (mbps * 1e6) * float64(time.Second))
		next := time.Now()
		for ctx.Err() == nil {
			src.fill(buf)
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(buf); err != nil {
				if ctx.Err() == nil {
					s.fail(fmt.Errorf("send: %w", err))
				}
				return
			}
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	})
	return s, nil
}

// byteStream is a deterministic byte stream from a seed: both ends make
// one and compare, byte for byte, whatever sizes they read and write in.
type byteStream struct {
	r    *rand.Rand
	left []byte // bytes of the last word not handed out yet
}

func newByteStream(seed uint64) *byteStream {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return &byteStream{r: rand.New(rand.NewChaCha8(key))}
}

// fill writes the next len(b) bytes of the stream into b.
func (s *byteStream) fill(b []byte) {
	i := copy(b, s.left)
	s.left = s.left[i:]
	for i < len(b) {
		v := s.r.Uint64()
		var w [8]byte
		for j := range 8 {
			w[j] = byte(v >> (8 * j))
		}
		n := copy(b[i:], w[:])
		i += n
		if n < 8 {
			s.left = append(s.left[:0], w[n:]...)
		}
	}
}
