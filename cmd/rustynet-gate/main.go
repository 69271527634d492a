// Command rustynet-gate is the release gate: it runs the gates a release
// policy asks for, writes a signed evidence bundle, verifies bundles
// (recomputing the verdict, never trusting a stored one), renders reports
// and publishes verdicts to GitHub.
//
//	rustynet-gate keygen  --out DIR [--alg ecdsa-p256|ed25519]
//	rustynet-gate run     --policy FILE --channel nightly|beta|ga --out DIR [--gates a,b] [--key FILE] [--baseline DIR] [--json]
//	rustynet-gate verify  DIR --pubkey FILE [--commit SHA] [--at now] [--policy FILE] [--json]
//	rustynet-gate gates   [--json]
//	rustynet-gate mutate  [--only NAME,...] [--json]
//	rustynet-gate signoff BUNDLE --role ROLE --key FILE --pubkey FILE [--attest ITEM,...] [--note TEXT]
//	rustynet-gate merge   --out DIR [--key FILE] [--json] PARTIAL...
//	rustynet-gate docs    BUNDLE --pubkey FILE [--out documents]
//	rustynet-gate report  DIR [--format html|md] [--pubkey FILE]
//	rustynet-gate publish DIR --repo OWNER/NAME --sha SHA [--pubkey FILE] [--policy FILE] [--api-url URL]
//
// and budgets, version, completion bash|zsh|fish|powershell; every command
// takes --help, and the binary --version.
//
// Exit status: 0 pass; 1 the release is blocked (the evidence is valid);
// 2 usage or internal error (flags are strict: an unknown flag, a flag of
// another command, a bad value or an extra argument exits 2); 3 the
// evidence is invalid (tampered, missing, wrong key); 4 the gates of a
// partial run passed (not a verdict on the channel); 5 every gate passed
// and a sign-off the channel requires is not there yet.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/gates/architecture"
	"github.com/rustynet/rustynet/gates/build"
	"github.com/rustynet/rustynet/gates/compat"
	"github.com/rustynet/rustynet/gates/conformance"
	"github.com/rustynet/rustynet/gates/cryptopolicy"
	"github.com/rustynet/rustynet/gates/dr"
	"github.com/rustynet/rustynet/gates/incident"
	"github.com/rustynet/rustynet/gates/perfbudget"
	"github.com/rustynet/rustynet/gates/pqreadiness"
	"github.com/rustynet/rustynet/gates/publish"
	"github.com/rustynet/rustynet/gates/slo"
	"github.com/rustynet/rustynet/gates/soak"
	"github.com/rustynet/rustynet/gates/unit"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/internal/testbed"
	"github.com/rustynet/rustynet/policies"
	"github.com/rustynet/rustynet/report"
)

var version = "dev"

// Exit statuses.
const (
	exitPass    = 0
	exitBlocked = 1
	exitUsage   = 2
	exitInvalid = 3
	// exitPartialPass: the gates of a partial run (--gates) passed. It is
	// not a verdict on the channel, and no script should take it for one.
	exitPartialPass = 4
	// exitAwaitingSignoff: every gate passed, and a sign-off the channel
	// requires is not there yet (rustynet-gate signoff).
	exitAwaitingSignoff = 5
)

// DevKeyDir is where `run` creates and keeps a development key when no
// --key is given.
const DevKeyDir = ".gate-dev"

// registry holds every gate of this build, registered explicitly.
func registry() *gates.Registry {
	var r gates.Registry
	build.Register(&r)
	unit.Register(&r)
	conformance.Register(&r)
	cryptopolicy.Register(&r)
	architecture.Register(&r)
	compat.Register(&r)
	perfbudget.Register(&r)
	soak.Register(&r)
	slo.Register(&r)
	incident.Register(&r)
	dr.Register(&r)
	pqreadiness.Register(&r)
	return &r
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitCodes is the help text of the exit statuses, which every command
// keeps to.
const exitCodes = `  0  pass
  1  the release is blocked (the evidence is valid)
  2  usage error (an unknown command or flag, a flag of another command, a bad
     flag value, a missing or extra argument) or internal error
  3  the evidence is invalid (tampered, missing, wrong key)
  4  the gates of a partial run (--gates) passed: not a verdict on the channel
  5  every gate passed and a sign-off the channel requires is not there yet`

// exitError carries an exit status and a message; an empty message prints
// nothing (the command has said what it found already).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, a ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, a...)}
}

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Execute(newRoot(), args, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := cli.New("rustynet-gate", version, "the release gate: runs the gates, signs and verifies evidence",
		`rustynet-gate runs the gates a release policy asks for, writes a signed
evidence bundle, verifies bundles (recomputing the verdict, never trusting a
stored one), renders reports and publishes verdicts to GitHub.

run, verify, merge and gates take --json: one JSON object (gates: a list) on
stdout.

Exit status:
`+exitCodes)
	root.AddCommand(keygenCmd(), runCmd(), verifyCmd(), reportCmd(), publishCmd(), gatesCmd(), budgetsCmd(),
		mutateCmd(), signoffCmd(), mergeCmd(registry()), docsCmd(), versionCmd())
	for _, c := range root.Commands() {
		if c.RunE != nil {
			c.RunE = exitStatus(c.RunE)
		}
	}
	return root
}

// describe sets a command's usage line and help; every command's help
// ends with the exit statuses.
func describe(c *cobra.Command, use, short, long string, args cobra.PositionalArgs) {
	c.Use, c.Short, c.Args = use, short, args
	c.DisableFlagsInUseLine = true
	c.Long = short + "."
	if long != "" {
		c.Long = long
	}
	c.Long += "\n\nExit status:\n" + exitCodes
}

// exitStatus maps a command's error to internal/cli's: an exitError
// keeps its status, invalid evidence exits 3, and any other error 2, as
// it always has (exit 1 means blocked, and nothing else).
func exitStatus(run func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		err := run(c, args)
		var ee *exitError
		var ie *evidence.InvalidError
		var usage *cli.UsageError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &usage):
			return err
		case errors.As(err, &ee):
			if ee.msg == "" {
				return cli.Exit(ee.code, nil)
			}
			return cli.Exit(ee.code, plainSignatureError(err))
		case errors.As(err, &ie):
			return cli.Exit(exitInvalid, plainSignatureError(err))
		}
		return cli.Exit(exitUsage, plainSignatureError(err))
	}
}

// dsseThreshold is how go-securesystemslib's DSSE verifier says that no
// signature of an envelope verified with the key it was given ("accepted
// signatures do not match threshold, Found: 0, Expected 1"), which
// evidence passes on as it is.
var dsseThreshold = regexp.MustCompile(`(: )?accepted signatures do not match threshold, Found: (\d+), Expected (\d+)`)

// plainSignatureError words the DSSE verifier's refusal for the user:
// which key, and what it means. An *evidence.InvalidError stays one (its
// Reason reworded), so --json and the exit status keep their meaning.
func plainSignatureError(err error) error {
	if err == nil || !dsseThreshold.MatchString(err.Error()) {
		return err
	}
	plain := func(s string) string {
		if strings.Contains(s, "does not verify with the given key") {
			return dsseThreshold.ReplaceAllString(s, " (--pubkey): it was signed with another key, or changed after it was signed")
		}
		return dsseThreshold.ReplaceAllString(s, "${1}no signature verifies with the given key: it was signed with another key, or changed after it was signed")
	}
	var ie *evidence.InvalidError
	if !errors.As(err, &ie) {
		return errors.New(plain(err.Error()))
	}
	reworded := &evidence.InvalidError{Reason: plain(ie.Reason), Err: ie.Err}
	if err == error(ie) {
		return reworded
	}
	return &rewordedError{msg: plain(err.Error()), err: reworded}
}

// rewordedError is an error with its message reworded, which still
// unwraps to what it wrapped.
type rewordedError struct {
	msg string
	err error
}

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.err }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version (as --version does)",
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(c.OutOrStdout(), "rustynet-gate %s\n", version)
			return nil
		},
	}
}

func keygenCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "keygen --out DIR [--alg ecdsa-p256|ed25519]", "write a signing key pair (gate.key, mode 0600; gate.pub)", "", nil)
	fs := c.Flags()
	out := fs.String("out", "", "directory to write gate.key and gate.pub into (required)")
	alg := cli.Choice(fs, "alg", evidence.ECDSAP256, "key algorithm", evidence.ECDSAP256, evidence.Ed25519)
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout := c.OutOrStdout()
		if *out == "" {
			return cli.Usagef("--out DIR is required")
		}
		pub, err := evidence.Keygen(*out, *alg)
		if err != nil {
			return err
		}
		id, _ := evidence.KeyID(pub)
		fmt.Fprintf(stdout, "wrote %s (mode 0600) and %s; key ID %s\n", filepath.Join(*out, evidence.PrivateKeyFile), filepath.Join(*out, evidence.PublicKeyFile), id)
		return nil
	}
	return c
}

// repoRoot finds the repository root (the directory holding go.mod).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the rustynet repository (no go.mod above the working directory)")
		}
		dir = parent
	}
}

func runCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "run --channel nightly|beta|ga --out DIR [--policy FILE] [--gates a,b] [--key FILE] [--baseline DIR] [--json]", "run the gates of a channel and write a signed evidence bundle", `Runs the gates the release policy requires for the channel, on a snapshot of
the tree, and writes a signed evidence bundle to --out with report.html and
report.md beside it. --gates runs some of them only: a partial run, which
exits 4 when they pass and is no verdict on the channel.`, nil)
	fs := c.Flags()
	policyFile := fs.String("policy", "policies/release.yaml", "release policy")
	channel := fs.String("channel", "", "channel: nightly, beta or ga (required)")
	out := fs.String("out", "", "directory for the evidence bundle (new or empty; required)")
	only := fs.String("gates", "", "run only these gates (comma-separated; the build gate always runs first)")
	keyFile := fs.String("key", "", "signing key (PKCS#8 PEM); without it a development key in "+DevKeyDir+"/ is used, created on first use, and the bundle says so")
	baseline := fs.String("baseline", "", "an earlier bundle to compare performance with (perf-budget flags significant regressions)")
	baselineKey := fs.String("baseline-pubkey", "", "the key the baseline must verify with (default: this run's key)")
	baselineRef := fs.String("baseline-ref", "", "the git revision perf-budget measures beside this tree, cell by cell (default: HEAD for a tree with changes, else HEAD~1; CI passes the last passing nightly or the previous release)")
	asJSON := fs.Bool("json", false, "print the verdict as JSON on stdout (progress stays on stderr)")
	effective := fs.String("effective-time", "", "judge dated rules (algorithms' removals, insecure-mode exceptions, the support window, waivers) as of this date (YYYY-MM-DD, or RFC 3339), after now: a what-if run, which cannot be published")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		if *channel == "" || *out == "" {
			return cli.Usagef("--channel and --out are required")
		}
		effectiveAt, err := parseEffectiveTime(*effective, time.Now())
		if err != nil {
			return err
		}
		root, err := repoRoot()
		if err != nil {
			return err
		}
		reg := registry()
		pol, err := policies.LoadRelease(*policyFile, reg.Has)
		if err == nil {
			err = pol.CheckHorizon(time.Now())
		}
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		checklist, err := loadChecklist(pol, *policyFile, reg)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		var names []string
		if *only != "" {
			names = strings.Split(*only, ",")
		}
		signer, dev, err := loadOrCreateKey(root, *keyFile, stderr)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		// The gates run on a snapshot of the tree as it is now: an edit to
		// the checkout during the run reaches none of them.
		snap, err := gates.TakeSnapshot(ctx, root)
		if err != nil {
			return err
		}
		defer snap.Close()
		sha, dirty := snap.Commit, snap.Dirty
		sweepTestNetworks(stderr)
		var bkey *evidence.Verifier
		if *baseline != "" {
			if *baselineKey != "" {
				bkey, err = evidence.LoadVerifier(*baselineKey)
			} else {
				bkey, err = evidence.VerifierFromKey(signer.Public())
			}
			if err != nil {
				return fail(exitUsage, "--baseline-pubkey: %v", err)
			}
		}
		o, err := gates.Execute(ctx, gates.Options{Registry: reg, Policy: pol, Checklist: checklist, Channel: *channel, Gates: names, Out: *out,
			Signer: signer, DevelopmentKey: dev, Root: snap.Dir, Commit: sha, Dirty: dirty, Version: version, Progress: stderr,
			Baseline: *baseline, BaselineKey: bkey, BaselineRef: *baselineRef, EffectiveTime: effectiveAt})
		if err != nil {
			return err // usage (unknown gate or channel) or internal: exit 2
		}
		pub, err := evidence.VerifierFromKey(signer.Public())
		if err != nil {
			return err
		}
		if err := writeReports(*out, pub, reg); err != nil {
			fmt.Fprintf(stderr, "rustynet-gate: report: %v\n", err)
		}
		if *asJSON {
			details := map[string]string{}
			for _, res := range o.Results {
				details[res.Gate] = res.Reason
			}
			vj := newVerdictJSON(o.Verdict, details, sha, *out, dev, dirty)
			if err := printJSON(stdout, vj); err != nil {
				return err
			}
			if vj.Exit != exitPass {
				return fail(vj.Exit, "")
			}
			return nil
		}
		fmt.Fprintf(stdout, "%s: channel %s at %s in %v\n", verdictWord(o.Verdict), *channel, sha[:min(12, len(sha))], o.Duration.Round(time.Second))
		printOutcome(stdout, o.Verdict, *out)
		if dev {
			fmt.Fprintf(stdout, "signed with the development key in %s (not a release key)\n", filepath.Join(root, DevKeyDir))
		}
		if code := exitFor(o.Verdict); code != exitPass {
			return fail(code, "")
		}
		return nil
	}
	return c
}

// printOutcome prints what a new bundle's verdict says beyond its word
// (run and merge): a partial or what-if run, the gates that block, the
// sign-offs awaited, and where the evidence and its report are.
func printOutcome(stdout io.Writer, v *gates.Verdict, dir string) {
	if v.Partial() {
		fmt.Fprintln(stdout, partialNote(v))
	}
	if v.WhatIf() {
		fmt.Fprintln(stdout, whatIfNote(v))
	}
	for _, g := range v.Gates {
		if g.Blocking {
			fmt.Fprintf(stdout, "  blocking: %s: %s\n", g.Gate, g.Reason)
		}
	}
	if v.AwaitingSignoff() {
		fmt.Fprintln(stdout, signoffNote(v, dir))
	}
	fmt.Fprintf(stdout, "evidence: %s\nreport:   %s\n", dir, filepath.Join(dir, evidence.ReportHTML))
}

// verdictWord is PASSED or BLOCKED, marked when the run was partial or a
// what-if.
func verdictWord(v *gates.Verdict) string {
	w := "PASSED"
	switch {
	case v.AwaitingSignoff():
		w = "AWAITING SIGN-OFF"
	case !v.Passed:
		w = "BLOCKED"
	}
	if v.Partial() {
		w += " (partial run)"
	}
	if v.WhatIf() {
		w += " as of " + v.EffectiveTime.UTC().Format(time.RFC3339)
	}
	return w
}

// whatIfNote says what a what-if verdict is.
func whatIfNote(v *gates.Verdict) string {
	return fmt.Sprintf("note: judged as of %s (--effective-time): what would block then, with this tree as it is; not a verdict on channel %s today, and it cannot be published",
		v.EffectiveTime.UTC().Format(time.RFC3339), v.Channel)
}

// parseEffectiveTime reads --effective-time: a date (midnight UTC) or an
// RFC 3339 time, which must be after now. Empty is none.
func parseEffectiveTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, cli.Usagef("--effective-time %q: want a date (2027-07-01) or an RFC 3339 time (2027-07-01T00:00:00Z)", s)
		}
	}
	if !t.After(now) {
		return time.Time{}, fail(exitUsage, "--effective-time %s is not after now (%s): it judges what would block later; a past time would judge today's tree by rules it was not made under", t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return t.UTC(), nil
}

// partialNote says what a partial verdict does not cover.
func partialNote(v *gates.Verdict) string {
	var out []string
	for _, g := range v.Gates {
		if g.Status == gates.StatusOutOfScope {
			out = append(out, g.Gate)
		}
	}
	s := fmt.Sprintf("note: a partial run of %s (--gates %s) is not a verdict on channel %s and cannot be published", strings.Join(v.Scope, ", "), strings.Join(v.Scope, ","), v.Channel)
	if len(out) > 0 {
		s += fmt.Sprintf("; the channel also requires %s", strings.Join(out, ", "))
	}
	return s
}

// loadOrCreateKey loads --key, or the development key (created on first
// use).
func loadOrCreateKey(root, keyFile string, stderr io.Writer) (*evidence.Signer, bool, error) {
	if keyFile != "" {
		s, err := evidence.LoadSigner(keyFile)
		return s, false, err
	}
	dir := filepath.Join(root, DevKeyDir)
	path := filepath.Join(dir, evidence.PrivateKeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := evidence.Keygen(dir, evidence.ECDSAP256); err != nil {
			return nil, false, err
		}
		fmt.Fprintf(stderr, "rustynet-gate: created a development signing key in %s (use --key for a release key)\n", dir)
	}
	s, err := evidence.LoadSigner(path)
	return s, true, err
}

// judgement is how a verified bundle is judged: at which time, and under
// which release policy.
type judgement struct {
	// Now evaluates waivers at the current time instead of the time the
	// bundle records.
	Now bool
	// Policy, when set, is the release policy file to judge under instead
	// of the copy in the bundle: the verifier's own, so that a bundle made
	// under a lenient policy of its author's cannot pass by it.
	Policy string
	// Effective, when set, judges the waivers as of that time: a what-if.
	Effective time.Time
}

// verified verifies a bundle and judges it under j (gates.VerifyBundle).
func verified(dir string, pub *evidence.Verifier, commit string, reg *gates.Registry, j judgement) (*gates.Verification, error) {
	o := gates.VerifyOptions{Registry: reg, Commit: commit, EffectiveTime: j.Effective}
	if j.Now {
		o.At = time.Now()
	}
	if j.Policy != "" {
		pol, err := policies.LoadRelease(j.Policy, reg.Has)
		if err != nil {
			return nil, fail(exitUsage, "--policy: %v", err)
		}
		o.Policy = pol
	}
	res, err := gates.VerifyBundle(dir, pub, o)
	if errors.Is(err, gates.ErrVerifierPolicy) {
		return nil, fail(exitUsage, "--policy %s: %v", j.Policy, err)
	}
	return res, err
}

// policyNote says which policy a verdict was judged under.
func policyNote(res *gates.Verification, j judgement) string {
	v, pol := res.Evidence, res.Policy
	if j.Policy == "" {
		return fmt.Sprintf("judged under the bundle's own policy %s (sha256 %.12s); --policy FILE judges under yours", v.Manifest.Policy, v.Manifest.PolicySHA)
	}
	if pol.Digest == v.Manifest.PolicySHA {
		return fmt.Sprintf("judged under %s (sha256 %.12s), the policy the bundle was made under", j.Policy, pol.Digest)
	}
	return fmt.Sprintf("judged under %s (sha256 %.12s); the bundle was made under another policy (sha256 %.12s)", j.Policy, pol.Digest, v.Manifest.PolicySHA)
}

func defaultPubkey(root, flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(root, DevKeyDir, evidence.PublicKeyFile)
}

func verifyCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "verify DIR --pubkey FILE [--commit SHA] [--at now] [--effective-time DATE] [--policy FILE] [--json]", "check a bundle's signatures and digests and recompute its verdict", `Checks every signature and digest of the evidence bundle DIR and recomputes
its verdict from the gate statements and the release policy; it never trusts
a stored verdict. --commit takes a full SHA or a short one (at least 7 hex
digits), matched as a prefix of the commit the bundle names.`, cli.ExactArgs(1, "one DIR (an evidence bundle)"))
	fs := c.Flags()
	pubkey := fs.String("pubkey", "", "the public key (PKIX PEM) `FILE` the bundle must be signed with (required)")
	commitSHA := fs.String("commit", "", "the commit the evidence must be about: its `SHA`, whole or short (7 hex digits or more, a prefix of the commit the bundle names)")
	at := cli.Choice(fs, "at", "", `"now" evaluates waivers at the current time instead of the evaluation time recorded in the bundle`, "now")
	effective := fs.String("effective-time", "", "judge the waivers as of this `DATE` (YYYY-MM-DD, or RFC 3339), after now: what would block then (the gates' findings are the run's; run --effective-time judges their dated rules too)")
	policyFile := fs.String("policy", "", "judge under this release policy `FILE` instead of the copy in the bundle (a release's verifier passes its own)")
	asJSON := fs.Bool("json", false, "print the outcome as JSON on stdout")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		if *pubkey == "" {
			return cli.Usagef("--pubkey FILE is required")
		}
		if *asJSON {
			// Invalid evidence is an outcome too: print it, then exit 3.
			defer func() {
				if vj, ok := invalidJSON(pos[0], err); ok {
					if perr := printJSON(stdout, vj); perr != nil {
						err = perr
					}
				}
			}()
		}
		if *at != "" && *at != "now" {
			return cli.Usagef(`--at takes only "now"`)
		}
		if *at != "" && *effective != "" {
			return cli.Usagef("--at now and --effective-time: give one")
		}
		effectiveAt, err := parseEffectiveTime(*effective, time.Now())
		if err != nil {
			return err
		}
		commit, short, err := commitArg(*commitSHA)
		if err != nil {
			return err
		}
		pub, err := evidence.LoadVerifier(*pubkey)
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		j := judgement{Now: *at == "now", Policy: *policyFile, Effective: effectiveAt}
		reg := registry()
		res, err := verified(pos[0], pub, commit, reg, j)
		if err != nil {
			return err
		}
		if short != "" {
			if err := matchCommit(res.Evidence, short); err != nil {
				return err
			}
		}
		v, verdict := res.Evidence, res.Verdict
		reports, err := checkReports(res)
		if err != nil {
			return err
		}
		if *asJSON {
			details := map[string]string{}
			for name, g := range v.Gates {
				details[name] = g.Result.Reason
			}
			vj := newVerdictJSON(verdict, details, v.Manifest.Commit, pos[0], v.Manifest.DevelopmentKey, v.Manifest.Dirty)
			if err := printJSON(stdout, vj); err != nil {
				return err
			}
			if vj.Exit != exitPass {
				return fail(vj.Exit, "")
			}
			return nil
		}
		state := verdictWord(verdict)
		fmt.Fprintf(stdout, "evidence valid: %d gate statements, manifest of %d artifacts, key %s\n", len(v.Gates), len(v.Manifest.Artifacts), v.KeyID)
		if len(reports) > 0 {
			fmt.Fprintf(stdout, "%s: what the evidence renders to\n", strings.Join(reports, " and "))
		}
		fmt.Fprintln(stdout, policyNote(res, j))
		if v.Manifest.DevelopmentKey {
			fmt.Fprintln(stdout, "note: signed with a development key, not a release key")
		}
		fmt.Fprintf(stdout, "%s: channel %s, commit %s, evaluated %s\n", state, verdict.Channel, v.Manifest.Commit, verdict.At.Format(time.RFC3339))
		if verdict.Partial() {
			fmt.Fprintln(stdout, partialNote(verdict))
		}
		if verdict.WhatIf() {
			fmt.Fprintln(stdout, whatIfNote(verdict))
		}
		for _, g := range verdict.Gates {
			line := string(g.Status)
			if g.Reason != "" && g.Reason != line {
				line += ": " + g.Reason
			}
			fmt.Fprintf(stdout, "  %-16s %s\n", g.Gate, line)
		}
		for _, s := range verdict.Signed {
			p := s.Predicate
			fmt.Fprintf(stdout, "  signed off: %-11s by %s (%s) at %s\n", p.Role, p.Signer, p.KeyID, p.Time.Format(time.RFC3339))
		}
		if verdict.AwaitingSignoff() {
			fmt.Fprintln(stdout, signoffNote(verdict, pos[0]))
		}
		if code := exitFor(verdict); code != exitPass {
			return fail(code, "")
		}
		return nil
	}
	return c
}

// commitArg reads verify --commit: a full SHA (40 hex digits, or 64 for
// SHA-256 repositories) is matched exactly by the evidence checks; a short
// one (at least 7 hex digits) is returned as short, to match as a prefix
// of the commits the bundle names once it is verified.
func commitArg(s string) (full, short string, err error) {
	if s == "" {
		return "", "", nil
	}
	t := strings.ToLower(s)
	if strings.Trim(t, "0123456789abcdef") != "" {
		return "", "", cli.Usagef("--commit %q: want a commit SHA, in hex digits (a short SHA of 7 or more, or all 40)", s)
	}
	switch {
	case len(t) < minShortSHA:
		return "", "", cli.Usagef("--commit %q is too short: give at least %d hex digits of the commit, as git log --oneline prints it, or all 40", s, minShortSHA)
	case len(t) == 40 || len(t) == 64:
		return t, "", nil
	case len(t) > 40:
		return "", "", cli.Usagef("--commit %q: a commit SHA has 40 hex digits, this has %d", s, len(t))
	}
	return "", t, nil
}

// minShortSHA is the fewest hex digits verify --commit takes: git's own
// default abbreviation.
const minShortSHA = 7

// matchCommit checks that a verified bundle is about the commit of the
// short SHA: exactly one commit it names (its subjects') starts with it.
// It is invalid evidence when none does, as a full SHA that does not
// match is; when several do, the short SHA does not say which is meant.
func matchCommit(v *evidence.Verified, short string) error {
	var matched []string
	for _, s := range v.Subjects {
		if c := s.Digest["gitCommit"]; strings.HasPrefix(c, short) && !slices.Contains(matched, c) {
			matched = append(matched, c)
		}
	}
	switch len(matched) {
	case 0:
		return &evidence.InvalidError{Reason: fmt.Sprintf("the evidence is about commit %s, not %s", v.Manifest.Commit, short)}
	case 1:
		return nil
	}
	return cli.Usagef("--commit %s is ambiguous: the bundle names commits %s; give more digits", short, strings.Join(matched, " and "))
}

// writeReports renders report.html and report.md next to the evidence,
// judged under the bundle's own policy at the time it records: what
// verify renders again to check them.
func writeReports(dir string, pub *evidence.Verifier, reg *gates.Registry) error {
	res, err := verified(dir, pub, "", reg, judgement{})
	if err != nil {
		return err
	}
	in, err := report.Recorded(res)
	if err != nil {
		return err
	}
	return report.WriteFiles(in)
}

// checkReports refuses a verified bundle whose report.html or report.md
// is not what run would write from its evidence (judged under the
// bundle's own policy at the time it records, whatever verify judges it
// under), and returns the names of the reports it checked. Release
// managers open out/gate-TIME/report.html: once verify passes, what it
// says is what the signed evidence says.
func checkReports(res *gates.Verification) ([]string, error) {
	in, err := report.Recorded(res)
	if err != nil {
		return nil, err
	}
	return report.Check(in)
}

func reportCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "report DIR [--format html|md] [--pubkey FILE]", "render a verified bundle as HTML or Markdown", "", cli.ExactArgs(1, "one DIR (an evidence bundle)"))
	fs := c.Flags()
	format := cli.Choice(fs, "format", "html", "the format of the report", "html", "md")
	pubkey := fs.String("pubkey", "", "public key the bundle must verify with (default: the development key)")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		root, _ := repoRoot()
		pub, err := evidence.LoadVerifier(defaultPubkey(root, *pubkey))
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		res, err := verified(pos[0], pub, "", registry(), judgement{})
		if err != nil {
			return err
		}
		in, err := report.Recorded(res)
		if err != nil {
			return err
		}
		switch *format {
		case "html":
			return report.WriteHTML(stdout, in)
		case "md":
			return report.WriteMarkdown(stdout, in)
		}
		return cli.Usagef("--format %q: want html or md", *format)
	}
	return c
}

func publishCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "publish DIR --repo OWNER/NAME --sha SHA [--pubkey FILE] [--policy FILE] [--api-url URL]", "post a verified bundle's verdict to GitHub as the commit status rustynet/release-gate/CHANNEL", `Verifies the bundle DIR, judges it under --policy (default: this checkout's
policies/release.yaml, never the bundle's own copy), and sets the commit
status rustynet/release-gate/CHANNEL on --sha with GITHUB_TOKEN. Partial,
what-if, dirty and development-key bundles are refused.`, cli.ExactArgs(1, "one DIR (an evidence bundle)"))
	fs := c.Flags()
	repo := fs.String("repo", "", "OWNER/NAME (required)")
	sha := fs.String("sha", "", "commit to set the status on (required; must be the bundle's)")
	pubkey := fs.String("pubkey", "", "public key the bundle must verify with (default: the development key)")
	apiURL := fs.String("api-url", "", "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3/); default api.github.com")
	details := fs.String("details-url", "", "link from the status (a CI run)")
	policyFile := fs.String("policy", "", "the release policy the verdict is judged under (default: policies/release.yaml of this checkout, never the bundle's own copy)")
	allowDev := fs.Bool("allow-development-key", false, "publish a bundle signed with a development key (for testing the publishing path; a release never does)")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		owner, name, ok := strings.Cut(*repo, "/")
		if !ok || owner == "" || name == "" || *sha == "" {
			return cli.Usagef("--repo OWNER/NAME and --sha SHA are required")
		}
		token := os.Getenv("GITHUB_TOKEN")
		if token == "" {
			return fail(exitUsage, "set GITHUB_TOKEN")
		}
		root, _ := repoRoot()
		pub, err := evidence.LoadVerifier(defaultPubkey(root, *pubkey))
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		if *policyFile == "" {
			*policyFile = filepath.Join(root, "policies", "release.yaml")
		}
		vres, err := verified(pos[0], pub, *sha, registry(), judgement{Policy: *policyFile})
		if err != nil {
			return err
		}
		v, verdict := vres.Evidence, vres.Verdict
		if verdict.Partial() {
			return fail(exitUsage, "%s holds a partial run (--gates %s), not a verdict on channel %s; run the whole channel to publish",
				pos[0], strings.Join(verdict.Scope, ","), verdict.Channel)
		}
		if verdict.WhatIf() {
			return fail(exitUsage, "%s holds a what-if run, judged as of %s (--effective-time), not a verdict on the commit today; run the channel without it to publish",
				pos[0], verdict.EffectiveTime.UTC().Format(time.RFC3339))
		}
		if v.Manifest.DevelopmentKey && !*allowDev {
			return fail(exitUsage, "%s is signed with a development key (made by make gate), not a release key; sign with --key, or pass --allow-development-key to test publishing", pos[0])
		}
		if v.Manifest.Dirty {
			return fail(exitUsage, "%s was made from a working tree with uncommitted changes: it is evidence about %.12s plus those changes, not about the commit; run the gate on a clean checkout", pos[0], v.Manifest.Commit)
		}
		in, err := report.Judged(vres)
		if err != nil {
			return err
		}
		var md bytes.Buffer
		if err := report.WriteMarkdown(&md, in); err != nil {
			return err
		}
		pv := publish.Verdict{Passed: verdict.Passed, Channel: verdict.Channel, Commit: *sha, Summary: md.String(), DetailsURL: *details, Awaiting: verdict.Awaiting}
		for _, g := range verdict.Gates {
			if g.Blocking {
				pv.Blocking = append(pv.Blocking, g.Gate+": "+g.Reason)
			}
		}
		gh, err := publish.NewClient(token, *apiURL)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := publish.Publish(ctx, gh, owner, name, pv)
		if err != nil {
			if res != nil && res.StatusURL != "" {
				fmt.Fprintf(stdout, "status %s set on %s@%s, but: %v\n", res.Context, *repo, *sha, err)
			}
			return err
		}
		fmt.Fprintf(stdout, "status %s set on %s@%s\n", res.Context, *repo, *sha)
		if res.CheckRunSkipped != "" {
			fmt.Fprintf(stdout, "check run skipped: %s\n", res.CheckRunSkipped)
		}
		if code := exitFor(verdict); code != exitPass {
			return fail(code, "")
		}
		return nil
	}
	return c
}

// sweepTestNetworks removes the test networks that killed processes left
// (an earlier run interrupted while a test binary held its namespaces), so
// that a run does not start beside them. It needs root, as they do.
func sweepTestNetworks(stderr io.Writer) {
	if os.Geteuid() != 0 {
		return
	}
	swept, err := testbed.Sweep()
	if len(swept) > 0 {
		fmt.Fprintf(stderr, "removed %d test networks left by processes that were killed: %s\n", len(swept), strings.Join(swept, ", "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "rustynet-gate: could not remove every test network left behind: %v\n", err)
	}
}
