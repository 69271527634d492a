package drload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
)

// TestRun writes through a live controller and one that is not there, in
// turn: the live one acknowledges registrations and endpoint reports, the
// other's writes are logged as failed, and every line is a Record.
func TestRun(t *testing.T) {
	c := controllertest.Start(t)
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cfg := Config{Controllers: []string{c.URL, "https://127.0.0.1:1"}, CAPEM: ca, AuthKey: c.AuthKey(true), Prefix: "drill-",
		Duration: 6 * time.Second, RegistrationsPerMinute: 300, EndpointReportsPerMinute: 300, Timeout: 2 * time.Second}
	if err := Run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.At.IsZero() || r.Done.Before(r.At) {
			t.Errorf("times of %q", sc.Text())
		}
		switch {
		case r.OK && r.Replica != c.URL, !r.OK && r.Replica == c.URL:
			t.Errorf("%q: the live controller's writes succeed, the other's fail", sc.Text())
		case r.OK && r.Op == OpRegister && (r.Node == "" || r.Hostname == ""):
			t.Errorf("a registration without its node: %q", sc.Text())
		case !r.OK && r.Error == "":
			t.Errorf("a failed write without why: %q", sc.Text())
		}
		key := r.Op
		if !r.OK {
			key += " failed"
		}
		count[key]++
	}
	if count[OpRegister] < 3 || count[OpEndpoints] < 3 || count[OpRegister+" failed"] < 3 {
		t.Errorf("writes %v: want at least 3 registrations and 3 reports acknowledged, and 3 failed", count)
	}
}

// TestAHungReplicaDelaysNoOtherWrite: a replica that holds every write
// until the timeout (it accepts connections and never answers, as one cut
// off by a partition can) does not hold up the writes to the live one,
// which go on at the load's pace.
func TestAHungReplicaDelaysNoOtherWrite(t *testing.T) {
	c := controllertest.Start(t)
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn) // never read, never answered
		}
	})
	var out bytes.Buffer
	// Every 100 ms a registration, to each replica in turn; a write to
	// the hung one waits 2 s. Held up by it, the live replica would see
	// about one write in 2 s: 2 in the run.
	cfg := Config{Controllers: []string{c.URL, "https://" + ln.Addr().String()}, CAPEM: ca, AuthKey: c.AuthKey(true), Prefix: "hung-",
		Duration: 3 * time.Second, RegistrationsPerMinute: 600, Timeout: 2 * time.Second}
	if err := Run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	held.Wait()
	acked, failed := 0, 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		switch {
		case r.OK && r.Replica == c.URL:
			acked++
		case !r.OK && r.Replica != c.URL:
			failed++
		default:
			t.Errorf("%q: the live replica's writes succeed, the hung one's fail", sc.Text())
		}
	}
	if acked < 8 || failed < 1 {
		t.Errorf("%d writes acknowledged by the live replica (want at least 8 of about 15), %d failed on the hung one", acked, failed)
	}
}
