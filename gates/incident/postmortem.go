package incident

import (
	"fmt"
	"strings"
	"time"
)

// Postmortem drafts the drill's postmortem by the project's standard
// (documents/operations/postmortem-standard.md): its sections in order,
// the timeline and durations from the drill's measurements, and the
// problems it found as action items. Sections that need a person's
// judgment say so.
func Postmortem(r *Result, owner string) []byte {
	var b strings.Builder
	ts := func(t *time.Time) string {
		if t == nil {
			return "not reached"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	}
	rel := func(t *time.Time) string {
		if t == nil || r.Injected == nil {
			return ""
		}
		return fmt.Sprintf("+%.0fs", t.Sub(*r.Injected).Seconds())
	}
	secs := func(v *float64) string {
		if v == nil {
			return "not measured (the step was not reached)"
		}
		return fmt.Sprintf("%.0f s", *v)
	}
	day := time.Now().UTC()
	if r.Injected != nil {
		day = r.Injected.UTC()
	}
	fmt.Fprintf(&b, "# Postmortem (draft): drill %s, %s\n\n", r.Drill, day.Format(time.DateOnly))
	fmt.Fprintf(&b, "Drafted by the incident gate from the drill `%s` (sha256 %s): every time below was measured in the drill. ", r.File, short(r.Digest))
	b.WriteString("A drill's root cause is the fault it injected; the review adds what a real incident of this kind would need.\n\n")

	b.WriteString("## Summary\n\n")
	fmt.Fprintf(&b, "%s Injected: %s. ", r.Summary, r.Fault)
	switch {
	case r.Paged == nil:
		b.WriteString("The on-call receiver was **not** paged within the drill's detect target.\n\n")
	case r.Resolved == nil:
		fmt.Fprintf(&b, "Paged after %s; **not** resolved within the drill's targets.\n\n", secs(r.TimeToDetect))
	default:
		fmt.Fprintf(&b, "Paged after %s, resolved %s after the page.\n\n", secs(r.TimeToDetect), secs(r.TimeToMitigate))
	}

	b.WriteString("## Impact\n\n")
	if r.Load != nil {
		fmt.Fprintf(&b, "- Control-plane load during the drill: %s.\n", r.Load)
	} else {
		b.WriteString("- No control-plane load was driven; the impact is what the alerts below measured.\n")
	}
	for _, a := range r.Alerts {
		fmt.Fprintf(&b, "- %s: fired %s, delivered to %s %s.\n", a.Alert, ts(a.Fired), a.Receiver, ts(a.Paged))
	}
	b.WriteString("- Error budget consumed: read `slo:period_error_budget_remaining:ratio` in the drill's Prometheus (not kept after the drill).\n\n")

	b.WriteString("## Timeline\n\n| Time (UTC) | From injection | Event |\n|---|---|---|\n")
	type ev struct {
		t    *time.Time
		what string
	}
	evs := []ev{{r.Injected, "injected: " + r.Fault}}
	for _, a := range r.Alerts {
		evs = append(evs, ev{a.Fired, "fired: " + a.Alert + " in Prometheus"}, ev{a.Paged, "paged: " + a.Alert + " delivered to " + a.Receiver})
		if a.Resolves {
			evs = append(evs, ev{a.Resolved, "resolved: " + a.Alert + "'s resolution delivered"})
		}
	}
	evs = append(evs, ev{r.Mitigated, "mitigated: the scripted mitigation of " + r.Runbook + " succeeded"}, ev{r.Resolved, "resolved: every alert that resolves did, and the fault showed gone"})
	// In time order, steps not reached last.
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && later(evs[j-1].t, evs[j].t); j-- {
			evs[j-1], evs[j] = evs[j], evs[j-1]
		}
	}
	for _, e := range evs {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", ts(e.t), rel(e.t), e.what)
	}
	fmt.Fprintf(&b, "\n- **Time to detect** (injected to paged): %s; target %.0f s.\n", secs(r.TimeToDetect), r.Targets.Detect)
	fmt.Fprintf(&b, "- **Time to mitigate** (paged to resolved): %s; the script ran %s (target %.0f s), and resolution had %.0f s.\n\n", secs(r.TimeToMitigate), secs(r.ScriptSeconds), r.Targets.Mitigate, r.Targets.Resolve)

	b.WriteString("## Detection\n\n")
	for _, a := range r.Alerts {
		switch {
		case a.Paged != nil:
			fmt.Fprintf(&b, "- %s reached %s %s after injection.", a.Alert, a.Receiver, rel(a.Paged))
		case a.Fired != nil:
			fmt.Fprintf(&b, "- %s fired but never reached %s.", a.Alert, a.Receiver)
		default:
			fmt.Fprintf(&b, "- %s never fired.", a.Alert)
		}
		if !a.Resolves {
			fmt.Fprintf(&b, " It stays firing after the mitigation by design: %s", a.Why)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Root cause\n\n")
	fmt.Fprintf(&b, "The injected fault: %s. Review: name the defence that would have stopped a real occurrence, or why none could.\n\n", r.Fault)

	b.WriteString("## Action items\n\n| Action | Kind (prevent, detect, mitigate) | Owner | Due |\n|---|---|---|---|\n")
	due := day.AddDate(0, 0, 7).Format(time.DateOnly)
	if len(r.Problems) == 0 {
		fmt.Fprintf(&b, "| None from the drill: it met its targets. Review whether the targets still fit the service. | detect | %s | %s |\n", owner, due)
	}
	for _, p := range r.Problems {
		kind := "mitigate"
		if strings.Contains(p, "fire") || strings.Contains(p, "deliver") || strings.Contains(p, "detect") {
			kind = "detect"
		}
		fmt.Fprintf(&b, "| Fix: %s | %s | %s | %s |\n", strings.ReplaceAll(p, "|", "\\|"), kind, owner, due)
	}
	b.WriteString("\n## Lessons\n\n")
	if r.Passed {
		b.WriteString("- Went well: the alert fired, paged the right receiver within target, and the runbook's script ended the fault.\n")
	} else {
		b.WriteString("- Went badly: see the action items; the release is blocked until the drill passes.\n")
	}
	b.WriteString("- Lucky: to be filled in by the review.\n")
	return []byte(b.String())
}

// later orders times with nil (not reached) last.
func later(a, b *time.Time) bool {
	switch {
	case a == nil:
		return b != nil
	case b == nil:
		return false
	}
	return a.After(*b)
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
