package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/mutate"
)

// Outcome words of --json, one per exit status.
const (
	outcomePassed      = "passed"
	outcomeBlocked     = "blocked"
	outcomePartialPass = "partial-pass"
	outcomeInvalid     = "invalid"
	outcomeAwaiting    = "awaiting-signoff"
)

// verdictJSON is what run --json and verify --json print: one object a
// script can read without parsing text. Fields are only ever added.
type verdictJSON struct {
	// Outcome is passed, blocked, partial-pass (the gates of a partial
	// run passed: not a verdict on the channel) or invalid (verify: the
	// evidence cannot be trusted); Exit is the exit status that goes with
	// it.
	Outcome string `json:"outcome"`
	Exit    int    `json:"exit"`
	// Reason says why the evidence is invalid.
	Reason  string `json:"reason,omitempty"`
	Channel string `json:"channel,omitempty"`
	Commit  string `json:"commit,omitempty"`
	// Partial is true for a run of some of the channel's gates (Scope).
	Partial   bool       `json:"partial"`
	Scope     []string   `json:"scope,omitempty"`
	Evaluated *time.Time `json:"evaluated,omitempty"`
	// EffectiveTime is set for a what-if (--effective-time): the verdict
	// says what would block at that time.
	EffectiveTime  *time.Time `json:"effective_time,omitempty"`
	Evidence       string     `json:"evidence,omitempty"`
	DevelopmentKey bool       `json:"development_key"`
	Dirty          bool       `json:"dirty"`
	Gates          []gateJSON `json:"gates,omitempty"`
	// RequiredSignoffs are the roles the channel requires a sign-off of,
	// Signoffs the valid ones, AwaitingSignoff the roles still missing.
	RequiredSignoffs []string      `json:"required_signoffs,omitempty"`
	Signoffs         []signoffJSON `json:"signoffs,omitempty"`
	AwaitingSignoff  []string      `json:"awaiting_signoff,omitempty"`
}

type signoffJSON struct {
	Role   string    `json:"role"`
	Signer string    `json:"signer"`
	KeyID  string    `json:"key_id"`
	Time   time.Time `json:"time"`
	Note   string    `json:"note,omitempty"`
	File   string    `json:"file"`
}

type gateJSON struct {
	Gate     string          `json:"gate"`
	Status   evidence.Status `json:"status"`
	Blocking bool            `json:"blocking"`
	Reason   string          `json:"reason,omitempty"`
	// Detail is what the gate itself said of its result (why it failed).
	Detail string `json:"detail,omitempty"`
	// WaivedUntil is the expiry of the waiver that lets a failed gate
	// pass.
	WaivedUntil *time.Time `json:"waived_until,omitempty"`
}

// exitFor is the exit status of a verdict: a partial run's pass has its
// own, so that no script takes it for the channel's.
func exitFor(v *gates.Verdict) int {
	switch {
	case v.Passed && v.Partial():
		return exitPartialPass
	case v.Passed:
		return exitPass
	case v.AwaitingSignoff():
		return exitAwaitingSignoff
	}
	return exitBlocked
}

func outcomeFor(code int) string {
	switch code {
	case exitPass:
		return outcomePassed
	case exitPartialPass:
		return outcomePartialPass
	case exitInvalid:
		return outcomeInvalid
	case exitAwaitingSignoff:
		return outcomeAwaiting
	}
	return outcomeBlocked
}

func newVerdictJSON(v *gates.Verdict, details map[string]string, commit, dir string, dev, dirty bool) verdictJSON {
	at := v.At
	out := verdictJSON{Exit: exitFor(v), Channel: v.Channel, Commit: commit, Partial: v.Partial(), Scope: v.Scope,
		Evaluated: &at, Evidence: dir, DevelopmentKey: dev, Dirty: dirty}
	out.Outcome = outcomeFor(out.Exit)
	if v.WhatIf() {
		et := v.EffectiveTime
		out.EffectiveTime = &et
	}
	for _, g := range v.Gates {
		gj := gateJSON{Gate: g.Gate, Status: g.Status, Blocking: g.Blocking, Reason: g.Reason, Detail: details[g.Gate]}
		if g.Waiver != nil {
			t := g.Waiver.Expires.Time
			gj.WaivedUntil = &t
		}
		out.Gates = append(out.Gates, gj)
	}
	out.RequiredSignoffs, out.AwaitingSignoff = v.Required, v.Awaiting
	for _, s := range v.Signed {
		p := s.Predicate
		out.Signoffs = append(out.Signoffs, signoffJSON{Role: p.Role, Signer: p.Signer, KeyID: p.KeyID, Time: p.Time, Note: p.Note, File: s.File})
	}
	return out
}

// invalidJSON is verify --json's answer for evidence that cannot be
// trusted.
func invalidJSON(dir string, err error) (verdictJSON, bool) {
	var ie *evidence.InvalidError
	if !errors.As(plainSignatureError(err), &ie) {
		return verdictJSON{}, false
	}
	return verdictJSON{Outcome: outcomeInvalid, Exit: exitInvalid, Reason: ie.Reason, Evidence: dir}, true
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// gateSpecJSON is a registered gate, for gates --json.
type gateSpecJSON struct {
	Name           string   `json:"name"`
	Owner          string   `json:"owner"`
	TimeoutSeconds float64  `json:"timeout_seconds"`
	Channels       []string `json:"channels"`
	Needs          []string `json:"needs"`
	// Concurrent gates run beside their neighbours that are too.
	Concurrent bool `json:"concurrent"`
}

func gatesCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "gates [--json]", "list the registered gates", "", nil)
	fs := c.Flags()
	asJSON := fs.Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout := c.OutOrStdout()
		reg := registry()
		var out []gateSpecJSON
		for _, n := range reg.Names() {
			s, _ := reg.Get(n)
			g := gateSpecJSON{Name: n, Owner: s.Owner, TimeoutSeconds: s.Timeout.Seconds(), Channels: s.Channels, Needs: []string{}, Concurrent: s.Concurrent}
			for _, need := range s.Needs {
				g.Needs = append(g.Needs, string(need))
			}
			out = append(out, g)
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		for _, g := range out {
			s, _ := reg.Get(g.Name)
			conc := ""
			if s.Concurrent {
				conc = " (runs beside other concurrent gates)"
			}
			fmt.Fprintf(stdout, "%-16s owner %-14s timeout %-6v needs %v%s\n", g.Name, g.Owner, s.Timeout, s.Needs, conc)
		}
		return nil
	}
	return c
}

// cmdMutate runs the seeded regressions (gates/*/mutants.yaml) and prints
// the mutation score; below 100% it exits 1.
func mutateCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "mutate [--only NAME,...] [--json]", "run the seeded regressions (gates/*/mutants.yaml): every one must be blocked", `Runs the seeded regressions (gates/*/mutants.yaml) and prints the mutation
score; exits 1 when a mutant survived.`, nil)
	fs := c.Flags()
	only := fs.String("only", "", "run only these mutants (comma-separated names)")
	asJSON := fs.Bool("json", false, "print the outcomes as JSON on stdout")
	c.RunE = func(c *cobra.Command, _ []string) (err error) {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		root, err := repoRoot()
		if err != nil {
			return err
		}
		o := mutate.Options{Root: root, Log: stderr}
		if *only != "" {
			o.Only = strings.Split(*only, ",")
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		outcomes, err := mutate.Run(ctx, o)
		if err != nil {
			return err
		}
		blocked, seeded := mutate.Score(outcomes)
		if *asJSON {
			if err := printJSON(stdout, map[string]any{"blocked": blocked, "seeded": seeded, "outcomes": outcomes}); err != nil {
				return err
			}
		} else {
			for _, oc := range outcomes {
				mark := "blocked "
				if !oc.Blocked {
					mark = "SURVIVED"
				}
				fmt.Fprintf(stdout, "%s  %-16s %-40s %6s  %s\n", mark, oc.Gate, oc.Mutant, oc.Duration.Round(time.Second), oc.Why)
			}
			if seeded > 0 {
				fmt.Fprintf(stdout, "mutation score: %d/%d (%.0f%%)\n", blocked, seeded, 100*float64(blocked)/float64(seeded))
			}
		}
		if seeded == 0 {
			return fail(exitUsage, "no mutant ran (--only %q)", *only)
		}
		if blocked < seeded {
			return fail(exitBlocked, "")
		}
		return nil
	}
	return c
}
