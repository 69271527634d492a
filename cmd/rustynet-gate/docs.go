package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/report"
)

// docsInputs are the tree's paths the deliverables read besides the
// bundle: they must be the bundle's commit's.
var docsInputs = []string{"policies", "slos", "scenarios", "ops", "controller/api", "documents/operations/runbooks"}

func docsCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "docs BUNDLE --pubkey FILE [--out documents]", "render the release's seven deliverables into documents/ from a verified bundle and the policies", `Renders the release's seven deliverables from the verified bundle and the
policies of the tree, which must be at the bundle's commit with no changes in
what they read. Exits 4 when some could not be rendered (the bundle lacks
their evidence).`, cli.ExactArgs(1, "one BUNDLE (an evidence bundle)"))
	fs := c.Flags()
	pubkey := fs.String("pubkey", "", "public key (PKIX PEM) the bundle must be signed with (required)")
	out := fs.String("out", "documents", "the documents directory to render the deliverables into")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout := c.OutOrStdout()
		if *pubkey == "" {
			return cli.Usagef("--pubkey FILE is required")
		}
		pub, err := evidence.LoadVerifier(*pubkey)
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		root, err := repoRoot()
		if err != nil {
			return err
		}
		res, err := gates.VerifyBundle(pos[0], pub, gates.VerifyOptions{Registry: registry()})
		var ie *evidence.InvalidError
		if errors.As(err, &ie) {
			return fail(exitInvalid, "%v", err)
		} else if err != nil {
			return err
		}
		// The deliverables read the policies, scenarios and specs from the
		// tree: they must be those of the bundle's commit.
		commit := res.Evidence.Manifest.Commit
		head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
		if err != nil {
			return fmt.Errorf("docs: git rev-parse HEAD: %w", err)
		}
		if h := strings.TrimSpace(string(head)); h != commit {
			return fail(exitUsage, "the bundle is about commit %s and the tree is at %s: the deliverables read the policies of the tree, so check out %.12s first", commit, h, commit)
		}
		changed, err := exec.Command("git", append([]string{"-C", root, "status", "--porcelain", "--"}, docsInputs...)...).Output()
		if err != nil {
			return fmt.Errorf("docs: git status: %w", err)
		}
		if s := strings.TrimSpace(string(changed)); s != "" {
			return fail(exitUsage, "the tree has uncommitted changes in what the deliverables read (%s):\n%s", strings.Join(docsInputs, ", "), s)
		}
		done, err := report.WriteDeliverables(root, *out, res)
		if err != nil {
			return err
		}
		skipped := 0
		for _, d := range done {
			if d.Skipped != "" {
				skipped++
				fmt.Fprintf(stdout, "skipped %s: %s\n", d.Name, d.Skipped)
				continue
			}
			fmt.Fprintf(stdout, "wrote %s: %s\n  from %s\n", filepath.Join(*out, strings.TrimPrefix(d.Path, "documents/")), d.Name, d.From)
		}
		fmt.Fprintf(stdout, "%d of %d deliverables rendered from %s (commit %.12s, verdict %s)\n", len(done)-skipped, len(done), pos[0], commit, verdictWord(res.Verdict))
		if skipped > 0 {
			return fail(exitPartialPass, "%d deliverables not rendered: the bundle lacks the evidence they draw on (a partial run?)", skipped)
		}
		return nil
	}
	return c
}
