package report

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/require"
)

// artifactDir is where a test leaves what a person may want to look at:
// $RUSTYNET_TEST_ARTIFACTS/TEST when set (CI uploads it), else the test's
// temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("RUSTYNET_TEST_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pageLoad is what a browser saw while it loaded a page and what the page
// looked like after.
type pageLoad struct {
	console    []string // console API calls, log entries and exceptions, as "level: text"
	requests   []string // every URL the page asked for
	violations []string // securitypolicyviolation events: "directive blocked-uri"
	charts     []chartBox
	// overflow is how many CSS pixels the page is wider than the
	// viewport, at each width tried.
	overflow   map[int]float64
	screenshot []byte
}

type chartBox struct {
	Class string  `json:"class"`
	W     float64 `json:"w"`
	H     float64 `json:"h"`
}

// collectViolations runs in the page before any of its content: the
// Content-Security-Policy reports what it blocks as events, which this
// keeps for the test to read (scripts injected by DevTools are not
// subject to the page's CSP, so it runs under default-src 'none').
const collectViolations = `window.__violations = [];
document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));`

// load opens file in a new tab of the browser in ctx with the network
// offline, and reads what the page did.
func load(t *testing.T, browser context.Context, file string, widths []int) pageLoad {
	t.Helper()
	var (
		mu  sync.Mutex
		got = pageLoad{overflow: map[int]float64{}}
	)
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(func(ev any) {
		// The tab's event loop: record and return.
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			got.console = append(got.console, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		case *cdplog.EventEntryAdded:
			got.console = append(got.console, fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		case *runtime.EventExceptionThrown:
			got.console = append(got.console, "exception: "+ev.ExceptionDetails.Text)
		case *network.EventRequestWillBeSent:
			got.requests = append(got.requests, ev.Request.URL)
		}
	}))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	defer cancelTimeout()

	u := (&url.URL{Scheme: "file", Path: file}).String()
	offline := []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}
	err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
				return fmt.Errorf("Log.enable: %w", err)
			}
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return fmt.Errorf("Network.enable: %w", err)
			}
			// No network: a report that needs one shows less than it
			// should, and an auditor may read it on a machine without.
			if _, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: offline}); err != nil {
				return fmt.Errorf("Network.emulateNetworkConditionsByRule: %w", err)
			}
			if _, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
				return fmt.Errorf("Network.overrideNetworkState: %w", err)
			}
			if _, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: collectViolations}); err != nil {
				return fmt.Errorf("Page.addScriptToEvaluateOnNewDocument: %w", err)
			}
			return nil
		}),
		chromedp.EmulateViewport(int64(widths[0]), 900),
		chromedp.Navigate(u),
		chromedp.WaitReady("body"),
	)
	if err != nil {
		t.Fatalf("loading %s in chromium: %v", u, err)
	}
	for _, w := range widths {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(w), 900)); err != nil {
			t.Fatal(err)
		}
		over, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if err != nil {
			t.Fatal(err)
		}
		got.overflow[w] = over
	}
	if got.charts, err = chromedp.Run(ctx, chromedp.Evaluate[[]chartBox](`[...document.querySelectorAll('svg')].map(s => {
		const r = s.getBoundingClientRect();
		return {class: s.getAttribute('class') || '', w: r.width, h: r.height};
	})`)); err != nil {
		t.Fatal(err)
	}
	if got.violations, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__violations`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(widths[0]), 900)); err != nil {
		t.Fatal(err)
	}
	if got.screenshot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestReportInBrowser opens a report.html, with every kind of chart and
// every section, in headless Chromium with the network off: its
// Content-Security-Policy must raise no violation and the page no
// console message, every chart must take up room, nothing may be fetched
// but the file itself, and no table may make the page scroll sideways. A
// copy with a remote image planted in it must be caught by the same
// checks, so that they are known to see what they look for. The
// screenshot is left in the test's artifacts.
func TestReportInBrowser(t *testing.T) {
	chromium := require.Command(t, "chromium")
	s, v := newSigner(t, evidence.Ed25519)
	// perf and unit of the blocked run: another unit of bars, another line
	// chart, failures with long reasons.
	results := append(auditResults(t), reportResults()[1:]...)
	in := reportInput(t, writeBundle(t, s, testBundle{channel: "beta", policy: auditPolicy, results: results, resultFiles: true}), v)
	files, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := artifactDir(t)
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	report := filepath.Join(dir, evidence.ReportHTML)
	html := string(files[0].Data)
	const bars, series = `<svg class="bars"`, `<svg class="series-chart"`
	if strings.Count(html, bars) < 2 || strings.Count(html, series) < 2 {
		t.Fatalf("the report has %d bar charts and %d line charts; the test needs at least two of each", strings.Count(html, bars), strings.Count(html, series))
	}
	planted := filepath.Join(dir, "planted.html")
	if err := os.WriteFile(planted, []byte(strings.Replace(html, "<body>", `<body><img src="https://example.com/pixel.png" alt=""><div style="width:3000px">wide</div>`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1200, 900))
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	browser, cancel := chromedp.NewContext(actx)
	defer cancel()
	start := time.Now()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))

	widths := []int{1200, 760}
	got := load(t, browser, report, widths)
	shot := filepath.Join(dir, "report.png")
	if err := os.WriteFile(shot, got.screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("report and screenshot: %s, %s", report, shot)

	for _, c := range got.console {
		t.Errorf("the page wrote to the console: %s", c)
	}
	for _, vi := range got.violations {
		t.Errorf("the Content-Security-Policy blocked %s", vi)
	}
	self := (&url.URL{Scheme: "file", Path: report}).String()
	for _, r := range got.requests {
		if r != self {
			t.Errorf("the page asked for %s; it must need nothing but itself", r)
		}
	}
	if n := strings.Count(html, "<svg"); len(got.charts) != n {
		t.Errorf("the browser found %d charts, the HTML has %d <svg>", len(got.charts), n)
	}
	for i, c := range got.charts {
		if c.W <= 0 || c.H <= 0 {
			t.Errorf("chart %d (%s) renders %gx%g: it takes up no room", i, c.Class, c.W, c.H)
		}
	}
	for _, w := range widths {
		if o := got.overflow[w]; o > 0 {
			t.Errorf("at %d px wide the page is %g px wider than the window: a table does not fit", w, o)
		}
	}

	// The checks above find what they look for: a remote image (a CSP
	// violation, a console error, a request) and a block wider than the
	// page.
	bad := load(t, browser, planted, widths[:1])
	if len(bad.violations) == 0 || !strings.Contains(strings.Join(bad.violations, " "), "example.com") {
		t.Errorf("a planted remote image raised violations %q; want one naming it", bad.violations)
	}
	if len(bad.console) == 0 {
		t.Error("a planted remote image wrote nothing to the console")
	}
	if !strings.Contains(strings.Join(bad.requests, " "), "https://example.com/") {
		t.Errorf("the requests seen on the planted page, %q, do not name its remote image", bad.requests)
	}
	if o := bad.overflow[widths[0]]; o <= 0 {
		t.Errorf("a planted 3000 px block overflows the page by %g px; want it seen", o)
	}
}
