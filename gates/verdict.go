package gates

import (
	"fmt"
	"slices"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// GateVerdict is one required gate's part in a verdict.
type GateVerdict struct {
	Gate   string
	Status evidence.Status // the gate's status, missing or out of scope
	// Waiver is the waiver that lets a failed gate pass, if one is in
	// force; Expired is a matching waiver that has lapsed.
	Waiver  *policies.Waiver
	Expired *policies.Waiver
	// Blocking is true when this gate blocks the release.
	Blocking bool
	Reason   string
}

// Verdict is a channel's verdict on a commit.
type Verdict struct {
	Channel string
	At      time.Time
	Passed  bool
	Gates   []GateVerdict
	// Scope lists the gates a partial run was limited to (rustynet-gate
	// run --gates), nil for a run of the whole channel. A partial verdict
	// says whether those gates passed; it is not a verdict on the channel,
	// and it cannot be published as one.
	Scope []string
	// EffectiveTime is set for a what-if run (rustynet-gate run
	// --effective-time): At is that time, the gates judged their dated
	// rules as of it, and the verdict says what would block then. It is
	// not a verdict on the commit today, and it cannot be published.
	EffectiveTime time.Time
	// Required lists the roles whose sign-off the channel requires,
	// Signed the valid sign-offs the bundle holds, and Awaiting the
	// required roles none of them is for. A verdict whose gates passed
	// and that awaits a sign-off has not passed: it is "awaiting
	// sign-off", with its own exit status.
	Required []string
	Signed   []Signed
	Awaiting []string
}

// GatesPassed reports whether every gate the verdict judges passed or
// was waived, whatever the sign-offs.
func (v *Verdict) GatesPassed() bool {
	return !slices.ContainsFunc(v.Gates, func(g GateVerdict) bool { return g.Blocking })
}

// AwaitingSignoff reports whether the gates passed and a required
// sign-off is missing.
func (v *Verdict) AwaitingSignoff() bool { return v.GatesPassed() && len(v.Awaiting) > 0 }

// Blocking lists the gates that block.
func (v *Verdict) Blocking() []string {
	var out []string
	for _, g := range v.Gates {
		if g.Blocking {
			out = append(out, g.Gate)
		}
	}
	return out
}

// applySignoffs records the channel's required sign-offs in v and which
// are there; a missing one keeps v from passing.
func (v *Verdict) applySignoffs(required []string, signed []Signed) {
	v.Required, v.Signed, v.Awaiting = required, signed, nil
	for _, role := range required {
		if !slices.ContainsFunc(signed, func(s Signed) bool { return s.Predicate.Role == role }) {
			v.Awaiting = append(v.Awaiting, role)
		}
	}
	if len(v.Awaiting) > 0 {
		v.Passed = false
	}
}

// Partial reports whether v judges only some gates.
func (v *Verdict) Partial() bool { return v.Scope != nil }

// WhatIf reports whether v is a what-if run's (EffectiveTime).
func (v *Verdict) WhatIf() bool { return !v.EffectiveTime.IsZero() }

// StatusMissing is the status of a required gate that did not run at all
// (a run of some gates only): it blocks.
const StatusMissing = evidence.StatusMissing

// StatusOutOfScope is the status, in a partial verdict, of a gate the
// channel requires that the partial run was not asked to run. It does not
// block the partial verdict, which is why a partial verdict is never a
// verdict on the channel.
const StatusOutOfScope = evidence.StatusOutOfScope

// Evaluate computes the verdict of channel under p from the statuses of
// the gates that ran, at time at (which decides whether waivers are in
// force). A channel passes when every gate it requires passed or has a
// waiver in force; a gate that did not run for want of a need, or did not
// run at all (StatusMissing), blocks like a failure.
//
// A non-nil scope makes the verdict partial: it judges the gates in scope
// (those the channel requires, in policy order, then the others) by the
// same rules, and lists the required gates outside it as StatusOutOfScope.
func Evaluate(p *policies.Release, channel string, statuses map[string]evidence.Status, at time.Time, scope []string) (*Verdict, error) {
	required, err := p.Gates(channel)
	if err != nil {
		return nil, err
	}
	v := &Verdict{Channel: channel, At: at, Passed: true}
	judged := required
	if scope != nil {
		v.Scope = slices.Clone(scope)
		judged = nil
		for _, g := range required {
			if slices.Contains(scope, g) {
				judged = append(judged, g)
			}
		}
		for _, g := range scope {
			if !slices.Contains(judged, g) {
				judged = append(judged, g)
			}
		}
	}
	for _, g := range required {
		if !slices.Contains(judged, g) {
			v.Gates = append(v.Gates, GateVerdict{Gate: g, Status: StatusOutOfScope, Reason: "not run: outside this partial run"})
		}
	}
	for _, g := range judged {
		st, ok := statuses[g]
		if !ok {
			st = StatusMissing
		}
		gv := GateVerdict{Gate: g, Status: st}
		if st != evidence.StatusPass {
			active, expired := p.Waiver(g, channel, at)
			switch {
			case active != nil:
				gv.Waiver = active
				gv.Reason = fmt.Sprintf("%s, waived by %s until %s (%s): %s", st, active.Owner.Value,
					active.Expires.Format(time.DateOnly), active.Ticket.Value, active.Reason.Value)
			default:
				gv.Blocking, v.Passed = true, false
				gv.Reason = string(st)
				if st == StatusMissing {
					gv.Reason = "no evidence: the gate did not run"
				}
				if expired != nil {
					gv.Expired = expired
					gv.Reason = fmt.Sprintf("%s; the waiver by %s (%s) expired on %s", st, expired.Owner.Value,
						expired.Ticket.Value, expired.Expires.Format(time.DateOnly))
				}
			}
		}
		v.Gates = append(v.Gates, gv)
	}
	return v, nil
}
