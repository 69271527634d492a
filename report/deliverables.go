package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/gates/compat"
	"github.com/rustynet/rustynet/gates/cryptopolicy"
	"github.com/rustynet/rustynet/gates/dr"
	"github.com/rustynet/rustynet/gates/pqreadiness"
	"github.com/rustynet/rustynet/internal/atomicfile"
	"github.com/rustynet/rustynet/internal/bundledoc"
	"github.com/rustynet/rustynet/internal/slo"
	"github.com/rustynet/rustynet/policies"
)

// The deliverables of a release: seven documents rendered from a verified
// bundle and the policies of its commit (rustynet-gate docs). Each starts
// with a provenance block naming the commit and the bundle's manifest
// digest it came from. The policy-derived ones (support policy, crypto
// schedule) are also kept in the repository as generated from the
// policies alone, and their staleness tests compare past that block
// (bundledoc.StripProvenance).

// Deliverable is one rendered document.
type Deliverable struct {
	Path string // relative to the output directory
	Name string
	// From says what it draws on: the policies and the gates' evidence.
	From string
	// Skipped says why it was not rendered (a gate it draws on is not in
	// the bundle), empty when it was.
	Skipped string
}

func provenance(v *evidence.Verified, verdict *gates.Verdict) string {
	word := "BLOCKED"
	switch {
	case verdict.Passed:
		word = "PASSED"
	case verdict.AwaitingSignoff():
		word = "AWAITING SIGN-OFF"
	}
	scope := "the whole channel"
	if verdict.Partial() {
		scope = "a partial run of " + strings.Join(verdict.Scope, ", ")
	}
	key := v.KeyID
	if v.Manifest.DevelopmentKey {
		key += " (a development key: evidence for a developer, not a release)"
	}
	return bundledoc.ProvenanceStart + fmt.Sprintf("> Rendered by `rustynet-gate docs` from the verified evidence bundle of commit `%s` "+
		"(channel %s, %s; verdict %s, evaluated %s), manifest sha256 `%s`, signed by %s, and the policies of that commit. "+
		"Do not edit: render it again.\n", v.Manifest.Commit, v.Manifest.Channel, scope, word, verdict.At.UTC().Format(time.RFC3339), v.ManifestDigest, key) + bundledoc.ProvenanceEnd + "\n"
}

// DeliverableSet lists the deliverables, in the plan's order, with what
// each draws on; render renders one.
type deliverableSpec struct {
	Deliverable
	gates  []string // gates whose evidence it needs
	render func(w io.Writer, root string, res *gates.Verification) error
}

// MeasuredEvidenceIndex is the per-bundle index of measurements, next to
// the workflow document that says how each kind is measured.
const MeasuredEvidenceIndex = "documents/operations/measured-evidence-index.md"

// OperationsIndex is the SLOs, alerting and incident playbooks index.
const OperationsIndex = "documents/operations/slo-alerting-playbooks.md"

// AgilityReport is the backend agility report.
const AgilityReport = "documents/agility/backend-agility.md"

func deliverableSpecs() []deliverableSpec {
	return []deliverableSpec{
		{Deliverable{Path: compat.SupportDoc, Name: "compatibility and support policy",
			From: "policies/compat.yaml and the capability history (controller/api), checked against the compat gate's evidence: its policy digest and its store, mixed-version and rolling-upgrade results"},
			[]string{compat.Name}, renderSupport},
		{Deliverable{Path: OperationsIndex, Name: "SLOs, alerting and incident playbooks index",
			From: "the SLO specs (slos/), the alert rules (ops/prometheus/rules/) and runbooks (documents/operations/runbooks/), the slo gate's measured attainment and burn rates, and the incident gate's drills"},
			[]string{"slo", "incident"}, renderOperations},
		{Deliverable{Path: dr.ReportFile, Name: "multi-region DR and failover validation report",
			From: "policies/resilience.yaml, scenarios/dr/, and the dr gate's drills, timelines and restore-confidence figures"},
			[]string{dr.Name}, renderDR},
		{Deliverable{Path: AgilityReport, Name: "backend agility report",
			From: "the conformance gate's go test -json of every registered backend (its backend-agility.md artifact)"},
			[]string{"conformance"}, renderAgility},
		{Deliverable{Path: cryptopolicy.ScheduleDoc, Name: "crypto deprecation schedule",
			From: "policies/crypto.yaml, checked against the crypto-policy gate's verdict"},
			[]string{cryptopolicy.Name}, renderSchedule},
		{Deliverable{Path: pqreadiness.ReportFile, Name: "post-quantum readiness report",
			From: "policies/pq.yaml and the pq-readiness gate's experiment and decision gates"},
			[]string{pqreadiness.Name}, renderPQ},
		{Deliverable{Path: MeasuredEvidenceIndex, Name: "measured evidence workflow: this bundle's index",
			From: "every gate's signed measurements (method, unit, repetitions, spread, budget) and machine; how each kind is measured is documents/operations/MeasuredEvidenceGeneration.md"},
			nil, renderEvidenceIndex},
	}
}

// WriteDeliverables renders the deliverables of a judged bundle into out,
// the documents directory (documents/ of the repository, or another for a
// release's own set), with the policies read from root, which must be the
// bundle's commit. A deliverable whose gates are not in the bundle is skipped and
// says why.
func WriteDeliverables(root, out string, res *gates.Verification) ([]Deliverable, error) {
	var done []Deliverable
	prov := provenance(res.Evidence, res.Verdict)
	for _, d := range deliverableSpecs() {
		var missing []string
		for _, g := range d.gates {
			if _, ok := res.Evidence.Gates[g]; !ok {
				missing = append(missing, g)
			}
		}
		if len(missing) > 0 {
			d.Skipped = fmt.Sprintf("the bundle has no evidence of %s", strings.Join(missing, ", "))
			done = append(done, d.Deliverable)
			continue
		}
		path := filepath.Join(out, filepath.FromSlash(strings.TrimPrefix(d.Path, "documents/")))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return done, err
		}
		err := atomicfile.WriteDocument(path, func(w io.Writer) error {
			if _, err := io.WriteString(w, prov); err != nil {
				return err
			}
			return d.render(w, root, res)
		})
		if err != nil {
			return done, fmt.Errorf("%s: %w", d.Name, err)
		}
		done = append(done, d.Deliverable)
	}
	return done, nil
}

// gateDetailsDigest reads the policy digest a gate's details recorded.
func gateDetailsDigest(res *gates.Verification, gate, key string) string {
	g, ok := res.Evidence.Gates[gate]
	if !ok {
		return ""
	}
	var d map[string]any
	if err := json.Unmarshal(g.Result.Details, &d); err != nil {
		return ""
	}
	s, _ := d[key].(string)
	return s
}

func renderSupport(w io.Writer, root string, res *gates.Verification) error {
	pol, err := compat.Load(root, nil)
	if err != nil {
		return err
	}
	if got := gateDetailsDigest(res, compat.Name, "policy_sha256"); got != "" && got != pol.Digest {
		return fmt.Errorf("the compat gate judged %s with digest %s; the tree's is %s: render from a checkout of the bundle's commit", compat.PolicyFile, got, pol.Digest)
	}
	return compat.WriteSupportPolicy(w, pol)
}

func renderSchedule(w io.Writer, root string, res *gates.Verification) error {
	pol, err := cryptopolicy.LoadSchedulePolicy(root)
	if err != nil {
		return err
	}
	return cryptopolicy.WriteSchedule(w, pol)
}

func renderDR(w io.Writer, root string, res *gates.Verification) error {
	drills, pol, err := dr.Load(root)
	if err != nil {
		return err
	}
	if got := gateDetailsDigest(res, dr.Name, "policy_digest"); got != "" && got != pol.Digest {
		return fmt.Errorf("the dr gate judged %s with digest %s; the tree's is %s: render from a checkout of the bundle's commit", dr.PolicyFile, got, pol.Digest)
	}
	return dr.WriteReport(w, res.Evidence, drills, pol)
}

func renderPQ(w io.Writer, root string, res *gates.Verification) error {
	pol, err := policies.LoadPQ(filepath.Join(root, pqreadiness.PolicyFile))
	if err != nil {
		return err
	}
	if got := gateDetailsDigest(res, pqreadiness.Name, "policy_digest"); got != "" && got != pol.Digest {
		return fmt.Errorf("the pq-readiness gate judged %s with digest %s; the tree's is %s: render from a checkout of the bundle's commit", pqreadiness.PolicyFile, got, pol.Digest)
	}
	return pqreadiness.WriteReport(w, res.Evidence, pol)
}

func renderAgility(w io.Writer, root string, res *gates.Verification) error {
	data, err := res.Evidence.ReadArtifact("artifacts/conformance/backend-agility.md", 1<<20)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func renderOperations(w io.Writer, root string, res *gates.Verification) error {
	specs, err := slo.LoadSpecs(root)
	if err != nil {
		return err
	}
	alerts, err := slo.LoadAlerts(root)
	if err != nil {
		return err
	}
	results, err := evidence.LoadResults(res.Evidence)
	if err != nil {
		return err
	}
	rows, err := sloRows(results)
	if err != nil {
		return err
	}
	drills, err := drillViews(results)
	if err != nil {
		return err
	}
	measured := map[string]sloRow{}
	for _, r := range rows {
		measured[r.ID] = r
	}
	var b strings.Builder
	b.WriteString("# SLOs, alerting and incident playbooks\n\n")
	fmt.Fprintf(&b, "The service level objectives, the alerts that page on them and the runbook of each, with what the release's slo and incident gates measured (channel %s). How they are measured: `documents/operations/MeasuredEvidenceGeneration.md`; the catalogues: `documents/operations/slo-catalogue.md` and `documents/operations/alert-catalogue.md`.\n\n", res.Evidence.Manifest.Channel)
	b.WriteString("## SLOs\n\n| Service | SLO | Objective | Spec | Measured attainment | Burn rate | Worst 5-minute burn | Met |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range specs {
		for _, o := range s.Spec.SLOs {
			id := s.Spec.Service + "-" + o.Name
			m, ok := measured[id]
			att, burn, win, met := "not measured", "", "", ""
			if ok {
				att, burn, win, met = m.Attainment, m.BurnRate, m.WindowBurn, yesNo(m.Passed)
			}
			fmt.Fprintf(&b, "| %s | %s | %s%% | `%s` | %s | %s | %s | %s |\n", s.Spec.Service, o.Name, fmtExact(o.Objective), s.File, att, burn, win, met)
		}
	}
	b.WriteString("\n## Alerts and their runbooks\n\n| Alert | Severity | From an SLO | Runbook |\n|---|---|---|---|\n")
	for _, a := range alerts {
		fmt.Fprintf(&b, "| %s | %s | %s | [%s](%s) |\n", a.Name, strings.Join(a.Severities, ", "), yesNo(a.FromSLO), slo.RunbookPath(a.Name), "../../"+slo.RunbookPath(a.Name))
	}
	b.WriteString("\n## Incident drills of this release\n\nEach drill injects a fault, waits for the alert its runbook names, and runs the runbook's mitigation.\n\n| Drill | Passed | Time to detect | Time to mitigate | Problems |\n|---|---|---|---|---|\n")
	for _, d := range drills {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", d.Name, yesNo(d.Passed), d.Detect, d.Mitigate, strings.Join(d.Problems, "; "))
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func renderEvidenceIndex(w io.Writer, root string, res *gates.Verification) error {
	results, err := evidence.LoadResults(res.Evidence)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Measured evidence of this release\n\n")
	b.WriteString("Every figure the release's gates measured, as their signed statements record it: what was measured, how, how often, its spread and the budget it was held to. How each kind of figure is produced, and how to check a bundle with standard tools: `documents/operations/MeasuredEvidenceGeneration.md`.\n\n")
	b.WriteString("## Gates\n\n| Gate | Status | Duration | Measurements | Machine |\n|---|---|---|---|---|\n")
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range results {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		r := results[n]
		e := r.Environment
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s, %d cores, kernel %s, %s |\n", n, r.Status, (time.Duration(r.DurationSeconds * float64(time.Second))).Round(time.Second), len(r.Measurements), e.CPU, e.Cores, e.Kernel, e.GoVersion)
	}
	for _, n := range names {
		r := results[n]
		if len(r.Measurements) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n| Measurement | Mean | Unit | n | Spread (min–max, sd) | Budget | Method |\n|---|---|---|---|---|---|---|\n", n)
		for _, m := range r.Measurements {
			budget := "none"
			if m.Budget != nil {
				budget = budgetText(m.Budget)
				if m.WithinBudget != nil && !*m.WithinBudget {
					budget += " **(outside)**"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s–%s, %s | %s | %s |\n", mdCell(m.Name), fmtNum(m.Mean), m.Unit, m.Repetitions, fmtNum(m.Min), fmtNum(m.Max), fmtNum(m.Stddev), mdCell(budget), mdCell(m.Method))
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func budgetText(bu *evidence.Budget) string {
	var s []string
	if bu.Min != nil {
		s = append(s, "≥ "+fmtExact(*bu.Min))
	}
	if bu.Max != nil {
		s = append(s, "≤ "+fmtExact(*bu.Max))
	}
	return strings.Join(s, " and ")
}

func mdCell(s string) string { return strings.ReplaceAll(md(s), "\n", " ") }
