package gates

import (
	"fmt"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/policies"
)

// GateVerdict is one required gate's part in a verdict.
type GateVerdict struct {
	Gate   string
	Status string // the gate's status, or "missing"
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
}

// StatusMissing is the status of a required gate that did not run at all
// (a run of some gates only): it blocks.
const StatusMissing = "missing"

// Evaluate computes the verdict of channel under p from the statuses of
// the gates that ran, at time at (which decides whether waivers are in
// force). A channel passes when every gate it requires passed or has a
// waiver in force; a gate that did not run for want of a need, or did not
// run at all (StatusMissing), blocks like a failure.
func Evaluate(p *policies.Release, channel string, statuses map[string]string, at time.Time) (*Verdict, error) {
	required, err := p.Gates(channel)
	if err != nil {
		return nil, err
	}
	v := &Verdict{Channel: channel, At: at, Passed: true}
	for _, g := range required {
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
				gv.Reason = st
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
