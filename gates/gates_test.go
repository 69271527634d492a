package gates

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

func TestSpecValidation(t *testing.T) {
	ok := Spec{Name: "perf-budget/backend=quic", Owner: "sre", Timeout: time.Minute, Channels: []string{"ga"}, Needs: []Need{NeedRoot},
		Run: func(context.Context, *Run) error { return nil }}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	for _, c := range []struct {
		mutate func(*Spec)
		want   string
	}{
		{func(s *Spec) { s.Name = "Perf Budget" }, "gate name"},
		{func(s *Spec) { s.Owner = "bob" }, "owner"},
		{func(s *Spec) { s.Timeout = 0 }, "timeout"},
		{func(s *Spec) { s.Timeout = 30 * time.Hour }, "timeout"},
		{func(s *Spec) { s.Channels = []string{"weekly"} }, "channel"},
		{func(s *Spec) { s.Needs = []Need{"gpu"} }, "need"},
		{func(s *Spec) { s.Run = nil }, "no Run"},
	} {
		s := ok
		c.mutate(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate = %v, want an error about %s", err, c.want)
		}
	}
	var r Registry
	r.Register(ok)
	defer func() {
		if recover() == nil {
			t.Error("registering a duplicate did not panic")
		}
	}()
	r.Register(ok)
}

func policy(t *testing.T, yaml string, known func(string) bool) *policies.Release {
	t.Helper()
	p, err := policies.ParseRelease("release.yaml", []byte(yaml), known)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	p := policy(t, `version: 1
channels:
  nightly:
    gates: [a, b]
waivers:
  - gate: b
    owner: sre
    reason: flaky on this hardware
    ticket: RN-9
    expires: 2026-12-01
`, nil)
	before := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	after := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	v, err := Evaluate(p, "nightly", map[string]evidence.Status{"a": "pass", "b": "fail"}, before, nil)
	if err != nil || !v.Passed || v.Gates[1].Waiver == nil {
		t.Errorf("with a waiver in force: %+v, %v; want a pass with b waived", v, err)
	}
	v, _ = Evaluate(p, "nightly", map[string]evidence.Status{"a": "pass", "b": "fail"}, after, nil)
	if v.Passed || v.Gates[1].Expired == nil || !strings.Contains(v.Gates[1].Reason, "expired") {
		t.Errorf("after the waiver expired: %+v; want blocked, saying the waiver expired", v)
	}
	v, _ = Evaluate(p, "nightly", map[string]evidence.Status{"a": "not-run", "b": "pass"}, before, nil)
	if v.Passed {
		t.Error("a gate that did not run for want of a need passed the channel")
	}
	if v, err := Evaluate(p, "nightly", map[string]evidence.Status{"b": "pass"}, before, nil); err != nil || v.Passed || v.Gates[0].Status != StatusMissing {
		t.Errorf("a gate that did not run: %+v, %v; want blocked with status missing", v, err)
	}
	if _, err := Evaluate(p, "ga", nil, before, nil); err == nil {
		t.Error("an unknown channel evaluated")
	}

	// A partial run of b and c: b is judged (its failure is waived), c is
	// judged although the channel does not require it, a is out of scope
	// and does not block; the verdict says it is partial.
	v, err = Evaluate(p, "nightly", map[string]evidence.Status{"b": "fail", "c": "pass"}, before, []string{"b", "c"})
	if err != nil || !v.Passed || !v.Partial() || len(v.Gates) != 3 {
		t.Fatalf("partial run: %+v, %v; want a partial pass judging 3 gates", v, err)
	}
	if g := v.Gates[0]; g.Gate != "a" || g.Status != StatusOutOfScope || g.Blocking {
		t.Errorf("gate a outside the scope: %+v; want out of scope, not blocking", g)
	}
	if g := v.Gates[1]; g.Gate != "b" || g.Waiver == nil {
		t.Errorf("gate b in the scope: %+v; want judged, with its waiver", g)
	}
	v, _ = Evaluate(p, "nightly", map[string]evidence.Status{"c": "fail"}, before, []string{"c"})
	if v.Passed || !v.Gates[2].Blocking {
		t.Errorf("partial run with a failing gate: %+v; want blocked by c", v)
	}
	v, _ = Evaluate(p, "nightly", map[string]evidence.Status{"a": "pass", "b": "pass"}, before, nil)
	if v.Partial() {
		t.Error("a full run's verdict says it is partial")
	}
}

// TestExecuteAndVerify runs fake gates of every outcome through the runner,
// then verifies the bundle and recomputes its verdict.
func TestExecuteAndVerify(t *testing.T) {
	var r Registry
	add := func(name string, needs []Need, run func(context.Context, *Run) error) {
		r.Register(Spec{Name: name, Owner: "release-eng", Timeout: 2 * time.Second, Needs: needs, Run: run})
	}
	bin := filepath.Join(t.TempDir(), "rustynetd")
	os.WriteFile(bin, []byte("binary"), 0o755)
	add("build", nil, func(ctx context.Context, r *Run) error { r.Built(map[string]string{"rustynetd": bin}); return nil })
	add("passes", nil, func(ctx context.Context, r *Run) error {
		r.Measure(evidence.Measurement{Name: "x", Unit: "ms", Method: "m", Values: []float64{1, 2, 3}})
		r.Log.Write([]byte("hello\n"))
		return r.Artifact("data.json", []byte("{}"))
	})
	add("fails", nil, func(ctx context.Context, r *Run) error { return Fail("the figure is over budget") })
	add("errors", nil, func(ctx context.Context, r *Run) error { return errors.New("setup broke") })
	add("panics", nil, func(ctx context.Context, r *Run) error { panic("boom") })
	add("hangs", nil, func(ctx context.Context, r *Run) error { <-ctx.Done(); return ctx.Err() })
	add("needs-gpu-ish", []Need{NeedDocker}, func(ctx context.Context, r *Run) error { return nil })
	add("tests", nil, func(ctx context.Context, r *Run) error { return r.TestResult(true, []string{"p.TestA"}, nil) })
	// A gate that drops the error of evidence it could not record.
	add("drops-errors", nil, func(ctx context.Context, r *Run) error {
		r.Artifact("a.txt", []byte("1"))
		r.Artifact("a.txt", []byte("2")) // written twice: refused
		return nil
	})
	// A test gate that said "passed" and then hung: it timed out, and is
	// signed so.
	add("tests-hang", nil, func(ctx context.Context, r *Run) error {
		r.TestResult(true, []string{"p.TestB"}, nil)
		<-ctx.Done()
		return ctx.Err()
	})
	// A gate that ignores its timeout and writes after it was abandoned.
	lateDone := make(chan error, 1)
	add("late", nil, func(ctx context.Context, r *Run) error {
		<-ctx.Done()
		time.Sleep(500 * time.Millisecond) // past the grace
		lateDone <- r.Artifact("late.txt", []byte("late"))
		r.Measure(evidence.Measurement{Name: "late", Unit: "ms", Method: "m", Values: []float64{1}})
		return nil
	})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [late, passes, fails, errors, panics, hangs, needs-gpu-ish, tests, drops-errors, tests-hang]\n", r.Has)

	keys := t.TempDir()
	evidence.Keygen(keys, evidence.ECDSAP256)
	signer, _ := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	verifier, _ := evidence.LoadVerifier(filepath.Join(keys, evidence.PublicKeyFile))
	out := filepath.Join(t.TempDir(), "bundle")
	var progress strings.Builder
	o, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: out, Signer: signer,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test", Progress: &progress, Grace: 100 * time.Millisecond,
		Has: func(n Need) (bool, string) { return n != NeedDocker, "no docker here" }})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if err := <-lateDone; !errors.Is(err, errClosed) {
		t.Errorf("an artifact written after the gate was abandoned: %v, want it refused", err)
	}
	want := map[string]evidence.Status{"build": "pass", "passes": "pass", "fails": "fail", "errors": "error", "panics": "error",
		"hangs": "timeout", "needs-gpu-ish": "not-run", "tests": "pass", "drops-errors": "error", "tests-hang": "timeout", "late": "timeout"}
	for _, res := range o.Results {
		if want[res.Gate] != res.Status {
			t.Errorf("gate %s: status %s (%s), want %s", res.Gate, res.Status, res.Reason, want[res.Gate])
		}
	}
	if o.Verdict.Passed {
		t.Error("the verdict passed with failing gates")
	}
	if !strings.Contains(progress.String(), "fails") {
		t.Errorf("progress output lacks the gates:\n%s", progress.String())
	}
	got, err := evidence.Verify(out, verifier, "")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	statuses := map[string]evidence.Status{}
	for name, g := range got.Gates {
		statuses[name] = g.Result.Status
		if g.Result.Status != want[name] {
			t.Errorf("signed status of %s: %s, want %s", name, g.Result.Status, want[name])
		}
	}
	for _, res := range o.Results {
		if res.Gate == "late" && !strings.Contains(res.Reason, "refused after the gate's result was taken: artifact late.txt, measurement late") {
			t.Errorf("the late gate's reason %q does not say what was refused", res.Reason)
		}
	}
	pol, err := policies.ParseRelease("release.yaml", got.Policy, r.Has)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Evaluate(pol, "nightly", statuses, got.Verdict.GetTimeVerified().AsTime(), nil)
	if err != nil || v.Passed != o.Verdict.Passed {
		t.Errorf("recomputed verdict %+v, %v; the run said passed=%v", v, err, o.Verdict.Passed)
	}
	if len(got.Subjects) != 2 {
		t.Errorf("subjects = %+v, want the commit and rustynetd", got.Subjects)
	}
}

// TestDirtyTreeRefused: beta and GA judge a commit; a dirty tree is
// refused before any gate runs. Nightly runs it, and the bundle says so.
func TestDirtyTreeRefused(t *testing.T) {
	var r Registry
	r.Register(Spec{Name: "unit", Owner: "release-eng", Timeout: time.Second, Run: func(context.Context, *Run) error { return nil }})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [unit]\n  beta:\n    gates: [unit]\n  ga:\n    gates: [unit]\n", r.Has)
	keys := t.TempDir()
	evidence.Keygen(keys, evidence.ECDSAP256)
	signer, _ := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	for _, ch := range []string{"beta", "ga"} {
		out := filepath.Join(t.TempDir(), "bundle")
		_, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: ch, Out: out, Signer: signer, Dirty: true,
			Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
		if !errors.Is(err, ErrDirtyTree) {
			t.Errorf("Execute(%s, dirty) = %v, want ErrDirtyTree", ch, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("Execute(%s, dirty) wrote a bundle", ch)
		}
	}
	if _, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: filepath.Join(t.TempDir(), "b"), Signer: signer, Dirty: true,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"}); err != nil {
		t.Errorf("Execute(nightly, dirty) = %v, want it run", err)
	}
}

// TestRecheck: a pass that the gate's own signed evidence does not bear
// out (its spec's Recheck says why) blocks, in the verdict the runner signs
// and, alike, in VerifyBundle: the two never disagree.
func TestRecheck(t *testing.T) {
	var r Registry
	r.Register(Spec{Name: "soakish", Owner: "sre", Timeout: time.Second,
		Run: func(ctx context.Context, r *Run) error {
			r.Measure(evidence.Measurement{Name: "span", Unit: "s", Method: "m", Values: []float64{60}})
			return nil
		},
		Recheck: func(st *evidence.GateStatement, channel string) error {
			for _, m := range st.Result.Measurements {
				if m.Name == "span" && m.Mean < 600 {
					return fmt.Errorf("the samples span %.0f s, the %s channel needs 600", m.Mean, channel)
				}
			}
			return nil
		}})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [soakish]\n", r.Has)
	keys := t.TempDir()
	evidence.Keygen(keys, evidence.ECDSAP256)
	signer, _ := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	verifier, _ := evidence.LoadVerifier(filepath.Join(keys, evidence.PublicKeyFile))
	out := filepath.Join(t.TempDir(), "bundle")
	o, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: out, Signer: signer,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
	if err != nil || o.Verdict.Passed || !strings.Contains(o.Verdict.Gates[0].Reason, "the samples span 60 s") {
		t.Fatalf("Execute: %v, verdict %+v; want it blocked by the recheck", err, o)
	}
	res, err := VerifyBundle(out, verifier, VerifyOptions{Registry: &r})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recorded.Passed || res.Verdict.Passed || !strings.Contains(res.Verdict.Gates[0].Reason, "the samples span 60 s") {
		t.Errorf("recorded passed=%v, verdict passed=%v (%+v); want both blocked by the recheck", res.Recorded.Passed, res.Verdict.Passed, res.Verdict.Gates)
	}
	if res.Evidence.Gates["soakish"].Result.Status != "pass" {
		t.Errorf("the gate's own statement says %s; the recheck is the verdict's, not a change of what the gate signed", res.Evidence.Gates["soakish"].Result.Status)
	}
}

// TestConcurrentGates: consecutive Concurrent gates run at the same time
// (each waits for the other to start: run one after the other, both would
// time out), a gate that is not Concurrent runs alone, and the results
// keep the channel's order.
func TestConcurrentGates(t *testing.T) {
	var r Registry
	var mu sync.Mutex
	running, maxRunning := 0, 0
	started := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	track := func(delta int) {
		mu.Lock()
		defer mu.Unlock()
		running += delta
		maxRunning = max(maxRunning, running)
	}
	pair := func(self, other string) func(context.Context, *Run) error {
		return func(ctx context.Context, _ *Run) error {
			track(1)
			defer track(-1)
			close(started[self])
			select {
			case <-started[other]:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("%s never saw %s start", self, other)
			}
		}
	}
	alone := func(context.Context, *Run) error {
		mu.Lock()
		defer mu.Unlock()
		if running != 0 {
			return fmt.Errorf("ran beside %d other gates", running)
		}
		return nil
	}
	r.Register(Spec{Name: "solo", Owner: "sre", Timeout: 2 * time.Second, Run: alone, Concurrent: true})
	r.Register(Spec{Name: "serial", Owner: "sre", Timeout: 2 * time.Second, Run: alone})
	r.Register(Spec{Name: "a", Owner: "sre", Timeout: 2 * time.Second, Run: pair("a", "b"), Concurrent: true})
	r.Register(Spec{Name: "b", Owner: "sre", Timeout: 2 * time.Second, Run: pair("b", "a"), Concurrent: true})
	r.Register(Spec{Name: "last", Owner: "sre", Timeout: 2 * time.Second, Run: alone})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [solo, serial, a, b, last]\n", r.Has)
	signer := testSigner(t)
	o, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: filepath.Join(t.TempDir(), "b"), Signer: signer,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, res := range o.Results {
		order = append(order, res.Gate)
		if res.Status != evidence.StatusPass {
			t.Errorf("%s: %s (%s)", res.Gate, res.Status, res.Reason)
		}
	}
	if got := strings.Join(order, ","); got != "solo,serial,a,b,last" {
		t.Errorf("results in the order %s", got)
	}
	if maxRunning != 2 {
		t.Errorf("at most %d gates ran at once, want 2 (a and b)", maxRunning)
	}
}

// TestNonFiniteMeasurementRefused: a NaN cannot be signed as a figure; the
// gate that records one ends in an error naming it, and the bundle is
// still written (a JSON encoder would otherwise refuse the whole result).
func TestNonFiniteMeasurementRefused(t *testing.T) {
	var r Registry
	r.Register(Spec{Name: "nan", Owner: "sre", Timeout: 2 * time.Second, Run: func(_ context.Context, run *Run) error {
		run.Measure(evidence.Measurement{Name: "ratio", Unit: "ratio", Method: "0/0", Values: []float64{math.NaN()}})
		return nil
	}})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [nan]\n", r.Has)
	signer := testSigner(t)
	o, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: filepath.Join(t.TempDir(), "b"), Signer: signer,
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res := o.Results[0]
	if res.Status != evidence.StatusError || !strings.Contains(res.Reason, "measurement ratio has a value that is not a finite number") {
		t.Fatalf("status %s (%s)", res.Status, res.Reason)
	}
}

// testSigner makes a throwaway signing key.
func testSigner(t *testing.T) *evidence.Signer {
	t.Helper()
	keys := t.TempDir()
	if _, err := evidence.Keygen(keys, evidence.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// TestInterruptEndsWhatGatesStarted: an interrupted run (its context
// cancelled, as by SIGINT) leaves no process behind, however deep: the
// grandchild here stands for a test binary under `go test`, or a daemon
// under a test binary.
func TestInterruptEndsWhatGatesStarted(t *testing.T) {
	var r Registry
	pids := make(chan int, 1)
	r.Register(Spec{Name: "spawns", Owner: "sre", Timeout: time.Minute, Run: func(ctx context.Context, run *Run) error {
		cmd := run.Command(ctx, "sh", "-c", "sleep 300 >/dev/null & echo $!; wait")
		cmd.Stdout = nil
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			return err
		}
		pids <- pid
		return cmd.Wait()
	}})
	r.Register(Spec{Name: "after", Owner: "sre", Timeout: time.Minute, Run: func(ctx context.Context, run *Run) error { return nil }})
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [spawns, after]\n", r.Has)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		pid := <-pids
		pids <- pid
		cancel()
	}()
	o, err := Execute(ctx, Options{Registry: &r, Policy: p, Channel: "nightly", Out: filepath.Join(t.TempDir(), "b"), Signer: testSigner(t),
		Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test", Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The gate after the interruption did not run, and says so (it would
	// pass if it had run).
	for _, res := range o.Results {
		if res.Gate == "after" && (res.Status != evidence.StatusNotRun || !strings.Contains(res.Reason, "interrupted")) {
			t.Errorf("the gate after the interruption: %s (%s), want not run, interrupted", res.Status, res.Reason)
		}
	}
	pid := <-pids
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	for range 200 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(data), ") Z ") {
			return // gone, or a zombie not yet reaped: it runs nothing
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the gate's grandchild %d still runs after the run was interrupted", pid)
}

// TestEffectiveTime: a what-if run (Options.EffectiveTime) hands its gates
// that time to judge dated rules at and judges the waivers at it: a
// waiver that lapses before then no longer holds. The manifest records
// the time, and verify judges the bundle at it, as a what-if; and verify
// judges any bundle's waivers at an effective time of its own.
func TestEffectiveTime(t *testing.T) {
	var r Registry
	var mu sync.Mutex
	var judgedAt []time.Time
	r.Register(Spec{Name: "dated", Owner: "security", Timeout: 2 * time.Second, Run: func(ctx context.Context, run *Run) error {
		mu.Lock()
		judgedAt = append(judgedAt, run.At)
		mu.Unlock()
		return Fail("an algorithm the policy removes is still in use")
	}})
	now := time.Now().UTC()
	expires := now.AddDate(0, 0, 30).Format(time.DateOnly)
	p := policy(t, "version: 1\nchannels:\n  nightly:\n    gates: [dated]\nwaivers:\n  - gate: dated\n    owner: security\n    reason: the removal ships next release\n    ticket: RN-12\n    expires: "+expires+"\n", r.Has)
	keys := t.TempDir()
	evidence.Keygen(keys, evidence.ECDSAP256)
	signer, _ := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	verifier, _ := evidence.LoadVerifier(filepath.Join(keys, evidence.PublicKeyFile))
	run := func(effective time.Time) (*Outcome, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "bundle")
		o, err := Execute(context.Background(), Options{Registry: &r, Policy: p, Channel: "nightly", Out: out, Signer: signer,
			Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test", EffectiveTime: effective})
		if err != nil {
			t.Fatalf("Execute: %v", err)
		}
		return o, out
	}

	today, todayDir := run(time.Time{})
	if !today.Verdict.Passed || today.Verdict.WhatIf() {
		t.Errorf("today: %+v; want a pass by the waiver, not a what-if", today.Verdict)
	}
	later := now.AddDate(0, 0, 60).Truncate(time.Second)
	whatIf, whatIfDir := run(later)
	if whatIf.Verdict.Passed || !whatIf.Verdict.WhatIf() || !whatIf.Verdict.EffectiveTime.Equal(later) {
		t.Errorf("as of %s: %+v; want blocked (the waiver lapsed), a what-if", later, whatIf.Verdict)
	}
	if len(judgedAt) != 2 || judgedAt[0].Sub(now).Abs() > time.Minute || !judgedAt[1].Equal(later) {
		t.Errorf("the gate judged its dated rules at %v; want now, then %s", judgedAt, later)
	}

	res, err := VerifyBundle(whatIfDir, verifier, VerifyOptions{Registry: &r})
	if err != nil {
		t.Fatalf("verify the what-if bundle: %v", err)
	}
	if et := res.Evidence.Manifest.EffectiveTime; et == nil || !et.Equal(later) {
		t.Errorf("the manifest's effective time = %v, want %s", et, later)
	}
	if res.Verdict.Passed || !res.Verdict.WhatIf() || !res.Recorded.WhatIf() || !res.Verdict.At.Equal(later) {
		t.Errorf("verified what-if: %+v; want blocked, a what-if, judged at %s", res.Verdict, later)
	}
	// The verdict statement says when the verification happened: a
	// what-if run is made today, whatever date it judges as of.
	if tv := res.Evidence.Verdict.GetTimeVerified().AsTime(); tv.Sub(now).Abs() > time.Minute {
		t.Errorf("the what-if verdict's timeVerified = %s, want the time of the run (%s), not the effective time", tv, now)
	}

	res, err = VerifyBundle(todayDir, verifier, VerifyOptions{Registry: &r, EffectiveTime: later})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict.Passed || !res.Verdict.WhatIf() || !res.Recorded.Passed || res.Recorded.WhatIf() {
		t.Errorf("today's bundle verified as of %s: %+v (recorded %+v); want blocked as a what-if, its recorded verdict a pass", later, res.Verdict, res.Recorded)
	}
	if !strings.Contains(res.Verdict.Gates[0].Reason, "expired on "+expires) {
		t.Errorf("the block does not say the waiver lapsed: %q", res.Verdict.Gates[0].Reason)
	}
}
