package proc

import (
	"crypto/sha256"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	// Burn CPU until the counter has something to show: it counts in
	// clock ticks (10 ms), and a loop whose result is unused is compiled
	// away (the old loop here was, and the test failed whenever the
	// process had used less than a tick). Hashing into a live value
	// cannot be.
	var sink [32]byte
	var cpu time.Duration
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		for range 1000 {
			sink = sha256.Sum256(sink[:])
		}
		cpu, err = CPUTime(os.Getpid())
		if err != nil || cpu > 0 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || cpu <= 0 {
		t.Errorf("CPUTime(self) = %v, %v; want a positive time", cpu, err)
	}
	rss, peak, err := Memory(os.Getpid())
	if err != nil || rss <= 0 || peak < rss {
		t.Errorf("Memory(self) = %d, %d, %v; want 0 < rss <= peak", rss, peak, err)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Error("CPUTime(-1) succeeded")
	}
}

func TestIdentity(t *testing.T) {
	id, err := Identity(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Running(id) {
		t.Errorf("Running(%q) = false for this very process", id)
	}
	st, err := ReadStat(os.Getpid())
	if err != nil || st.State == 'Z' || st.Command == "" {
		t.Fatalf("ReadStat(self) = %+v, %v", st, err)
	}
	// The same pid with another start time is another process.
	other := fmt.Sprintf("%d@%d", os.Getpid(), st.Start+1)
	for _, id := range []string{other, "", "x@1", "0@1", "-1@1", "99999999@1", "12"} {
		if Running(id) {
			t.Errorf("Running(%q) = true", id)
		}
	}
}

func TestParseStat(t *testing.T) {
	// A command may hold spaces and parentheses: the fields start after
	// the last ')'.
	line := "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 90118 1000 10 18446744073709551615\n"
	st, ok := parseStat([]byte(line))
	if !ok {
		t.Fatalf("parseStat(%q) failed", line)
	}
	want := Stat{Command: "a (b) c", State: 'S', PGrp: 4242, Start: 90118, UTime: 7, STime: 3}
	if *st != want {
		t.Errorf("parseStat = %+v, want %+v", *st, want)
	}
	for _, bad := range []string{"", "4242 a) S", "4242 (a S 1", "4242 (a) S 1 2 3", "4242 (a) SS 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 90118"} {
		if st, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) = %+v, want a refusal", bad, st)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 10\n"))
	f.Add([]byte("9 ()) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, ok := parseStat(data)
		if ok && (st == nil || st.State == 0) {
			t.Fatalf("parseStat(%q) = %+v, true", data, st)
		}
	})
}

// TestSelfCPU: the process's own CPU time grows while it hashes.
func TestSelfCPU(t *testing.T) {
	before, err := SelfCPU()
	if err != nil {
		t.Fatal(err)
	}
	var sink [32]byte
	for range 20000 {
		sink = sha256.Sum256(sink[:])
	}
	after, err := SelfCPU()
	if err != nil || after <= before {
		t.Errorf("SelfCPU went from %v to %v (%v) hashing 20,000 times (last %x); want it to grow", before, after, err, sink[:4])
	}
}
