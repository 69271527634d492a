package gates

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// PredicateSignoff is the predicate type of a sign-off statement.
const PredicateSignoff = "https://rustynet.dev/attestation/signoff/v1"

// SignoffPredicate is what a role's sign-off of a bundle says: who signed,
// for which role, which bundle (by its manifest's digest), when, and the
// answer to every item of the role's checklist.
type SignoffPredicate struct {
	Role    string `json:"role"`
	Channel string `json:"channel"`
	Commit  string `json:"commit"`
	// ManifestSHA256 is the digest of the signed bundle's manifest
	// envelope: a sign-off of one bundle is no sign-off of another.
	ManifestSHA256 string `json:"manifest_sha256"`
	// ChecklistSHA256 is the digest of the checklist answered, the copy
	// in the bundle.
	ChecklistSHA256 string    `json:"checklist_sha256"`
	Signer          string    `json:"signer"` // the name the release policy gives the key
	KeyID           string    `json:"key_id"`
	Time            time.Time `json:"time"`
	Note            string    `json:"note,omitempty"`
	Answers         []Answer  `json:"answers"`
}

// Answer is a sign-off's answer to one checklist item.
type Answer struct {
	Item string `json:"item"`
	Kind string `json:"kind"` // "automated" or "manual"
	// Gate, Field and Want name the evidence of an automated item, and
	// Observed is the field's value as the signer's signoff read it.
	Gate     string `json:"gate,omitempty"`
	Field    string `json:"field,omitempty"`
	Want     string `json:"want,omitempty"`
	Observed string `json:"observed,omitempty"`
	// Met is true for an automated item whose field holds its want, and
	// for a manual item the signer attested.
	Met bool `json:"met"`
}

// Answer kinds.
const (
	KindAutomated = "automated"
	KindManual    = "manual"
)

// Signed is a verified sign-off.
type Signed struct {
	File      string
	Predicate SignoffPredicate
}

// ItemState is one checklist item as a verified bundle answers it.
type ItemState struct {
	Role string
	Item policies.ChecklistItem
	// Observed and Met are an automated item's field, read from the
	// evidence, and whether it holds its want.
	Observed string
	Met      bool
	Why      string // why it is not met
	// SignedBy lists the valid sign-offs of the role (each answered
	// every item of it).
	SignedBy []SignoffPredicate
}

// ReadChecklist parses the checklist a bundle carries against the
// registry (nil when it carries none).
func ReadChecklist(v *evidence.Verified, reg *Registry) (*policies.Checklist, error) {
	if v.Checklist == nil {
		return nil, nil
	}
	c, err := policies.ParseChecklist("policy/"+evidence.ChecklistName, v.Checklist, reg.EvidenceFields)
	if err != nil {
		return nil, &evidence.InvalidError{Reason: "the bundle's checklist: " + err.Error()}
	}
	return c, nil
}

// CheckItem reads an automated item's field from a verified bundle and
// says whether it holds its want.
func CheckItem(v *evidence.Verified, it policies.ChecklistItem) (observed string, met bool, why string) {
	want, err := policies.ParseWant(it.Want.Value)
	if err != nil {
		return "", false, err.Error()
	}
	var value any
	present := true
	switch gate := it.Gate.Value; {
	case gate == policies.BundleSource:
		m := v.Manifest
		switch it.Field.Value {
		case "development_key":
			value = m.DevelopmentKey
		case "dirty":
			value = m.Dirty
		case "effective_time":
			present = m.EffectiveTime != nil
			if present {
				value = m.EffectiveTime.Format(time.RFC3339)
			}
		case "scope":
			present = len(m.Scope) > 0
			value = m.Scope
		default:
			return "", false, fmt.Sprintf("the manifest has no field %s", it.Field.Value)
		}
	default:
		g, ok := v.Gates[gate]
		if !ok {
			return "", false, fmt.Sprintf("gate %s did not run: no evidence", gate)
		}
		if it.Field.Value == "status" {
			value = string(g.Result.Status)
			break
		}
		var details any
		if len(g.Result.Details) > 0 {
			if err := json.Unmarshal(g.Result.Details, &details); err != nil {
				return "", false, fmt.Sprintf("gate %s: its details: %v", gate, err)
			}
		}
		value, present = lookup(details, strings.Split(it.Field.Value, ".")[1:])
	}
	observed = show(value, present)
	met, why = holds(want, value, present)
	return observed, met, why
}

// lookup follows a dotted path through decoded JSON objects.
func lookup(v any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func show(v any, present bool) string {
	if !present {
		return "absent"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// holds says whether a field's value holds a want, and why not.
func holds(w policies.Want, v any, present bool) (bool, string) {
	if w.Op == "absent" {
		if present {
			return false, "want it absent"
		}
		return true, ""
	}
	if !present {
		return w.Op == "empty", "the field is absent from the evidence"
	}
	switch w.Op {
	case "pass":
		return v == string(evidence.StatusPass), fmt.Sprintf("the gate's status is %v", v)
	case "true", "false":
		b, ok := v.(bool)
		return ok && strconv.FormatBool(b) == w.Op, "want " + w.Op
	case "empty":
		switch x := v.(type) {
		case nil:
			return true, ""
		case []any:
			return len(x) == 0, fmt.Sprintf("%d entries, want none", len(x))
		case map[string]any:
			return len(x) == 0, fmt.Sprintf("%d entries, want none", len(x))
		case string:
			return x == "", "want it empty"
		}
		return false, "not a list, map or string"
	case "==", ">=", "<=":
		n, ok := v.(float64)
		if !ok {
			return false, "not a number"
		}
		ok = (w.Op == "==" && n == w.Value) || (w.Op == ">=" && n >= w.Value) || (w.Op == "<=" && n <= w.Value)
		return ok, fmt.Sprintf("want %s %g", w.Op, w.Value)
	}
	return false, "unknown want " + w.Op
}

// SignoffOptions is one signer's sign-off of a bundle.
type SignoffOptions struct {
	Dir      string
	Release  *evidence.Verifier // the key the bundle was signed with
	Registry *Registry
	Role     string
	Signer   *evidence.Signer
	// Attest lists the manual items the signer attests.
	Attest []string
	Note   string
	Now    func() time.Time
}

// ErrRefusedSignoff marks a sign-off that cannot be given: a usage error
// (an unknown role, a key not listed for it, an item not met), not a fault
// of the evidence.
var ErrRefusedSignoff = errors.New("sign-off refused")

// SignOff verifies a bundle, answers the role's checklist from its
// evidence and the signer's attestations, and adds the signed statement
// to the bundle. It refuses, with ErrRefusedSignoff, a role the bundle's
// policy does not list signers for, a key not listed for the role, an
// automated item that does not hold and a manual item not attested.
func SignOff(o SignoffOptions) (string, *SignoffPredicate, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrRefusedSignoff, fmt.Sprintf(format, a...))
	}
	if !slices.Contains(policies.Roles, o.Role) {
		return "", nil, refuse("role %q: want one of %v", o.Role, policies.Roles)
	}
	res, err := VerifyBundle(o.Dir, o.Release, VerifyOptions{Registry: o.Registry})
	if err != nil {
		return "", nil, err
	}
	v, pol := res.Evidence, res.Own
	if res.Verdict.Partial() {
		return "", nil, refuse("the bundle is a partial run (%v): a sign-off is of a channel's whole verdict; merge the partial bundles first", res.Verdict.Scope)
	}
	if res.Verdict.WhatIf() {
		return "", nil, refuse("the bundle is a what-if run as of %s: it cannot be released, so it cannot be signed off", res.Verdict.EffectiveTime.Format(time.DateOnly))
	}
	if !res.Verdict.GatesPassed() {
		return "", nil, refuse("the gates did not pass (%s): nothing to sign off", strings.Join(res.Verdict.Blocking(), ", "))
	}
	id, err := o.Signer.KeyID()
	if err != nil {
		return "", nil, err
	}
	who, ok := pol.SignerFor(o.Role, id)
	if !ok {
		if role, other, ok := pol.RoleOfKey(id); ok {
			return "", nil, refuse("key %s is %s's, listed for %s in the bundle's policy, not for %s", id, other.Name.Value, role, o.Role)
		}
		return "", nil, refuse("key %s is not listed for %s in the bundle's policy (%s, signers)", id, o.Role, pol.File)
	}
	cl, err := ReadChecklist(v, o.Registry)
	if err != nil {
		return "", nil, err
	}
	if cl == nil {
		return "", nil, refuse("the bundle carries no launch checklist: its channel %s requires no sign-off", v.Manifest.Channel)
	}
	items := cl.Items(o.Role)
	if len(items) == 0 {
		return "", nil, refuse("the bundle's checklist has no item for %s", o.Role)
	}
	p := &SignoffPredicate{Role: o.Role, Channel: v.Manifest.Channel, Commit: v.Manifest.Commit, ManifestSHA256: v.ManifestDigest,
		ChecklistSHA256: policies.Digest(v.Checklist), Signer: who.Name.Value, KeyID: id, Time: o.Now().UTC(), Note: o.Note}
	var unmet []string
	for _, a := range o.Attest {
		if !slices.ContainsFunc(items, func(it policies.ChecklistItem) bool { return it.ID.Value == a && it.Manual }) {
			return "", nil, refuse("--attest %s: not a manual item of %s's checklist", a, o.Role)
		}
	}
	for _, it := range items {
		a := Answer{Item: it.ID.Value, Kind: KindManual}
		if it.Automated() {
			a.Kind, a.Gate, a.Field, a.Want = KindAutomated, it.Gate.Value, it.Field.Value, it.Want.Value
			var why string
			a.Observed, a.Met, why = CheckItem(v, it)
			if !a.Met {
				unmet = append(unmet, fmt.Sprintf("%s (%s %s: %s; %s)", it.ID.Value, it.Gate.Value, it.Field.Value, a.Observed, why))
			}
		} else {
			a.Met = slices.Contains(o.Attest, it.ID.Value)
			if !a.Met {
				unmet = append(unmet, fmt.Sprintf("%s (manual: attest it with --attest %s once checked: %s)", it.ID.Value, it.ID.Value, it.What.Value))
			}
		}
		p.Answers = append(p.Answers, a)
	}
	if len(unmet) > 0 {
		return "", nil, refuse("%d items of %s's checklist are not met: %s", len(unmet), o.Role, strings.Join(unmet, "; "))
	}
	st, err := evidence.NewStatement(v.Subjects, PredicateSignoff, p)
	if err != nil {
		return "", nil, err
	}
	rel, err := evidence.AddSignoff(o.Dir, o.Role, st, o.Signer)
	if err != nil {
		return "", nil, err
	}
	return rel, p, nil
}

// checkSignoffs verifies a bundle's sign-offs under the judging policy and
// returns the valid ones. A sign-off that does not hold makes the whole
// bundle invalid: one by a key not listed for its role, of another bundle,
// dated before the bundle's evaluation time, or whose answers do not
// cover its role's checklist or claim what the evidence does not bear out.
func checkSignoffs(v *evidence.Verified, pol *policies.Release, cl *policies.Checklist, evaluated time.Time) ([]Signed, error) {
	invalid := func(file, format string, a ...any) error {
		return &evidence.InvalidError{Reason: file + ": " + fmt.Sprintf(format, a...)}
	}
	var out []Signed
	for _, so := range v.Signoffs {
		claimed, err := evidence.UnverifiedSignoffStatement(so)
		if err != nil {
			return nil, err
		}
		if claimed.GetPredicateType() != PredicateSignoff {
			return nil, invalid(so.Path, "predicate type %q, want %q", claimed.GetPredicateType(), PredicateSignoff)
		}
		var cp SignoffPredicate
		if err := evidence.DecodePredicate(claimed, &cp); err != nil {
			return nil, invalid(so.Path, "predicate: %v", err)
		}
		// The claimed role decides which keys may have signed; the
		// signature is then checked with each, and a sign-off no key
		// of that role verifies is refused, naming whose key it is if
		// the policy lists it elsewhere.
		var st = claimed
		var signer *policies.Signer
		for i := range pol.Signers[cp.Role] {
			s := &pol.Signers[cp.Role][i]
			if vst, err := evidence.VerifySignoff(so, s.Public); err == nil {
				st, signer = vst, s
				break
			}
		}
		if signer == nil {
			for _, role := range policies.Roles {
				for i := range pol.Signers[role] {
					s := &pol.Signers[role][i]
					if _, err := evidence.VerifySignoff(so, s.Public); err == nil {
						return nil, invalid(so.Path, "a sign-off for %s signed with %s's key (%s), which the policy lists for %s, not for %s", cp.Role, s.Name.Value, s.KeyID, role, cp.Role)
					}
				}
			}
			return nil, invalid(so.Path, "a sign-off for %q signed with a key the policy does not list for it (%s)", cp.Role, pol.File)
		}
		var p SignoffPredicate
		if err := evidence.DecodePredicate(st, &p); err != nil {
			return nil, invalid(so.Path, "predicate: %v", err)
		}
		want := evidence.SignoffFile(p.Role, signer.KeyID)
		switch {
		case so.Path != want:
			return nil, invalid(so.Path, "a sign-off by %s for %s belongs at %s", signer.Name.Value, p.Role, want)
		case p.KeyID != signer.KeyID:
			return nil, invalid(so.Path, "says key %s, signed with %s", p.KeyID, signer.KeyID)
		case p.ManifestSHA256 != v.ManifestDigest:
			return nil, invalid(so.Path, "signs off another bundle: manifest %s, this bundle's is %s", p.ManifestSHA256, v.ManifestDigest)
		case !evidence.EqualSubjects(evidence.Subjects(st), v.Subjects):
			return nil, invalid(so.Path, "is about other subjects than the bundle's verdict")
		case p.Commit != v.Manifest.Commit || p.Channel != v.Manifest.Channel:
			return nil, invalid(so.Path, "signs off commit %s on %s; the bundle is commit %s on %s", p.Commit, p.Channel, v.Manifest.Commit, v.Manifest.Channel)
		case p.Time.Before(evaluated):
			return nil, invalid(so.Path, "signed at %s, before the bundle's evaluation at %s: nobody can sign off a verdict not yet made", p.Time.Format(time.RFC3339), evaluated.Format(time.RFC3339))
		case cl == nil:
			return nil, invalid(so.Path, "the bundle carries no checklist for it to answer")
		case p.ChecklistSHA256 != cl.Digest:
			return nil, invalid(so.Path, "answers checklist %s, the bundle's is %s", p.ChecklistSHA256, cl.Digest)
		}
		if err := checkAnswers(v, cl, p); err != nil {
			return nil, invalid(so.Path, "%v", err)
		}
		out = append(out, Signed{File: so.Path, Predicate: p})
	}
	return out, nil
}

// checkAnswers holds a sign-off's answers to its role's checklist: one
// per item, in order, each met, and every automated one as the evidence
// reads now.
func checkAnswers(v *evidence.Verified, cl *policies.Checklist, p SignoffPredicate) error {
	items := cl.Items(p.Role)
	if len(p.Answers) != len(items) {
		return fmt.Errorf("%d answers to the %d items of %s's checklist", len(p.Answers), len(items), p.Role)
	}
	for i, it := range items {
		a := p.Answers[i]
		switch {
		case a.Item != it.ID.Value:
			return fmt.Errorf("answer %d is to %q, want %q", i+1, a.Item, it.ID.Value)
		case !a.Met:
			return fmt.Errorf("item %s is answered as not met", a.Item)
		case it.Manual != (a.Kind == KindManual):
			return fmt.Errorf("item %s is answered as %s", a.Item, a.Kind)
		}
		if it.Automated() {
			obs, met, why := CheckItem(v, it)
			if !met || obs != a.Observed || a.Gate != it.Gate.Value || a.Field != it.Field.Value || a.Want != it.Want.Value {
				return fmt.Errorf("item %s: signed as %s %s = %s, the evidence reads %s (%s)", a.Item, a.Gate, a.Field, a.Observed, obs, why)
			}
		}
	}
	return nil
}

// ChecklistStates is the checklist of a judged bundle as the report shows
// it: every item of every role, what the evidence reads, and the valid
// sign-offs of its role.
func ChecklistStates(v *evidence.Verified, cl *policies.Checklist, signed []Signed) []ItemState {
	if cl == nil {
		return nil
	}
	var out []ItemState
	for _, role := range policies.Roles {
		var by []SignoffPredicate
		for _, s := range signed {
			if s.Predicate.Role == role {
				by = append(by, s.Predicate)
			}
		}
		for _, it := range cl.Items(role) {
			st := ItemState{Role: role, Item: it, SignedBy: by}
			if it.Automated() {
				st.Observed, st.Met, st.Why = CheckItem(v, it)
			}
			out = append(out, st)
		}
	}
	return out
}
