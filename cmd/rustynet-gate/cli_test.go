package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/internal/clitest"
)

// TestCommandLine: what the binary accepts and refuses, and how it exits,
// before any command does its work: a refused command line exits 2 with
// nothing on stdout, and says what was wrong in the user's words.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	clitest.Table(t, binary, []struct {
		Name        string
		Args        []string
		Code        int
		Want, Never []string // Want in stdout or stderr; Never in neither
	}{
		{"no command", nil, 2, []string{"Available Commands:", "give a command"}, nil},
		{"unknown command", []string{"veryfy"}, 2, []string{`unknown command "veryfy"`, "Did you mean this?"}, nil},
		{"unknown flag", []string{"verify", dir, "--pubkey", "k", "--bogus"}, 2, []string{"unknown flag: --bogus", "rustynet-gate verify --help"}, nil},
		{"single-dash long flag", []string{"verify", dir, "-pubkey", "k"}, 2, []string{"rustynet-gate verify:"}, nil},
		{"extra argument", []string{"gates", "extra"}, 2, []string{`takes no arguments, got ["extra"]`}, nil},
		{"two bundles to verify", []string{"verify", dir, dir, "--pubkey", "k"}, 2, []string{"want one DIR (an evidence bundle), got 2 arguments"}, nil},
		{"no bundle to verify", []string{"verify", "--pubkey", "k"}, 2, []string{"want one DIR (an evidence bundle)"}, nil},
		{"no partial to merge", []string{"merge", "--out", dir}, 2, []string{"want PARTIAL..."}, nil},
		{"one bundle for budgets", []string{"budgets", dir}, 2, []string{"two or more DIRs"}, nil},
		{"flag of mutate given to verify", []string{"verify", dir, "--pubkey", "k", "--only", "x"}, 2, []string{"--only is a flag of rustynet-gate mutate, not of rustynet-gate verify"}, nil},
		{"flag of run given to gates", []string{"gates", "--channel", "ga"}, 2, []string{"--channel is a flag of rustynet-gate run, not of rustynet-gate gates"}, nil},
		{"bad --format", []string{"report", dir, "--format", "pdf"}, 2, []string{`invalid value "pdf" for --format: want html or md`}, nil},
		{"bad --alg", []string{"keygen", "--out", dir, "--alg", "rsa"}, 2, []string{`invalid value "rsa" for --alg: want ecdsa-p256 or ed25519`}, nil},
		{"bad --at", []string{"verify", dir, "--pubkey", "k", "--at", "yesterday"}, 2, []string{`invalid value "yesterday" for --at: want now`}, nil},
		{"bad --json", []string{"gates", "--json=maybe"}, 2, []string{`invalid value "maybe" for --json: want true or false`}, []string{"strconv"}},
		{"bad --effective-time", []string{"run", "--channel", "nightly", "--out", dir, "--effective-time", "soon"}, 2, []string{`--effective-time "soon": want a date`}, nil},
		{"short --commit", []string{"verify", dir, "--pubkey", "k", "--commit", "abc12"}, 2, []string{"is too short: give at least 7 hex digits"}, nil},
		{"--commit not hex", []string{"verify", dir, "--pubkey", "k", "--commit", "main"}, 2, []string{`--commit "main": want a commit SHA`}, nil},
		{"required flag", []string{"keygen"}, 2, []string{"rustynet-gate keygen: --out DIR is required"}, nil},
		{"flag value missing", []string{"verify", dir, "--pubkey"}, 2, []string{"flag needs an argument: --pubkey"}, nil},
		{"--version", []string{"--version"}, 0, []string{"rustynet-gate " + testVersion + "\n"}, nil},
		{"version", []string{"version"}, 0, []string{"rustynet-gate " + testVersion + "\n"}, nil},
		{"help", []string{"--help"}, 0, []string{"Exit status:", "5  every gate passed", "verify", "completion"}, nil},
		{"help of keygen", []string{"keygen", "--help"}, 0, []string{"Exit status:", "--out", "--alg ecdsa-p256|ed25519"}, nil},
		{"help of run", []string{"run", "--help"}, 0, []string{"Exit status:", "--channel", "--gates", "--baseline-ref", "--effective-time", "--json"}, nil},
		{"help of verify", []string{"verify", "--help"}, 0, []string{"Exit status:", "3  the evidence is invalid", "--pubkey", "--commit", "short one", "--json"}, nil},
		{"help of report", []string{"help", "report"}, 0, []string{"Exit status:", "--format html|md"}, nil},
		{"help of publish", []string{"publish", "-h"}, 0, []string{"Exit status:", "--repo", "--sha", "--api-url", "--details-url", "--allow-development-key"}, nil},
		{"help of gates", []string{"gates", "--help"}, 0, []string{"Exit status:", "--json"}, nil},
		{"help of budgets", []string{"budgets", "--help"}, 0, []string{"Exit status:", "--budgets", "--pubkey"}, nil},
		{"help of mutate", []string{"mutate", "--help"}, 0, []string{"Exit status:", "--only"}, nil},
		{"help of signoff", []string{"signoff", "--help"}, 0, []string{"Exit status:", "--role", "--attest", "--note"}, nil},
		{"help of merge", []string{"merge", "--help"}, 0, []string{"Exit status:", "--out", "--key", "--json"}, nil},
		{"help of docs", []string{"docs", "--help"}, 0, []string{"Exit status:", "--pubkey", "--out"}, nil},
		{"completion bash", []string{"completion", "bash"}, 0, []string{"bash completion V2 for rustynet-gate"}, nil},
		{"completion zsh", []string{"completion", "zsh"}, 0, []string{"#compdef rustynet-gate"}, nil},
		{"completion fish", []string{"completion", "fish"}, 0, []string{"complete -c rustynet-gate"}, nil},
		{"completion of an unknown shell", []string{"completion", "tcsh"}, 2, []string{`unknown command "tcsh"`}, nil},
	})
}

// TestMatchCommit: a short SHA matches the one commit a bundle names that
// it starts; it is invalid evidence when it matches none and refused as
// ambiguous when it matches several.
func TestMatchCommit(t *testing.T) {
	a, b := "0123456789abcdef0123456789abcdef01234567", "0123456fffabcdef0123456789abcdef01234567"
	v := &evidence.Verified{Subjects: []evidence.Subject{{Name: "commit", Digest: map[string]string{"gitCommit": a}}, {Name: "baseline", Digest: map[string]string{"gitCommit": b}}}}
	v.Manifest.Commit = a
	var ie *evidence.InvalidError
	var usage *cli.UsageError
	if err := matchCommit(v, "01234567"); err != nil {
		t.Errorf("matchCommit(%q) = %v, want nil", "01234567", err)
	}
	if err := matchCommit(v, "0123456"); !errors.As(err, &usage) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("matchCommit(%q) = %v, want a usage error saying it is ambiguous", "0123456", err)
	}
	if err := matchCommit(v, "abcdef0"); !errors.As(err, &ie) {
		t.Errorf("matchCommit(%q) = %v, want invalid evidence", "abcdef0", err)
	}
}

// TestPlainSignatureError: the DSSE verifier's "threshold, Found: 0"
// never reaches the user; an invalid bundle stays invalid evidence.
func TestPlainSignatureError(t *testing.T) {
	dsse := errors.New("accepted signatures do not match threshold, Found: 0, Expected 1")
	for _, tc := range []struct {
		err     error
		want    string
		invalid bool
	}{
		{&evidence.InvalidError{Reason: "manifest.dsse.json: the signature does not verify with the given key: " + dsse.Error(), Err: dsse}, "invalid evidence: manifest.dsse.json: the signature does not verify with the given key (--pubkey): it was signed with another key, or changed after it was signed", true},
		{fmt.Errorf("signoffs/security.dsse.json: %w", dsse), "signoffs/security.dsse.json: no signature verifies with the given key: it was signed with another key, or changed after it was signed", false},
		{fmt.Errorf("merge: %w", &evidence.InvalidError{Reason: "b/manifest.dsse.json: " + dsse.Error()}), "merge: invalid evidence: b/manifest.dsse.json: no signature verifies with the given key", true},
		{errors.New("something else"), "something else", false},
	} {
		got := plainSignatureError(tc.err)
		var ie *evidence.InvalidError
		if !strings.Contains(got.Error(), tc.want) || strings.Contains(got.Error(), "Found:") || errors.As(got, &ie) != tc.invalid {
			t.Errorf("plainSignatureError(%q) = %q (invalid evidence: %v), want %q (%v)", tc.err, got, errors.As(got, &ie), tc.want, tc.invalid)
		}
	}
}
