package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/cli"
	"github.com/rustynet/rustynet/policies"
)

// loadChecklist loads the launch checklist a release policy names, from
// the policy's directory, checked against the registry; nil when it
// names none.
func loadChecklist(pol *policies.Release, policyFile string, reg *gates.Registry) (*policies.Checklist, error) {
	if pol.Checklist.Value == "" {
		return nil, nil
	}
	return policies.LoadChecklist(filepath.Join(filepath.Dir(policyFile), pol.Checklist.Value), reg.EvidenceFields)
}

// signoffNote says which sign-offs a verdict still awaits, and how to
// give one.
func signoffNote(v *gates.Verdict, dir string) string {
	return fmt.Sprintf("awaiting sign-off by %s (required: %s): each signer runs rustynet-gate signoff %s --role ROLE --key KEY --pubkey RELEASE_PUB",
		strings.Join(v.Awaiting, ", "), strings.Join(v.Required, ", "), dir)
}

func signoffCmd() *cobra.Command {
	c := &cobra.Command{}
	describe(c, "signoff BUNDLE --role ROLE --key FILE --pubkey FILE [--attest ITEM,...] [--note TEXT]", "sign a bundle off for a role, answering its launch checklist", "", cli.ExactArgs(1, "one BUNDLE (an evidence bundle)"))
	fs := c.Flags()
	role := fs.String("role", "", "the role signed for: "+strings.Join(policies.Roles, ", ")+" (required)")
	keyFile := fs.String("key", "", "the signer's private key (PKCS#8 PEM), listed for the role in the bundle's release policy (required)")
	pubkey := fs.String("pubkey", "", "the release public key the bundle must be signed with (required)")
	var attest []string
	fs.Func("attest", "a manual item of the role's checklist the signer has checked and attests (repeat, or comma-separated)", func(s string) error {
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				attest = append(attest, a)
			}
		}
		return nil
	})
	note := fs.String("note", "", "a note recorded in the sign-off")
	c.RunE = func(c *cobra.Command, pos []string) (err error) {
		stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
		switch {
		case *role == "":
			return cli.Usagef("--role is required (%s)", strings.Join(policies.Roles, ", "))
		case *keyFile == "":
			return cli.Usagef("--key FILE is required: the signer's own key")
		case *pubkey == "":
			return cli.Usagef("--pubkey FILE is required: the release key the bundle is verified with before it is signed")
		}
		signer, err := evidence.LoadSigner(*keyFile)
		if err != nil {
			return fail(exitUsage, "--key: %v", err)
		}
		pub, err := evidence.LoadVerifier(*pubkey)
		if err != nil {
			return fail(exitUsage, "--pubkey: %v", err)
		}
		reg := registry()
		rel, p, err := gates.SignOff(gates.SignoffOptions{Dir: pos[0], Release: pub, Registry: reg, Role: *role, Signer: signer, Attest: attest, Note: *note})
		var ie *evidence.InvalidError
		switch {
		case errors.As(err, &ie):
			return fail(exitInvalid, "%v", err)
		case errors.Is(err, gates.ErrRefusedSignoff):
			return fail(exitUsage, "%v", err)
		case err != nil:
			return err
		}
		fmt.Fprintf(stdout, "signed off %s for %s as %s (%s) at %s: %s\n", pos[0], p.Role, p.Signer, p.KeyID, p.Time.Format(time.RFC3339), rel)
		for _, a := range p.Answers {
			if a.Kind == gates.KindAutomated {
				fmt.Fprintf(stdout, "  %-28s %s %s = %s (want %s)\n", a.Item, a.Gate, a.Field, a.Observed, a.Want)
			} else {
				fmt.Fprintf(stdout, "  %-28s attested\n", a.Item)
			}
		}
		// The reports show who signed what: render them again, as verify
		// checks them against the evidence.
		if err := writeReports(pos[0], pub, reg); err != nil {
			fmt.Fprintf(stderr, "rustynet-gate: report: %v\n", err)
		}
		res, err := gates.VerifyBundle(pos[0], pub, gates.VerifyOptions{Registry: reg})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: channel %s\n", verdictWord(res.Verdict), res.Verdict.Channel)
		if res.Verdict.AwaitingSignoff() {
			fmt.Fprintln(stdout, signoffNote(res.Verdict, pos[0]))
		}
		return nil
	}
	return c
}
