package pathbench

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/internal/testbed"
)

// TestNaiveLoop runs the naive path briefly between two testbed hosts: it
// carries datagrams, counts no more than were sent, leaves no goroutine
// behind, and its client refuses a server with any other certificate.
func TestNaiveLoop(t *testing.T) {
	require.Root(t)
	n := testbed.New(t, testbed.Options{Hosts: 2})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l, err := newNaiveLoop(n.Hosts[1], n.Hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.run(t.Context(), 200*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.3f Gbit/s, %.1f%% of %d datagrams lost", res.GbitPerSecond(), res.LostPercent(), res.Sent)
	if res.Bytes <= 0 || res.Received <= 0 || res.Received > res.Sent || res.Duration < 500*time.Millisecond {
		t.Errorf("implausible run: %+v", res)
	}

	other, err := newNaiveLoop(n.Hosts[1], n.Hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	l.serverTLS = other.serverTLS // a server with a certificate of its own
	if _, err := l.run(t.Context(), 0, 100*time.Millisecond); err == nil {
		t.Error("the client accepted a certificate other than the benchmark's")
	} else {
		t.Logf("other certificate refused: %v", err)
	}
}
