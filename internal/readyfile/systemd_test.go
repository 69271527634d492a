package readyfile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket listens where systemd would (NOTIFY_SOCKET) and returns
// the messages a daemon sends.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

func next(t *testing.T, msgs <-chan string, within time.Duration) (string, bool) {
	t.Helper()
	select {
	case m := <-msgs:
		return m, true
	case <-time.After(within):
		return "", false
	}
}

// TestSystemdNotify: under a unit of Type=notify a daemon says READY=1
// with its status, writes its ready file too, feeds the watchdog while
// healthy, stops feeding it while not, and says STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	msgs := notifySocket(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	file := filepath.Join(t.TempDir(), "ready.json")
	Ready(log, file, Info{PID: 42, API: "127.0.0.1:8443"}, "serving on 127.0.0.1:8443")
	if m, ok := next(t, msgs, time.Second); !ok || m != "READY=1\nSTATUS=serving on 127.0.0.1:8443" {
		t.Fatalf("ready: got %q (%v)", m, ok)
	}
	if info, err := Wait(context.Background(), file, nil, time.Second); err != nil || info.API != "127.0.0.1:8443" {
		t.Errorf("the ready file: %+v, %v", info, err)
	}

	t.Setenv("WATCHDOG_USEC", "150000") // 150 ms: checked every 50 ms
	var healthy atomic.Bool
	var passed, failed atomic.Int64 // checks that returned nil, an error
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watchdog(ctx, log, func(context.Context) error {
			if healthy.Load() {
				passed.Add(1)
				return nil
			}
			failed.Add(1)
			return errors.New("store unreachable")
		})
	}()
	// Counted in checks, not in time.
	waitFor := func(c *atomic.Int64, n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for c.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d checks in 10 s, want %d", c.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(&passed, 2)
	healthy.Store(false)
	waitFor(&failed, 3)
	healthy.Store(true)
	waitFor(&passed, passed.Load()+2)
	cancel()
	<-done
	Stopping(log)
	// One sender, one datagram socket: the feeds all come before
	// STOPPING=1, one for every check that passed and none for those
	// that failed.
	feeds := 0
	for {
		m, ok := next(t, msgs, 5*time.Second)
		if !ok {
			t.Fatal("no STOPPING=1")
		}
		if m == "STOPPING=1" {
			break
		}
		if m != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q", m)
		}
		feeds++
	}
	if int64(feeds) != passed.Load() || failed.Load() < 3 {
		t.Errorf("%d watchdog feeds for %d passing and %d failing checks: want one per passing check", feeds, passed.Load(), failed.Load())
	}
}

// TestSystemdAbsent: without NOTIFY_SOCKET or WATCHDOG_USEC (not under
// systemd) nothing is sent, and the watchdog returns at once.
func TestSystemdAbsent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	Ready(log, "", Info{}, "x")
	done := make(chan struct{})
	go func() { Watchdog(context.Background(), log, func(context.Context) error { return nil }); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Watchdog without a watchdog did not return")
	}
}
