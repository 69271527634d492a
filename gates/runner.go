package gates

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/machine"
	"github.com/rustynet/rustynet/internal/procgroup"
	"github.com/rustynet/rustynet/internal/stats"
	"github.com/rustynet/rustynet/policies"
)

// BuildGate is the gate whose binaries are the subjects of every
// statement; the runner runs it first in every run.
const BuildGate = "build"

// Run is what a gate is given while it runs, and what it fills in.
type Run struct {
	Gate    string
	Channel string
	Commit  string
	// Root is the repository's root directory.
	Root string
	// Work is a scratch directory for the gate; it is not evidence.
	Work string
	// Binaries maps binary names to paths, once the build gate has run.
	Binaries map[string]string
	Env      machine.Environment
	// Log receives the gate's log; it becomes the artifact GATE/log.txt.
	Log io.Writer
	// Baseline is an earlier bundle to compare with (perf-budget), and
	// BaselineKey the key it must verify with; empty when there is none.
	Baseline    string
	BaselineKey *evidence.Verifier
	// BaselineRef is the git revision whose binaries perf-budget measures
	// beside the candidate's, cell by cell; empty for the gate's default.
	BaselineRef string
	// Dirty says the tree under test (Root) holds uncommitted changes on
	// top of Commit.
	Dirty bool
	// At is the time the gate judges dated rules at (algorithms'
	// deprecations and removals, insecure-mode exceptions, the support
	// window): when the run started, or its effective time (a what-if
	// run, Options.EffectiveTime). What the gate measures is measured
	// now, whatever At says.
	At time.Time

	w            *evidence.Writer
	mu           sync.Mutex
	measurements []evidence.Measurement
	artifacts    []evidence.ArtifactRef
	details      json.RawMessage
	testResult   any
	progress     float64
	built        map[string]string
	// evidenceErr is the first evidence the gate could not record; the
	// runner makes the gate's result an error with it, whether or not
	// the gate looked at the error it was given.
	evidenceErr error
	// closed is set when the runner has taken the gate's result (it
	// finished, or timed out and was abandoned); late lists what the gate
	// tried to record after that, refused.
	closed bool
	late   []string
}

// errClosed refuses evidence from a gate the runner no longer waits for.
var errClosed = errors.New("the gate's result was already taken (it finished or was abandoned at its timeout)")

// admit reports whether the gate may still record what; it records a
// refusal otherwise. Called with r.mu held.
func (r *Run) admitLocked(what string) error {
	if r.closed {
		r.late = append(r.late, what)
		return fmt.Errorf("%s: %w", what, errClosed)
	}
	return nil
}

func (r *Run) failEvidenceLocked(err error) error {
	if r.evidenceErr == nil {
		r.evidenceErr = err
	}
	return err
}

// Artifact writes an artifact of the gate (GATE/name in the bundle).
func (r *Run) Artifact(name string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked("artifact " + name); err != nil {
		return err
	}
	ref, err := r.w.WriteArtifact(r.Gate+"/"+name, data)
	if err != nil {
		return r.failEvidenceLocked(fmt.Errorf("artifact %s: %w", name, err))
	}
	r.artifacts = append(r.artifacts, ref)
	return nil
}

// ArtifactJSON writes v, indented, as an artifact of the gate.
func (r *Run) ArtifactJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.failEvidenceLocked(fmt.Errorf("artifact %s: %w", name, err))
	}
	return r.Artifact(name, data)
}

// Measure records a measurement; Summarize fills its statistics. A value
// that is not a finite number (NaN, an infinity) cannot be signed as a
// figure: it is refused, and the gate ends in an error that says which.
func (r *Run) Measure(m evidence.Measurement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.admitLocked("measurement "+m.Name) != nil {
		return
	}
	for _, v := range m.Values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if r.evidenceErr == nil {
				r.evidenceErr = fmt.Errorf("measurement %s has a value that is not a finite number (%v)", m.Name, v)
			}
			return
		}
	}
	r.measurements = append(r.measurements, Summarize(m))
}

// Details records gate-specific details for the statement.
func (r *Run) Details(v any) error {
	raw, err := json.Marshal(v)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked("details"); err != nil {
		return err
	}
	if err != nil {
		return r.failEvidenceLocked(fmt.Errorf("details: %w", err))
	}
	r.details = raw
	return nil
}

// TestResult makes the gate's statement an in-toto test-result.
func (r *Run) TestResult(passed bool, passedTests, failedTests []string) error {
	pred, err := evidence.TestResultPredicate(passed, passedTests, failedTests, "", nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked("test result"); err != nil {
		return err
	}
	if err != nil {
		return r.failEvidenceLocked(fmt.Errorf("test result: %w", err))
	}
	r.testResult = pred
	return nil
}

// Built records the binaries a build produced: their names, paths and
// (computed here) digests become the subjects of every statement.
func (r *Run) Built(bins map[string]string) {
	r.mu.Lock()
	r.built = bins
	r.mu.Unlock()
}

// Progress reports how much of the gate is done (0 to 1), for the live
// progress bar.
func (r *Run) Progress(done float64) {
	r.mu.Lock()
	r.progress = math.Max(0, math.Min(1, done))
	r.mu.Unlock()
}

func (r *Run) progressNow() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progress
}

// Summarize fills a measurement's mean, spread and budget check from its
// values.
func Summarize(m evidence.Measurement) evidence.Measurement {
	if len(m.Values) == 0 {
		return m
	}
	m.Repetitions = len(m.Values)
	m.Min, m.Max = slices.Min(m.Values), slices.Max(m.Values)
	m.Mean, m.Stddev = stats.Mean(m.Values), stats.Stddev(m.Values)
	if m.Budget != nil {
		ok := (m.Budget.Max == nil || m.Mean <= *m.Budget.Max) && (m.Budget.Min == nil || m.Mean >= *m.Budget.Min)
		m.WithinBudget = &ok
	}
	return m
}

// Options configures a run.
type Options struct {
	Registry *Registry
	Policy   *policies.Release
	// Checklist is the launch checklist the policy names: copied into the
	// bundle of a channel that requires sign-offs, for them to answer.
	Checklist *policies.Checklist
	Channel   string
	// Gates overrides the channel's gates (the build gate still runs
	// first).
	Gates          []string
	Out            string
	Signer         *evidence.Signer
	DevelopmentKey bool
	Root           string
	Commit         string
	Dirty          bool
	Version        string
	Baseline       string
	BaselineKey    *evidence.Verifier
	BaselineRef    string
	// Progress receives a line per gate and a progress line for long
	// ones; nil discards.
	Progress io.Writer
	// Has checks a need of the machine; nil checks the real machine.
	Has func(Need) (bool, string)
	Now func() time.Time
	// EffectiveTime, if set, makes the run a what-if: its gates judge
	// their dated rules (Run.At) and the verdict its waivers as of this
	// time instead of now. The manifest records it; such a bundle cannot
	// be published.
	EffectiveTime time.Time
	// Grace is how long a gate past its timeout has to return before it
	// is abandoned (default 10 s); what it records after that is refused.
	Grace time.Duration
}

// Outcome is what a run produced.
type Outcome struct {
	Dir      string
	Verdict  *Verdict
	Results  []evidence.GateResult
	Duration time.Duration
}

// Execute runs the gates and writes the signed evidence bundle to o.Out.
func Execute(ctx context.Context, o Options) (*Outcome, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Has == nil {
		o.Has = HasNeed
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	names := o.Gates
	partial := names != nil
	if names == nil {
		var err error
		if names, err = o.Policy.Gates(o.Channel); err != nil {
			return nil, err
		}
	} else if _, err := o.Policy.Gates(o.Channel); err != nil {
		return nil, err
	}
	for _, n := range names {
		if !o.Registry.Has(n) {
			return nil, fmt.Errorf("%w %q (registered: %v)", ErrUnknownGate, n, o.Registry.Names())
		}
	}
	if o.Dirty && (o.Channel == policies.Beta || o.Channel == policies.GA) {
		return nil, fmt.Errorf("%w: the %s channel judges a commit, and the working tree has uncommitted changes (untracked files count); commit or stash them", ErrDirtyTree, o.Channel)
	}
	awaits := len(o.Policy.Signoffs(o.Channel)) > 0
	if awaits && o.Checklist == nil {
		return nil, fmt.Errorf("channel %s requires sign-offs (%v), and no launch checklist was given for them to answer", o.Channel, o.Policy.Signoffs(o.Channel))
	}
	if o.Registry.Has(BuildGate) {
		names = append([]string{BuildGate}, removeName(names, BuildGate)...)
	}
	w, err := evidence.NewWriter(o.Out, o.Signer)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "rustynet-gate-work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	pol, err := w.WritePolicy(filepath.Base(o.Policy.File), o.Policy.Raw)
	if err != nil {
		return nil, err
	}
	if awaits {
		// The sign-offs answer the checklist as the run found it,
		// sealed in the manifest with the policy.
		if _, err := w.WritePolicy(evidence.ChecklistName, o.Checklist.Raw); err != nil {
			return nil, err
		}
	}
	env := machine.Describe()
	start := o.Now()
	judgeAt := start
	if !o.EffectiveTime.IsZero() {
		judgeAt = o.EffectiveTime
	}
	fmt.Fprintf(o.Progress, "rustynet-gate: channel %s, commit %s, %d gates, on %s\n", o.Channel, short(o.Commit), len(names), env)

	subjects := []evidence.Subject{{Name: "git+commit", Digest: map[string]string{"gitCommit": o.Commit}}}
	var binaries map[string]string
	var results []evidence.GateResult
	type pending struct {
		run *Run
		res evidence.GateResult
	}
	var done []pending
	// Gates run one after the other in the channel's order, except that
	// consecutive gates marked Concurrent run at the same time (their
	// results still in that order).
	o.Progress = &lineWriter{w: o.Progress}
	runGate := func(name string) pending {
		spec, _ := o.Registry.Get(name)
		r := &Run{Gate: name, Channel: o.Channel, Commit: o.Commit, Root: o.Root, Work: filepath.Join(work, name),
			Binaries: binaries, Env: env, Baseline: o.Baseline, BaselineKey: o.BaselineKey, BaselineRef: o.BaselineRef, Dirty: o.Dirty, At: judgeAt, w: w}
		var res evidence.GateResult
		if err := os.MkdirAll(r.Work, 0o755); err != nil {
			res = evidence.GateResult{Gate: name, Owner: spec.Owner, Channel: o.Channel, Started: o.Now(), Environment: env,
				Status: evidence.StatusError, Reason: fmt.Sprintf("could not make its work dir: %v", err)}
		} else {
			res = runOne(ctx, spec, r, o)
		}
		return pending{r, res}
	}
	for i := 0; i < len(names); {
		group := concurrentGroup(o.Registry, names[i:])
		if len(group) > 1 {
			fmt.Fprintf(o.Progress, "  (%s run at the same time)\n", strings.Join(group, ", "))
			out := make([]pending, len(group))
			var wg sync.WaitGroup
			for k, name := range group {
				wg.Go(func() { out[k] = runGate(name) })
			}
			wg.Wait()
			done = append(done, out...)
			i += len(group)
			continue
		}
		name := names[i]
		p := runGate(name)
		if name == BuildGate && p.res.Status == evidence.StatusPass {
			bins, subs, err := digestBinaries(p.run.built)
			if err != nil {
				p.res.Status, p.res.Reason = evidence.StatusError, err.Error()
			} else {
				binaries = bins
				subjects = append(subjects, subs...)
			}
		}
		done = append(done, p)
		i++
	}
	var scope []string
	if partial {
		scope = names
	}
	sort.SliceStable(subjects[1:], func(i, j int) bool { return subjects[1+i].Name < subjects[1+j].Name })

	statuses := map[string]evidence.Status{}
	signed := map[string]*evidence.GateStatement{}
	var gateRefs []evidence.ArtifactRef
	for _, p := range done {
		res := p.res
		p.run.mu.Lock()
		res.Artifacts = append(res.Artifacts, p.run.artifacts...)
		if len(p.run.late) > 0 {
			// What an abandoned gate tried to record after its result
			// was taken is refused, and said.
			res.Reason = strings.TrimPrefix(res.Reason+"; ", "; ") + "refused after the gate's result was taken: " + strings.Join(p.run.late, ", ")
		}
		p.run.mu.Unlock()
		raw, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("result of %s: %w", res.Gate, err)
		}
		resRef, err := w.WriteArtifact(res.Gate+"/result.json", raw)
		if err != nil {
			return nil, fmt.Errorf("result of %s: %w", res.Gate, err)
		}
		res.Artifacts = append(res.Artifacts, resRef)
		var pred any = res
		predType := evidence.PredicateGateResult
		// A test result says pass or fail; a gate that could not run, or
		// timed out, is signed as what it is.
		if p.run.testResult != nil && (res.Status == evidence.StatusPass || res.Status == evidence.StatusFail) {
			predType, pred = evidence.PredicateTestResult, p.run.testResult
		}
		st, err := evidence.NewStatement(subjects, predType, pred)
		if err != nil {
			return nil, fmt.Errorf("statement for %s: %w", res.Gate, err)
		}
		ref, err := w.SignStatement(res.Gate, st)
		if err != nil {
			return nil, err
		}
		gateRefs = append(gateRefs, ref)
		statuses[res.Gate] = res.Status
		signed[res.Gate] = &evidence.GateStatement{Name: res.Gate, File: ref, Statement: st, PredicateType: predType, Result: res}
		results = append(results, res)
	}
	// The verdict applies each gate's Recheck, as verify will.
	rechecked := applyRechecks(o.Registry, signed, statuses, o.Channel)
	// The verdict statement's timeVerified is when the run judged; a
	// what-if run judges as of its effective time, which the manifest
	// records.
	now := o.Now()
	at := now
	var effective *time.Time
	if !o.EffectiveTime.IsZero() {
		at = o.EffectiveTime
		effective = &at
	}
	verdict, err := Evaluate(o.Policy, o.Channel, statuses, at, scope)
	if err != nil {
		return nil, err
	}
	annotate(verdict, rechecked)
	verdict.EffectiveTime = o.EffectiveTime
	if awaits && !partial {
		verdict.applySignoffs(o.Policy.Signoffs(o.Channel), nil) // none yet: they come after
	}
	mref, err := w.SignManifest(evidence.Manifest{Commit: o.Commit, Channel: o.Channel, Created: start, Policy: pol.Path,
		PolicySHA: pol.SHA256, DevelopmentKey: o.DevelopmentKey, Dirty: o.Dirty, Scope: scope, EffectiveTime: effective})
	if err != nil {
		return nil, err
	}
	vst, err := evidence.VerdictStatement(evidence.VerdictInput{Subjects: subjects, Commit: o.Commit, Channel: o.Channel,
		Policy: pol, Manifest: mref, Gates: gateRefs, Passed: verdict.GatesPassed(), At: now, Version: o.Version, Partial: partial, AwaitsSignoff: awaits && !partial})
	if err != nil {
		return nil, err
	}
	if _, err := w.SignStatement(evidence.VerdictName, vst); err != nil {
		return nil, err
	}
	return &Outcome{Dir: o.Out, Verdict: verdict, Results: results, Duration: o.Now().Sub(start)}, nil
}

// concurrentGroup returns the gates at the head of names that run
// together: the leading run of Concurrent gates, or the first gate alone.
func concurrentGroup(reg *Registry, names []string) []string {
	n := 0
	for _, name := range names {
		spec, _ := reg.Get(name)
		if !spec.Concurrent || name == BuildGate {
			break
		}
		n++
	}
	if n < 2 {
		return names[:1]
	}
	return names[:n]
}

// lineWriter serialises writes, so the progress lines of gates running at
// the same time do not interleave within a line.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func removeName(names []string, n string) []string {
	out := names[:0:0]
	for _, x := range names {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// runOne runs one gate with its timeout, turning every outcome (pass,
// failure, error, timeout, panic, missing need) into a result.
func runOne(ctx context.Context, spec Spec, r *Run, o Options) (res evidence.GateResult) {
	res = evidence.GateResult{Gate: spec.Name, Owner: spec.Owner, Channel: r.Channel, Started: o.Now(), Environment: r.Env}
	for _, n := range spec.Needs {
		res.Needs = append(res.Needs, string(n))
	}
	var missing []string
	for _, n := range spec.Needs {
		if ok, why := o.Has(n); !ok {
			missing = append(missing, fmt.Sprintf("%s (%s)", n, why))
		}
	}
	if len(missing) > 0 {
		res.Status = evidence.StatusNotRun
		res.Reason = "not run: this machine lacks " + strings.Join(missing, ", ")
		fmt.Fprintf(o.Progress, "  - %-16s not run: needs %s\n", spec.Name, strings.Join(missing, ", "))
		return res
	}
	if err := ctx.Err(); err != nil {
		// Interrupted before its turn: nothing of it ran, so it says
		// nothing (not an error of its own, nor a pass).
		res.Status = evidence.StatusNotRun
		res.Reason = "not run: the run was interrupted before its turn (" + err.Error() + ")"
		fmt.Fprintf(o.Progress, "  - %-16s not run: interrupted\n", spec.Name)
		return res
	}
	var logBuf lockedBuffer
	r.Log = &logBuf
	fmt.Fprintf(o.Progress, "  > %-16s running (timeout %v)\n", spec.Name, spec.Timeout)
	gctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { progressLoop(o.Progress, spec.Name, res.Started, r, stop, o.Now) })
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		errc <- spec.Run(gctx, r)
	}()
	var err error
	select {
	case err = <-errc:
	case <-gctx.Done():
		// Give the gate a moment to notice, then move on without it.
		select {
		case err = <-errc:
		case <-time.After(o.Grace):
			err = gctx.Err()
		}
	}
	close(stop)
	wg.Wait()
	res.DurationSeconds = o.Now().Sub(res.Started).Seconds()
	var f *Failure
	switch {
	case err == nil:
		res.Status = evidence.StatusPass
	case errors.Is(gctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		res.Status, res.Reason = evidence.StatusTimeout, fmt.Sprintf("did not finish within %v", spec.Timeout)
	case errors.As(err, &f):
		res.Status, res.Reason = evidence.StatusFail, f.Reason
	default:
		res.Status, res.Reason = evidence.StatusError, err.Error()
	}
	if logBuf.Len() > 0 {
		r.Artifact("log.txt", logBuf.Bytes()) // a failure is r.evidenceErr
	}
	r.mu.Lock()
	r.closed = true
	res.Measurements = r.measurements
	res.Details = r.details
	if r.evidenceErr != nil && (res.Status == evidence.StatusPass || res.Status == evidence.StatusFail) {
		res.Status, res.Reason = evidence.StatusError, "could not record its evidence: "+r.evidenceErr.Error()
	}
	r.mu.Unlock()
	mark := "ok"
	if res.Status != evidence.StatusPass {
		mark = string(res.Status) + ": " + firstLine(res.Reason)
	}
	fmt.Fprintf(o.Progress, "  = %-16s %-8s %s\n", spec.Name, fmtDuration(time.Duration(res.DurationSeconds*float64(time.Second))), mark)
	return res
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

func fmtDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// progressLoop prints a progress line every 15 s while a gate runs.
func progressLoop(w io.Writer, name string, start time.Time, r *Run, stop <-chan struct{}, now func() time.Time) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			frac := r.progressNow()
			bar := ""
			if frac > 0 {
				n := int(frac * 20)
				bar = fmt.Sprintf(" [%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", 20-n), frac*100)
			}
			fmt.Fprintf(w, "    %-16s %s%s\n", name, fmtDuration(now().Sub(start)), bar)
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const max = 16 << 20 // keep logs bounded
	if len(b.buf)+len(p) > max {
		p = p[:max-len(b.buf)]
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// digestBinaries hashes the built binaries into subjects.
func digestBinaries(bins map[string]string) (map[string]string, []evidence.Subject, error) {
	if len(bins) == 0 {
		return nil, nil, errors.New("the build gate reported no binaries")
	}
	var subs []evidence.Subject
	for name, p := range bins {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		subs = append(subs, evidence.Subject{Name: name, Digest: map[string]string{"sha256": hex.EncodeToString(h.Sum(nil))}})
	}
	return bins, subs, nil
}

// HasNeed checks a need on this machine.
func HasNeed(n Need) (bool, string) {
	switch n {
	case NeedRoot:
		if os.Geteuid() != 0 {
			return false, "not running as root"
		}
	case NeedDocker:
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", "/var/run/docker.sock")
			},
		}}
		resp, err := hc.Get("http://docker/_ping")
		if err != nil {
			return false, "no Docker engine at /var/run/docker.sock"
		}
		resp.Body.Close()
	case NeedPrometheus:
		for _, c := range []string{"prometheus", "promtool", "prometheus-alertmanager"} {
			if _, err := exec.LookPath(c); err != nil {
				return false, c + " is not installed"
			}
		}
	default:
		if _, err := exec.LookPath(string(n)); err != nil {
			return false, string(n) + " is not installed"
		}
	}
	return true, ""
}

// Command returns a command that runs in the repository root with its
// output in the gate's log. It leads its own process group, and when ctx
// ends (the gate timed out, or the run was interrupted) the whole group is
// killed: a `go test`, its test binaries and the daemons they started.
func (r *Run) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	procgroup.Set(cmd)
	cmd.Dir = r.Root
	cmd.Stdout, cmd.Stderr = r.Log, r.Log
	cmd.WaitDelay = 10 * time.Second
	fmt.Fprintf(r.Log, "$ %s %s\n", name, strings.Join(args, " "))
	return cmd
}
