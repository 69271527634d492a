package report

import (
	"math"
	"slices"
	"strings"

	"github.com/rustynet/rustynet/evidence"
)

// What the Markdown report draws in text, where the HTML report draws
// SVG.
const (
	sparkWidth = 40 // characters of a sparkline
	barWidth   = 20 // characters of a bar
)

var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "|", `\|`, "~", `\~`, "#", `\#`,
	"<", "&lt;", ">", "&gt;", "&", "&amp;", "\r\n", " ", "\n", " ", "\r", " ")

// md escapes text from the bundle for a line or a table cell of
// Markdown: no markup, no HTML, no line breaks.
func md(s string) string { return mdEscaper.Replace(s) }

// mdCode writes s as a code span when it can be one.
func mdCode(s string) string {
	if s == "" || strings.ContainsAny(s, "`\r\n|<>&") {
		return md(s)
	}
	return "`" + s + "`"
}

// mdPath writes a bundle path, as a link when it may be one.
func mdPath(a artifactView) string {
	if a.Link {
		return "[" + md(a.Path) + "](" + a.Path + ")"
	}
	return md(a.Path)
}

// mdLines escapes each line of s, and keeps the line breaks as <br>.
func mdLines(s string) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		lines = append(lines, md(l))
	}
	return strings.Join(lines, "<br>\n")
}

// textBars fills the Markdown bars of one unit's measurements, scaled to
// the largest mean of the group.
func textBars(grp []int, ms []evidence.Measurement, rows []measView) {
	var top float64
	for _, i := range grp {
		top = math.Max(top, math.Abs(ms[i].Mean))
	}
	if top == 0 || !finite(top) {
		return
	}
	for _, i := range grp {
		eighths := int(math.Round(math.Abs(ms[i].Mean) / top * barWidth * 8))
		rows[i].Bar = strings.Repeat("█", eighths/8)
		if r := eighths % 8; r > 0 {
			rows[i].Bar += string([]rune("▏▎▍▌▋▊▉")[r-1])
		}
		if ms[i].Mean < 0 {
			rows[i].Bar = "−" + rows[i].Bar
		}
	}
}

// sparkline draws values as a line of block characters.
func sparkline(vals []float64) string {
	k := min(len(vals), sparkWidth)
	means := make([]float64, k)
	for b := range k {
		i0, i1 := b*len(vals)/k, (b+1)*len(vals)/k
		var s float64
		for _, v := range vals[i0:i1] {
			s += v / float64(i1-i0)
		}
		means[b] = s
	}
	lo, hi := slices.Min(means), slices.Max(means)
	levels := []rune("▁▂▃▄▅▆▇█")
	var sb strings.Builder
	for _, v := range means {
		l := 3
		if hi > lo && finite(hi-lo) {
			l = int(math.Round((v - lo) / (hi - lo) * 7))
		}
		sb.WriteRune(levels[max(0, min(7, l))])
	}
	return sb.String()
}
