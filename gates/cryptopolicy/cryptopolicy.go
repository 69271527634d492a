// Package cryptopolicy is the crypto-policy gate. It holds the product to
// policies/crypto.yaml five ways:
//
//   - the code: the dependency graph of the shipped binaries (`go list
//     -deps ./cmd/...`, without tests) is scanned, and every crypto package
//     (crypto, crypto/..., golang.org/x/crypto/...) a package outside the
//     standard library imports must map to an algorithm of the policy. A
//     removed algorithm imported by the module's own package blocks; one
//     linked by a third-party package blocks unless the algorithm's
//     linked_by names that package with a reason, and such entries are
//     reported (an entry that matches nothing blocks, so the list stays
//     true). A deprecated algorithm is reported. The standard library's
//     crypto packages importing each other are not judged;
//   - the insecure modes: the code's list (internal/insecure) and the
//     policy's must agree, all off by default, and exceptions are reported
//     with their expiry;
//   - the built controller: it must refuse TLS 1.2 by default and with a
//     lapsed exception, accept it with one in force, negotiate the hybrid
//     X25519MLKEM768 key exchange with a client that offers it, and present
//     an ECDSA P-256 certificate;
//   - the built node's controller client: run against loopback servers, it
//     must complete no handshake with a server that offers only TLS 1.2,
//     offer no version below TLS 1.3, and offer and negotiate
//     X25519MLKEM768;
//   - the QUIC backend's X25519MLKEM768 pin: its own tests of the pin
//     (TestClassicalRefused, TestCheckState) must run and pass.
//
// A policy it cannot read, or a probe it cannot make, is an error (the gate
// could not run), never a failure.
package cryptopolicy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/policies"
)

// PolicyFile is the crypto policy, relative to the repository root.
const PolicyFile = "policies/crypto.yaml"

// Name is the gate's name.
const Name = "crypto-policy"

// Register adds the crypto-policy gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     Name,
		Owner:    "security",
		Timeout:  10 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo},
		Run:      run,
	})
}

func run(ctx context.Context, r *gates.Run) error {
	now := time.Now()
	// Dated rules (removals, exceptions) are judged at the run's time,
	// which a what-if run sets (rustynet-gate run --effective-time).
	at := r.At
	if at.IsZero() {
		at = now
	}
	pol, err := loadPolicy(r.Root, at)
	if err != nil {
		return err
	}
	t := tree{root: r.Root, work: r.Work, controller: r.Binaries["rustynet-controller"], node: r.Binaries["rustynetd"]}
	if t.controller == "" || t.node == "" {
		return errors.New("no rustynet-controller or rustynetd binary: the build gate did not run or failed")
	}
	rep := newReport(r.Log)
	edges, err := t.check(ctx, rep, pol, at, now, r.Progress)
	// What was found is evidence even when a later check could not run.
	if edges != nil {
		if err := r.ArtifactJSON("crypto-imports.json", edges); err != nil {
			return err
		}
	}
	if rerr := rep.record(r); err == nil {
		err = rerr
	}
	return err
}

// tree is what the gate judges: a repository and the binaries built from
// it.
type tree struct {
	root, work       string // the repository; a scratch directory
	controller, node string // the built rustynet-controller and rustynetd
}

// check runs every check of the gate on the tree, in order, into rep,
// and returns the scanned graph. Dated rules are judged at at; now is the
// real time, for the probes' exceptions. An error means a check could
// not run.
func (t tree) check(ctx context.Context, rep *report, pol *policies.Crypto, at, now time.Time, progress func(float64)) ([]Edge, error) {
	edges, err := scan(ctx, t.root, Shipped)
	if err != nil {
		return nil, err
	}
	checkGraph(rep, pol, edges, at)
	checkModes(rep, pol, at)
	progress(0.2)
	if err := probeController(ctx, rep, t.work, t.controller, filepath.Join(t.root, PolicyFile), pol, at, now); err != nil {
		return edges, fmt.Errorf("probing the controller: %w", err)
	}
	progress(0.5)
	if err := probeNodeClient(ctx, rep, t.work, t.node); err != nil {
		return edges, fmt.Errorf("probing the node's client: %w", err)
	}
	progress(0.8)
	if err := probeQUICPin(ctx, rep, t.root); err != nil {
		return edges, fmt.Errorf("probing the QUIC pin: %w", err)
	}
	return edges, nil
}

// loadPolicy reads the crypto policy under root and checks its horizon at
// now. The gate cannot judge without its policy: an error here means it
// could not run.
func loadPolicy(root string, now time.Time) (*policies.Crypto, error) {
	pol, err := policies.LoadCrypto(filepath.Join(root, PolicyFile))
	if err == nil {
		err = pol.CheckHorizon(now)
	}
	if err != nil {
		return nil, fmt.Errorf("crypto policy: %w", err)
	}
	pol.File = PolicyFile // findings name the file as the repository does
	return pol, nil
}

// checkModes compares the code's insecure modes with the policy's and
// reports the exceptions.
func checkModes(rep *report, pol *policies.Crypto, now time.Time) {
	var code, policy []string
	for _, m := range insecure.Modes {
		code = append(code, m.Name)
	}
	for _, m := range pol.InsecureModes {
		policy = append(policy, m.Name.Value)
	}
	sort.Strings(code)
	sort.Strings(policy)
	rep.add("insecure-modes", slices.Equal(code, policy), "the code has %v, the policy lists %v (want the same)", code, policy)
	active, lapsed := pol.ActiveExceptions(now)
	for _, e := range active {
		rep.add("insecure-modes", true, "exception for %s by %s in force until %s (%s)", e.Mode.Value, e.Owner.Value, e.Expires.Format(time.DateOnly), e.Reason.Value)
	}
	for _, e := range lapsed {
		rep.add("insecure-modes", true, "exception for %s by %s lapsed on %s", e.Mode.Value, e.Owner.Value, e.Expires.Format(time.DateOnly))
	}
}

// finding is one check's outcome, and why.
type finding struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// report collects findings and logs each as it comes. Its log is safe for
// the probes' daemons to write to concurrently.
type report struct {
	log      io.Writer
	findings []finding
}

func newReport(log io.Writer) *report {
	return &report{log: &lockedWriter{w: log}, findings: []finding{}}
}

func (rep *report) add(check string, ok bool, format string, a ...any) {
	f := finding{Check: check, OK: ok, Detail: fmt.Sprintf(format, a...)}
	rep.findings = append(rep.findings, f)
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	fmt.Fprintf(rep.log, "%s %s: %s\n", mark, check, f.Detail)
}

func (rep *report) failed() []finding {
	var out []finding
	for _, f := range rep.findings {
		if !f.OK {
			out = append(out, f)
		}
	}
	return out
}

// record writes the findings as the gate's artifact and details, and
// fails the gate when any finding failed.
func (rep *report) record(r *gates.Run) error {
	if err := r.ArtifactJSON("findings.json", rep.findings); err != nil {
		return err
	}
	if err := r.Details(rep.findings); err != nil {
		return err
	}
	if failed := rep.failed(); len(failed) > 0 {
		return gates.Fail("%d findings against %s; first: %s: %s", len(failed), PolicyFile, failed[0].Check, failed[0].Detail)
	}
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
