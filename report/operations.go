package report

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
)

// The operations gates' details, as the slo, incident and dr gates sign
// them (gates/slo, gates/incident, gates/dr): the report reads only what
// it shows.
const (
	sloGate      = "slo"
	incidentGate = "incident"
	drGate       = "dr"
)

// sloRow is one SLO over the slo gate's run.
type sloRow struct {
	ID, Objective, Attainment, BurnRate, WindowBurn, Events string
	Passed                                                  bool
	Class                                                   string
}

// drillView is one drill's measured timeline: an incident drill's (Detect,
// Mitigate) or a DR drill's (Figures).
type drillView struct {
	Name     string
	Passed   bool
	Class    string
	Detect   string // time to detect
	Mitigate string // time to mitigate
	Figures  string // a DR drill's RTOs and losses
	Events   []drillEvent
	Problems []string
}

type drillEvent struct{ At, From, What string }

func pct(v *float64) string {
	if v == nil {
		return "no value"
	}
	return fmt.Sprintf("%.3f%%", *v*100)
}

func num(v *float64) string {
	if v == nil {
		return "no value"
	}
	return fmtNum(*v)
}

// readDetails decodes the details gate signed into v. It reports false,
// with no error, when the gate did not run or signed none, and false with
// the error when they do not decode.
func readDetails(results map[string]evidence.GateResult, gate string, v any) (bool, error) {
	r, ok := results[gate]
	if !ok || len(r.Details) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(r.Details, v); err != nil {
		return false, fmt.Errorf("the %s gate's details: %w", gate, err)
	}
	return true, nil
}

// sloRows reads the slo gate's SLO summaries, if it ran.
func sloRows(results map[string]evidence.GateResult) ([]sloRow, error) {
	var d struct {
		SLOs []struct {
			ID            string   `json:"id"`
			Objective     float64  `json:"objective"`
			Attainment    *float64 `json:"attainment"`
			BurnRate      *float64 `json:"burn_rate"`
			MaxWindowBurn *float64 `json:"max_window_burn_rate"`
			Events        *float64 `json:"events"`
			Passed        bool     `json:"passed"`
		} `json:"slos"`
	}
	if ok, err := readDetails(results, sloGate, &d); !ok {
		return nil, err
	}
	var out []sloRow
	for _, s := range d.SLOs {
		row := sloRow{ID: s.ID, Objective: fmtExact(s.Objective) + "%", Attainment: pct(s.Attainment), BurnRate: num(s.BurnRate),
			WindowBurn: num(s.MaxWindowBurn), Events: num(s.Events), Passed: s.Passed, Class: "good"}
		if !s.Passed {
			row.Class = "bad"
		}
		out = append(out, row)
	}
	return out, nil
}

// drillViews reads the incident gate's drills, if it ran.
func drillViews(results map[string]evidence.GateResult) ([]drillView, error) {
	var d struct {
		Drills []struct {
			Drill     string     `json:"drill"`
			Passed    bool       `json:"passed"`
			Injected  *time.Time `json:"injected"`
			Paged     *time.Time `json:"paged"`
			Mitigated *time.Time `json:"mitigated"`
			Resolved  *time.Time `json:"resolved"`
			Detect    *float64   `json:"time_to_detect_s"`
			Mitigate  *float64   `json:"time_to_mitigate_s"`
			Alerts    []struct {
				Alert    string     `json:"alert"`
				Receiver string     `json:"receiver"`
				Fired    *time.Time `json:"fired"`
				Paged    *time.Time `json:"paged"`
				Resolved *time.Time `json:"resolved"`
			} `json:"alerts"`
			Problems []string `json:"problems"`
		} `json:"drills"`
	}
	if ok, err := readDetails(results, incidentGate, &d); !ok {
		return nil, err
	}
	secs := func(v *float64) string {
		if v == nil {
			return "not reached"
		}
		return fmtSeconds(*v)
	}
	var out []drillView
	for _, x := range d.Drills {
		dv := drillView{Name: x.Drill, Passed: x.Passed, Class: "good", Detect: secs(x.Detect), Mitigate: secs(x.Mitigate), Problems: x.Problems}
		if !x.Passed {
			dv.Class = "bad"
		}
		type ev struct {
			t    *time.Time
			what string
		}
		evs := []ev{{x.Injected, "injected"}}
		for _, a := range x.Alerts {
			evs = append(evs, ev{a.Fired, "fired: " + a.Alert}, ev{a.Paged, "paged: " + a.Alert + " to " + a.Receiver})
			if a.Resolved != nil {
				evs = append(evs, ev{a.Resolved, "resolved: " + a.Alert})
			}
		}
		evs = append(evs, ev{x.Mitigated, "mitigated (runbook script)"}, ev{x.Resolved, "resolved"})
		sort.SliceStable(evs, func(i, j int) bool {
			a, b := evs[i].t, evs[j].t
			switch {
			case a == nil:
				return false
			case b == nil:
				return true
			}
			return a.Before(*b)
		})
		for _, e := range evs {
			de := drillEvent{At: "not reached", What: e.what}
			if e.t != nil {
				de.At = e.t.UTC().Format("15:04:05")
				if x.Injected != nil {
					de.From = fmt.Sprintf("+%.0f s", e.t.Sub(*x.Injected).Seconds())
				}
			}
			dv.Events = append(dv.Events, de)
		}
		out = append(out, dv)
	}
	return out, nil
}

// drDrillViews reads the dr gate's drills, if it ran. The timeline's
// offsets count from the first fault.
func drDrillViews(results map[string]evidence.GateResult) ([]drillView, error) {
	var d struct {
		Drills []struct {
			Drill    string   `json:"drill"`
			Passed   bool     `json:"passed"`
			Problems []string `json:"problems"`
			Result   struct {
				Timeline []struct {
					At   time.Time `json:"at"`
					What string    `json:"what"`
				} `json:"timeline"`
				ControlPlaneRTO *int64 `json:"control_plane_rto_ns"`
				Outage          int64  `json:"control_plane_outage_ns"`
				PropagationRTO  *int64 `json:"propagation_rto_ns"`
				MaxProbeGap     int64  `json:"max_probe_gap_ns"`
				LostProbes      int    `json:"lost_probes"`
				AckedWrites     int    `json:"acked_writes"`
				LostWrites      int    `json:"lost_writes"`
			} `json:"result"`
		} `json:"drills"`
	}
	if ok, err := readDetails(results, drGate, &d); !ok {
		return nil, err
	}
	dur := func(ns *int64) string {
		if ns == nil {
			return "not reached"
		}
		return fmtSeconds(time.Duration(*ns).Seconds())
	}
	var out []drillView
	for _, x := range d.Drills {
		res := x.Result
		dv := drillView{Name: x.Drill, Passed: x.Passed, Class: "good", Problems: x.Problems,
			Figures: fmt.Sprintf("control-plane RTO %s; longest outage after it %s; propagation RTO %s; longest probe gap %s; %d probes lost; %d of %d acknowledged writes lost",
				dur(res.ControlPlaneRTO), dur(&res.Outage), dur(res.PropagationRTO), dur(&res.MaxProbeGap), res.LostProbes, res.LostWrites, res.AckedWrites)}
		if !x.Passed {
			dv.Class = "bad"
		}
		var fault *time.Time
		for _, e := range res.Timeline {
			if strings.HasPrefix(e.What, "fault: ") {
				fault = &e.At
				break
			}
		}
		for _, e := range res.Timeline {
			de := drillEvent{At: e.At.UTC().Format("15:04:05.000"), What: e.What}
			if fault != nil {
				de.From = fmt.Sprintf("%+.1f s", e.At.Sub(*fault).Seconds())
			}
			dv.Events = append(dv.Events, de)
		}
		out = append(out, dv)
	}
	return out, nil
}
