package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseRoute(t *testing.T) {
	r, err := ParseRoute(":2379=gw-us-eu:12379@40ms")
	if err != nil || r.Listen != ":2379" || r.Target != "gw-us-eu:12379" || r.Delay != 40*time.Millisecond {
		t.Errorf("ParseRoute = %+v, %v", r, err)
	}
	if r, err := ParseRoute("127.0.0.1:1=etcd-a:2379"); err != nil || r.Delay != 0 {
		t.Errorf("ParseRoute without a delay = %+v, %v", r, err)
	}
	for _, s := range []string{"", ":1", "=x:1", ":1=", ":1=x", ":1=x:1@2s", ":1=x:1@-1ms", ":1=x:1@soon", "nohostport=x:1"} {
		if _, err := ParseRoute(s); err == nil || !strings.Contains(err.Error(), "route") {
			t.Errorf("ParseRoute(%q) = %v, want a refusal naming the route", s, err)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	f.Add(":2379=gw:1@40ms")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoute(s)
		if err == nil && (r.Delay < 0 || r.Delay > MaxDelay || r.Target == "") {
			t.Fatalf("accepted %q as %+v", s, r)
		}
	})
}

// TestRelayDelaysAndCarries: an echo through a relay of 50 ms each way
// takes at least 100 ms, carries a megabyte intact in order, and the
// half-close goes through.
func TestRelayDelaysAndCarries(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Serve(ctx, slog.New(slog.DiscardHandler), []Route{{Listen: addr, Target: echo.Addr().String(), Delay: 50 * time.Millisecond}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var c net.Conn
	for range 100 {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 100*time.Millisecond {
		t.Errorf("round trip through 2 x 50 ms took %v", rtt)
	}
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("carried %d bytes, not the %d sent in order", len(got), len(payload))
	}
}
