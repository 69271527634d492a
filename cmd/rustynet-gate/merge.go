package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/cli"
)

// mergeWith runs merge with the gates of reg (the tests' are cheap) and
// returns its error as the command returns it, before Execute turns it
// into an exit status.
func mergeWith(reg *gates.Registry, args []string, stdout, stderr io.Writer) error {
	c := mergeCmd(reg)
	c.SetArgs(args)
	c.SetOut(stdout)
	c.SetErr(stderr)
	c.SilenceErrors, c.SilenceUsage = true, true
	return c.Execute()
}

// mergeCmd merges the bundles of partial runs (run --gates on CI runners
// of a matrix) into one bundle, signed with the key they were signed
// with: rustynet-gate merge --out DIR --key KEY PARTIAL...
func mergeCmd(reg *gates.Registry) *cobra.Command {
	c := &cobra.Command{}
	describe(c, "merge --out DIR [--key FILE] [--json] PARTIAL...", "merge the signed bundles of partial runs (run --gates) into one bundle, signed with their key", `Merges the bundles of partial runs (run --gates, on CI runners) into one,
each verified first, signed with the key they were signed with; the verdict
is recomputed from every statement. Bundles of other commits, policies or
keys, a gate run twice, or a byte changed are refused.`, cli.MinimumArgs(1, "PARTIAL... (one or more partial bundles)"))
	fs := c.Flags()
	out := fs.String("out", "", "directory for the merged bundle (new or empty; required)")
	keyFile := fs.String("key", "", "the signing key (PKCS#8 PEM) the partial bundles were signed with; default the development key in "+DevKeyDir+"/")
	asJSON := fs.Bool("json", false, "print the verdict as JSON on stdout")
	c.RunE = func(c *cobra.Command, partials []string) (err error) {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		if *out == "" {
			return cli.Usagef("--out DIR is required")
		}
		signer, err := mergeSigner(*keyFile)
		if err != nil {
			return err
		}
		pub, err := evidence.VerifierFromKey(signer.Public())
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		m, err := gates.Merge(ctx, gates.MergeOptions{Out: *out, Partials: partials, Signer: signer, Verifier: pub, Registry: reg, Version: version,
			// A partial's reports are checked as verify checks them: merge
			// refuses what verify refuses.
			CheckPartial: func(_ string, v *gates.Verification) error {
				_, err := checkReports(v)
				return err
			}})
		if err != nil {
			return err // invalid evidence: exit 3; bundles that do not merge, usage: exit 2
		}
		if err := writeReports(*out, pub, reg); err != nil {
			fmt.Fprintf(stderr, "rustynet-gate: report: %v\n", err)
		}
		if *asJSON {
			details := map[string]string{}
			for _, res := range m.Results {
				details[res.Gate] = res.Reason
			}
			vj := newVerdictJSON(m.Verdict, details, m.Commit, *out, m.DevelopmentKey, m.Dirty)
			if err := printJSON(stdout, vj); err != nil {
				return err
			}
			if vj.Exit != exitPass {
				return fail(vj.Exit, "")
			}
			return nil
		}
		fmt.Fprintf(stdout, "%s: channel %s at %s, merged from %d partial bundles\n", verdictWord(m.Verdict), m.Verdict.Channel, m.Commit[:min(12, len(m.Commit))], len(m.Parts))
		for i, p := range m.Parts {
			fmt.Fprintf(stdout, "  %s: %s (manifest sha256 %.12s)\n", m.Partials[i], strings.Join(p.Scope, ", "), p.ManifestSHA256)
		}
		printOutcome(stdout, m.Verdict, *out)
		if m.DevelopmentKey {
			fmt.Fprintln(stdout, "note: signed with a development key, not a release key")
		}
		if code := exitFor(m.Verdict); code != exitPass {
			return fail(code, "")
		}
		return nil
	}
	return c
}

// mergeSigner loads --key, or the development key. Unlike run, merge
// never creates one: a new key verifies no partial bundle.
func mergeSigner(keyFile string) (*evidence.Signer, error) {
	if keyFile != "" {
		s, err := evidence.LoadSigner(keyFile)
		if err != nil {
			return nil, fail(exitUsage, "--key: %v", err)
		}
		return s, nil
	}
	root, err := repoRoot()
	if err != nil {
		return nil, fail(exitUsage, "no --key, and no development key: %v", err)
	}
	path := filepath.Join(root, DevKeyDir, evidence.PrivateKeyFile)
	s, err := evidence.LoadSigner(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fail(exitUsage, "no --key, and no development key at %s: give the key the partial bundles were signed with", path)
	}
	if err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	return s, nil
}
