package gates

import (
	"errors"
	"fmt"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// ErrVerifierPolicy marks a problem with the policy the verifier brought
// (VerifyOptions.Policy): a usage error, not a fault of the evidence.
var ErrVerifierPolicy = errors.New("the verifier's policy")

// VerifyOptions says how VerifyBundle judges a bundle.
type VerifyOptions struct {
	// Registry holds the gates the policy may name, and their Recheck.
	Registry *Registry
	// Commit, when set, is the commit the evidence must be about.
	Commit string
	// Policy, when set, is the verifier's own release policy, to judge
	// under instead of the copy in the bundle: a bundle made under a
	// lenient policy of its author's cannot pass by it.
	Policy *policies.Release
	// At, when set, is the time waivers are judged at instead of the time
	// the bundle records.
	At time.Time
	// EffectiveTime, when set, judges the waivers as of that time, as a
	// what-if (rustynet-gate verify --effective-time): the verdict says
	// what would block then and is marked so (Verdict.EffectiveTime).
	// The gates' own findings are the run's: a run with --effective-time
	// judges their dated rules too.
	EffectiveTime time.Time
}

// Verification is a bundle whose signatures and digests hold, judged.
type Verification struct {
	Evidence *evidence.Verified
	// Verdict is the verdict under the judging policy at the judging
	// time, from the statuses as re-checked.
	Verdict *Verdict
	// Policy is the policy Verdict was judged under; Own is the bundle's.
	Policy, Own *policies.Release
	// Recorded is what the bundle's own policy gives at the time the
	// bundle records, from the signed statuses: the verdict the bundle
	// claims (its reports show it).
	Recorded *Verdict
	// Rechecked lists the gates whose signed pass did not survive their
	// spec's Recheck, with why.
	Rechecked map[string]string
	// Checklist is the launch checklist the bundle carries (nil when its
	// channel requires no sign-off), and Signoffs its valid sign-offs.
	Checklist *policies.Checklist
	Signoffs  []Signed
}

// VerifyBundle checks a bundle's every signature and digest
// (evidence.Verify), that its signed verdict is what its statements and
// its own policy give, and recomputes the verdict under o: it never trusts
// the stored one. Invalid evidence is an *evidence.InvalidError; a problem
// with o.Policy wraps ErrVerifierPolicy.
func VerifyBundle(dir string, pub *evidence.Verifier, o VerifyOptions) (*Verification, error) {
	v, err := evidence.Verify(dir, pub, o.Commit)
	if err != nil {
		return nil, err
	}
	return Judge(v, o)
}

// Judge judges a verified bundle (see VerifyBundle).
func Judge(v *evidence.Verified, o VerifyOptions) (*Verification, error) {
	invalid := func(format string, a ...any) error {
		return &evidence.InvalidError{Reason: fmt.Sprintf(format, a...)}
	}
	own, err := policies.ParseRelease(v.Manifest.Policy, v.Policy, o.Registry.Has)
	if err != nil {
		return nil, invalid("the bundle's policy: %v", err)
	}
	if err := own.CheckHorizon(v.Manifest.Created); err != nil {
		// run refuses such a policy: this bundle was not made by it.
		return nil, invalid("the bundle's policy: %v", err)
	}
	channel, partial := evidence.Channel(v.Verdict)
	if channel != v.Manifest.Channel {
		return nil, invalid("the verdict is for channel %q, the manifest says %q", channel, v.Manifest.Channel)
	}
	scope := v.Manifest.Scope
	if partial != (len(scope) > 0) {
		return nil, invalid("the verdict says partial=%v, the manifest lists %d gates in scope", partial, len(scope))
	}
	if !partial && evidence.GatesOnly(v.Verdict) != (len(own.Signoffs(channel)) > 0) {
		return nil, invalid("the verdict records the gates only=%v, and the bundle's policy requires sign-offs %v for channel %s", evidence.GatesOnly(v.Verdict), own.Signoffs(channel), channel)
	}
	statuses := map[string]evidence.Status{}
	for name, g := range v.Gates {
		statuses[name] = g.Result.Status
	}
	// A gate's signed pass holds only if what it signed bears it out (the
	// runner applied the same rechecks to the verdict it signed).
	rechecked := applyRechecks(o.Registry, v.Gates, statuses, channel)
	// The signed verdict must be what the bundle's own policy gives at
	// the time it was judged at: a bundle whose statements and verdict
	// disagree is invalid, whatever policy it is judged under next. That
	// is the verdict's timeVerified, or for a what-if run the effective
	// time its signed manifest records.
	recordedAt := v.Verdict.GetTimeVerified().AsTime()
	var effective time.Time
	if et := v.Manifest.EffectiveTime; et != nil {
		effective = *et
		recordedAt = effective
	}
	recorded, err := Evaluate(own, channel, statuses, recordedAt, scope)
	if err != nil {
		return nil, invalid("%v", err)
	}
	annotate(recorded, rechecked)
	recorded.EffectiveTime = effective
	if claimed := v.Verdict.GetVerificationResult() == evidence.Passed; claimed != recorded.GatesPassed() {
		return nil, invalid("the recorded verdict (%s) is not what the statements and the policy give (passed=%v)", v.Verdict.GetVerificationResult(), recorded.Passed)
	}

	out := &Verification{Evidence: v, Own: own, Policy: own, Recorded: recorded, Rechecked: rechecked}
	at := recordedAt
	if !o.At.IsZero() {
		at = o.At
	}
	if !o.EffectiveTime.IsZero() {
		at = o.EffectiveTime
	}
	if o.Policy != nil {
		if err := o.Policy.CheckHorizon(at); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrVerifierPolicy, err)
		}
		out.Policy = o.Policy
	}
	verdict, err := Evaluate(out.Policy, channel, statuses, at, scope)
	if err != nil {
		// The channel is not in the verifier's policy.
		return nil, fmt.Errorf("%w: %w", ErrVerifierPolicy, err)
	}
	annotate(verdict, rechecked)
	// A what-if run's bundle stays a what-if, judged again at any time;
	// a bundle judged at an effective time becomes one.
	verdict.EffectiveTime = effective
	if !o.EffectiveTime.IsZero() {
		verdict.EffectiveTime = o.EffectiveTime
	}
	// The sign-offs: each must hold, under the judging policy's signers,
	// against the bundle's checklist, made after the run's evaluation.
	cl, err := ReadChecklist(v, o.Registry)
	if err != nil {
		return nil, err
	}
	evaluated := v.Verdict.GetTimeVerified().AsTime()
	ownSigned, err := checkSignoffs(v, own, cl, evaluated)
	if err != nil {
		return nil, err
	}
	signed := ownSigned
	if out.Policy != own {
		if signed, err = checkSignoffs(v, out.Policy, cl, evaluated); err != nil {
			return nil, err
		}
	}
	out.Checklist, out.Signoffs = cl, signed
	for _, j := range []struct {
		verdict *Verdict
		policy  *policies.Release
		signed  []Signed
	}{{recorded, own, ownSigned}, {verdict, out.Policy, signed}} {
		if req := j.policy.Signoffs(channel); len(req) > 0 && !j.verdict.Partial() {
			// A bundle made under a policy that required none (and so
			// carries no checklist to answer) awaits them all.
			j.verdict.applySignoffs(req, j.signed)
		}
	}
	out.Verdict = verdict
	return out, nil
}

// applyRechecks runs each passed gate's Recheck on its statement and makes
// the gates whose pass does not hold failed in statuses; it returns why,
// by gate.
func applyRechecks(reg *Registry, sts map[string]*evidence.GateStatement, statuses map[string]evidence.Status, channel string) map[string]string {
	rechecked := map[string]string{}
	for name, g := range sts {
		spec, ok := reg.Get(name)
		if !ok || spec.Recheck == nil || g.Result.Status != evidence.StatusPass {
			continue
		}
		if err := spec.Recheck(g, channel); err != nil {
			statuses[name] = evidence.StatusFail
			rechecked[name] = err.Error()
		}
	}
	return rechecked
}

// annotate says in a verdict why a re-checked gate does not pass.
func annotate(v *Verdict, rechecked map[string]string) {
	for i := range v.Gates {
		g := &v.Gates[i]
		if why, ok := rechecked[g.Gate]; ok {
			if g.Blocking {
				g.Reason = "signed as passed, but its evidence does not bear it out: " + why
			} else {
				g.Reason += "; its evidence does not bear its pass out: " + why
			}
		}
	}
}
