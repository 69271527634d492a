// Package report renders a verified, judged evidence bundle as the
// reports rustynet-gate writes next to the evidence: report.html, one
// self-contained page with inline SVG charts, and report.md, the same
// content in Markdown (the summary publish posts). The reports are
// derived from the evidence, not part of it; Check renders them again and
// refuses a bundle whose copies differ.
//
// The content is computed once (view.go) and drawn by the templates under
// templates/: html/template for HTML, text/template for Markdown. Charts
// are pure geometry (chart.go) that the HTML template draws. Rendering is
// deterministic: the same input gives the same bytes, in any process.
package report

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"path/filepath"
	texttemplate "text/template"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/atomicfile"
)

// Input is everything a report shows: a verified bundle and a verdict on
// it.
type Input struct {
	Evidence *evidence.Verified
	// Verdict is the verdict the report shows. What run writes and verify
	// checks is the verdict the bundle records (gates.Verification's
	// Recorded); publish shows the one judged under the verifier's policy.
	Verdict *gates.Verdict
	// Results are the gates' full results, as evidence.LoadResults reads
	// them. When nil, the results the statements carry are shown.
	Results map[string]evidence.GateResult
	// Checklist is the launch checklist as the bundle answers it, and
	// who signed each role off (nil when the channel requires none).
	Checklist []gates.ItemState
}

// Load is the input of a report of v under verdict, with the gates' full
// results (evidence.LoadResults).
func Load(v *evidence.Verified, verdict *gates.Verdict) (*Input, error) {
	results, err := evidence.LoadResults(v)
	if err != nil {
		return nil, err
	}
	return &Input{Evidence: v, Verdict: verdict, Results: results}, nil
}

// Recorded is the input of the reports run writes next to the evidence:
// the verdict under the bundle's own policy at the time it records,
// whatever policy and time res was judged under. It is what Check
// compares the bundle's reports with.
func Recorded(res *gates.Verification) (*Input, error) {
	in, err := Load(res.Evidence, res.Recorded)
	if err != nil {
		return nil, err
	}
	in.Checklist = gates.ChecklistStates(res.Evidence, res.Checklist, res.Recorded.Signed)
	return in, nil
}

// Judged is the input of a report of res under the verdict it was judged
// to (the verifier's policy, at the judging time), with the checklist as
// that policy's signers signed it: what publish posts.
func Judged(res *gates.Verification) (*Input, error) {
	in, err := Load(res.Evidence, res.Verdict)
	if err != nil {
		return nil, err
	}
	in.Checklist = gates.ChecklistStates(res.Evidence, res.Checklist, res.Verdict.Signed)
	return in, nil
}

// File is a rendered report: its name in the bundle and its content.
type File struct {
	Name string
	Data []byte
}

// Render renders in as the files run writes next to the evidence:
// report.html, then report.md.
func Render(in *Input) ([]File, error) {
	var h, m bytes.Buffer
	if err := WriteHTML(&h, in); err != nil {
		return nil, err
	}
	if err := WriteMarkdown(&m, in); err != nil {
		return nil, err
	}
	return []File{{evidence.ReportHTML, h.Bytes()}, {evidence.ReportMD, m.Bytes()}}, nil
}

// WriteFiles renders in (see Render) into the bundle's directory.
func WriteFiles(in *Input) error {
	files, err := Render(in)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := atomicfile.WriteFile(filepath.Join(in.Evidence.Dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Check renders in (see Render) and compares each report with the
// bundle's file of that name, where there is one, and returns the names of
// those it compared. A report that is not byte for byte what the verified
// evidence renders to, forged or rendered by another version, is refused
// with an *evidence.InvalidError: a reader who opens report.html after a
// bundle verified reads what the evidence says. in must be what run
// renders (see Recorded).
func Check(in *Input) ([]string, error) {
	files, err := Render(in)
	if err != nil {
		return nil, err
	}
	var checked []string
	for _, r := range files {
		same, err := in.Evidence.SameContent(r.Name, r.Data)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !same {
			return nil, &evidence.InvalidError{Reason: fmt.Sprintf("%s is not the report the verified evidence renders to: it was changed, or rendered by another version "+
				"(rustynet-gate report renders it again)", r.Name)}
		}
		checked = append(checked, r.Name)
	}
	return checked, nil
}

//go:embed templates
var templates embed.FS

var (
	htmlReport = htmltemplate.Must(htmltemplate.New("report.html.tmpl").Funcs(htmltemplate.FuncMap{
		"f1": f1,
	}).ParseFS(templates, "templates/report.html.tmpl"))
	mdReport = texttemplate.Must(texttemplate.New("report.md.tmpl").Funcs(texttemplate.FuncMap{
		"md":      md,
		"mdCode":  mdCode,
		"mdPath":  mdPath,
		"mdLines": mdLines,
	}).ParseFS(templates, "templates/report.md.tmpl"))
)

// WriteHTML writes the report as one self-contained HTML page: inline CSS
// and inline SVG charts, no external assets, no JavaScript.
func WriteHTML(w io.Writer, in *Input) error {
	rv, err := buildView(in)
	if err != nil {
		return err
	}
	return htmlReport.Execute(w, rv)
}

// WriteMarkdown writes the report as Markdown, with the content of
// WriteHTML; charts become tables (bars of block characters and
// sparklines). Everything from the bundle is escaped: no markup, no HTML.
func WriteMarkdown(w io.Writer, in *Input) error {
	rv, err := buildView(in)
	if err != nil {
		return err
	}
	return mdReport.Execute(w, rv)
}
