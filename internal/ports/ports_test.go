package ports

import (
	"net"
	"strconv"
	"testing"
)

// TestReserve: ports held are distinct, below the ephemeral range, free
// to listen on, and handed out again only once released.
func TestReserve(t *testing.T) {
	Dir = t.TempDir()
	held := map[int]func(){}
	for range 200 {
		p, release, err := Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := held[p]; dup {
			t.Fatalf("port %d handed out twice", p)
		}
		if lo, err := ephemeralStart(); p < First || p > Last || (err == nil && p >= lo) {
			t.Fatalf("port %d: outside %d-%d, or in the ephemeral range", p, First, Last)
		}
		held[p] = release
	}
	for p, release := range held {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("reserved port %d: %v", p, err)
		}
		ln.Close()
		release()
	}
}

// TestReserveSkipsListened: a port something listens on is not handed
// out.
func TestReserveSkipsListened(t *testing.T) {
	Dir = t.TempDir()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	taken := map[int]bool{}
	for p := First; p < First+50; p++ {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			lns = append(lns, ln)
			taken[p] = true
		}
	}
	for range 300 {
		p, release, err := Reserve()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if taken[p] {
			t.Fatalf("port %d is listened on, and was handed out", p)
		}
	}
}
