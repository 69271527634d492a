package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const (
	token  = "ghs_test-token"
	owner  = "rustynet"
	repo   = "rustynet"
	commit = "0123456789abcdef0123456789abcdef01234567"
)

// fakeGitHub implements the two REST endpoints Publish uses, records the
// JSON bodies the real go-github client sends, and answers as GitHub does.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server
	// What the endpoints answer: 0 is 201 Created.
	statusCode, checkCode int
	checkHeader           http.Header

	mu        sync.Mutex
	statuses  []map[string]any
	checkRuns []map[string]any
}

func startFake(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /repos/{owner}/{repo}/statuses/{sha}", f.createStatus)
	mux.HandleFunc("POST /repos/{owner}/{repo}/check-runs", f.createCheckRun)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		reply(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// publish publishes v to the fake with the real go-github client.
func (f *fakeGitHub) publish(v Verdict) (*Result, error) {
	f.t.Helper()
	gh, err := NewClient(token, f.srv.URL)
	if err != nil {
		f.t.Fatalf("NewClient: %v", err)
	}
	return Publish(context.Background(), gh, owner, repo, v)
}

// decode checks the headers every request must carry and decodes the body.
func (f *fakeGitHub) decode(r *http.Request) map[string]any {
	f.t.Helper()
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		f.t.Errorf("%s %s: Authorization = %q, want %q", r.Method, r.URL.Path, got, "Bearer "+token)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		f.t.Errorf("%s %s: Content-Type = %q, want application/json", r.Method, r.URL.Path, got)
	}
	if r.PathValue("owner") != owner || r.PathValue("repo") != repo {
		f.t.Errorf("%s %s: want repository %s/%s", r.Method, r.URL.Path, owner, repo)
	}
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		f.t.Errorf("%s %s: body %q is not a JSON object: %v", r.Method, r.URL.Path, body, err)
	}
	return m
}

// requests returns the status and check run bodies received so far.
func (f *fakeGitHub) requests() (statuses, checkRuns []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses), slices.Clone(f.checkRuns)
}

func reply(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

func (f *fakeGitHub) createStatus(w http.ResponseWriter, r *http.Request) {
	body := f.decode(r)
	f.mu.Lock()
	f.statuses = append(f.statuses, body)
	f.mu.Unlock()
	sha := r.PathValue("sha")
	if sha != commit {
		f.t.Errorf("status set on %q, want %q", sha, commit)
	}
	if f.statusCode != 0 {
		reply(w, f.statusCode, map[string]any{"message": "Server Error"})
		return
	}
	reply(w, http.StatusCreated, map[string]any{
		"url":         f.srv.URL + "/repos/" + owner + "/" + repo + "/statuses/" + sha,
		"avatar_url":  "https://avatars.githubusercontent.com/u/9919?v=4",
		"id":          1234567890,
		"node_id":     "SC_kwDOABCDEF8AAAABJlAv0g",
		"state":       body["state"],
		"description": body["description"],
		"target_url":  body["target_url"],
		"context":     body["context"],
		"created_at":  "2026-11-26T09:30:00Z",
		"updated_at":  "2026-11-26T09:30:00Z",
		"creator":     map[string]any{"login": "rustynet-gate[bot]", "id": 41898282, "type": "Bot"},
	})
}

func (f *fakeGitHub) createCheckRun(w http.ResponseWriter, r *http.Request) {
	body := f.decode(r)
	f.mu.Lock()
	f.checkRuns = append(f.checkRuns, body)
	f.mu.Unlock()
	for k, vs := range f.checkHeader {
		w.Header()[k] = vs
	}
	switch f.checkCode {
	case 0:
	case http.StatusForbidden:
		reply(w, f.checkCode, map[string]any{"message": "Resource not accessible by integration",
			"documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run", "status": "403"})
		return
	case http.StatusNotFound:
		reply(w, f.checkCode, map[string]any{"message": "Not Found",
			"documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run", "status": "404"})
		return
	default:
		reply(w, f.checkCode, map[string]any{"message": "Server Error"})
		return
	}
	reply(w, http.StatusCreated, map[string]any{
		"id":           4242,
		"node_id":      "CR_kwDOABCDEF8AAAAEqL0TZQ",
		"head_sha":     body["head_sha"],
		"external_id":  "",
		"url":          f.srv.URL + "/repos/" + owner + "/" + repo + "/check-runs/4242",
		"html_url":     "https://github.com/" + owner + "/" + repo + "/runs/4242",
		"details_url":  body["details_url"],
		"status":       body["status"],
		"conclusion":   body["conclusion"],
		"started_at":   "2026-11-26T09:30:00Z",
		"completed_at": "2026-11-26T09:30:00Z",
		"name":         body["name"],
		"output": map[string]any{"title": "…", "summary": "…", "text": nil, "annotations_count": 0,
			"annotations_url": f.srv.URL + "/repos/" + owner + "/" + repo + "/check-runs/4242/annotations"},
		"check_suite":   map[string]any{"id": 5},
		"app":           map[string]any{"id": 1, "slug": "rustynet-gate"},
		"pull_requests": []any{},
	})
}

// want checks that a JSON body has the given fields, and lacks those
// given as nil.
func want(t *testing.T, what string, body map[string]any, fields map[string]any) {
	t.Helper()
	for k, v := range fields {
		got, ok := body[k]
		switch {
		case v == nil && ok:
			t.Errorf("%s: %s = %v, want it absent", what, k, got)
		case v != nil && fmt.Sprint(got) != fmt.Sprint(v):
			t.Errorf("%s: %s = %v, want %v", what, k, got, v)
		}
	}
}

func TestPublishPassed(t *testing.T) {
	f := startFake(t)
	v := Verdict{Passed: true, Channel: "beta", Commit: commit, Summary: "# Rustynet release gate: PASSED\n\nAll 5 gates passed.\n",
		DetailsURL: "https://ci.example.com/runs/17"}
	res, err := f.publish(v)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	statuses, checkRuns := f.requests()
	if len(statuses) != 1 || len(checkRuns) != 1 {
		t.Fatalf("Publish made %d status and %d check run requests, want 1 and 1", len(statuses), len(checkRuns))
	}
	want(t, "status", statuses[0], map[string]any{"state": "success", "context": Context(v.Channel),
		"description": "Release gate passed for beta", "target_url": v.DetailsURL})
	want(t, "check run", checkRuns[0], map[string]any{"name": "rustynet release gate (beta)", "head_sha": commit,
		"status": "completed", "conclusion": "success", "details_url": v.DetailsURL})
	out, _ := checkRuns[0]["output"].(map[string]any)
	want(t, "check run output", out, map[string]any{"title": "Release gate passed for beta", "summary": v.Summary})
	if wantURL := f.srv.URL + "/repos/rustynet/rustynet/statuses/" + commit; res.StatusURL != wantURL || res.CheckRunID != 4242 || res.CheckRunSkipped != "" {
		t.Errorf("Publish = %+v, want StatusURL %s, CheckRunID 4242, nothing skipped", res, wantURL)
	}
}

func TestPublishBlocked(t *testing.T) {
	f := startFake(t)
	v := Verdict{Channel: "ga", Commit: commit, Summary: "# Rustynet release gate: BLOCKED\n",
		Blocking: []string{"perf: throughput 850 Mbit/s, budget ≥ 900", "unit: 2 tests failed"}}
	res, err := f.publish(v)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	statuses, checkRuns := f.requests()
	want(t, "status", statuses[0], map[string]any{"state": "failure", "context": Context(v.Channel),
		"description": "Blocked for ga by perf, unit", "target_url": nil})
	want(t, "check run", checkRuns[0], map[string]any{"status": "completed", "conclusion": "failure", "details_url": nil})
	out, _ := checkRuns[0]["output"].(map[string]any)
	want(t, "check run output", out, map[string]any{"title": "Release gate blocked for ga: 2 gates block", "summary": v.Summary})
	if res.CheckRunID != 4242 {
		t.Errorf("Publish = %+v, want CheckRunID 4242", res)
	}
}

// TestPublishCheckRunsRefused: a token that may set statuses but not
// create check runs (a personal access token, or an App without
// checks:write) still publishes the status.
func TestPublishCheckRunsRefused(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusNotFound} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			f := startFake(t)
			f.checkCode = code
			res, err := f.publish(Verdict{Passed: true, Channel: "beta", Commit: commit, Summary: "ok"})
			if err != nil {
				t.Fatalf("Publish with check runs refused (%d): %v, want no error", code, err)
			}
			statuses, _ := f.requests()
			if len(statuses) != 1 || res.StatusURL == "" {
				t.Errorf("Publish = %+v after %d status requests, want the status set", res, len(statuses))
			}
			if res.CheckRunID != 0 || !strings.Contains(res.CheckRunSkipped, fmt.Sprint(code)) || !strings.Contains(res.CheckRunSkipped, "checks:write") {
				t.Errorf("Publish: CheckRunID %d, CheckRunSkipped %q; want 0 and a reason naming %d and the permission", res.CheckRunID, res.CheckRunSkipped, code)
			}
		})
	}
}

// TestPublishCheckRunRateLimited: a 403 for a rate limit is not a
// permission refusal.
func TestPublishCheckRunRateLimited(t *testing.T) {
	f := startFake(t)
	f.checkCode = http.StatusForbidden
	f.checkHeader = http.Header{"X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"4102444800"}}
	res, err := f.publish(Verdict{Passed: true, Channel: "beta", Commit: commit, Summary: "ok"})
	if err == nil || !strings.Contains(err.Error(), "check run") {
		t.Fatalf("Publish with check runs rate limited = %+v, %v; want an error about the check run", res, err)
	}
	if res == nil || res.StatusURL == "" {
		t.Errorf("Publish = %+v, want the status it set reported next to the error", res)
	}
}

func TestPublishStatusFails(t *testing.T) {
	f := startFake(t)
	f.statusCode = http.StatusInternalServerError
	res, err := f.publish(Verdict{Passed: true, Channel: "beta", Commit: commit})
	if err == nil || !strings.Contains(err.Error(), "set commit status") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Publish with statuses failing = %+v, %v; want an error saying the status was not set", res, err)
	}
	if _, checkRuns := f.requests(); len(checkRuns) != 0 {
		t.Errorf("Publish created a check run after the status failed")
	}
}

func TestPublishLongSummary(t *testing.T) {
	f := startFake(t)
	var sb strings.Builder
	for i := 0; sb.Len() <= 100_000; i++ {
		fmt.Fprintf(&sb, "| m%05d | ms | 12.5 | ≤ 20 ms | yes |\n", i)
	}
	long := sb.String()
	if _, err := f.publish(Verdict{Channel: "beta", Commit: commit, Summary: long, Blocking: []string{"perf: slow"}}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	_, checkRuns := f.requests()
	out, _ := checkRuns[0]["output"].(map[string]any)
	got, _ := out["summary"].(string)
	if n := utf8.RuneCountInString(got); n > 65535 || len(got) > 65535 {
		t.Errorf("the summary sent has %d characters (%d bytes), want at most 65535", n, len(got))
	}
	head, note, ok := strings.Cut(got, "\n\n---\n")
	if !ok || !strings.Contains(note, "truncated") || !strings.HasPrefix(long, head) || len(head) < 60_000 {
		t.Errorf("the summary sent is not the report's beginning and a note saying it is truncated: ...%q", got[max(0, len(got)-300):])
	}
	if !utf8.ValidString(got) {
		t.Error("the summary sent was cut inside a character")
	}
}

func TestDescription(t *testing.T) {
	var blocking []string
	for i := range 30 {
		blocking = append(blocking, fmt.Sprintf("gate-with-a-long-name-%02d: failed", i))
	}
	d := description(Verdict{Channel: "nightly", Blocking: blocking})
	if n := utf8.RuneCountInString(d); n > 140 || !strings.HasPrefix(d, "Blocked for nightly by 30 gates: gate-with-a-long-name-00") || !strings.HasSuffix(d, ", …") {
		t.Errorf("description of 30 blocking gates = %q (%d characters), want at most 140 naming the count and the first gates", d, n)
	}
}

func TestNewClient(t *testing.T) {
	if _, err := NewClient("", ""); err == nil {
		t.Error(`NewClient("", "") = nil error, want one for the missing token`)
	}
	if _, err := NewClient(token, "ftp://example.com"); err == nil {
		t.Error(`NewClient with an ftp base URL = nil error, want one`)
	}
	gh, err := NewClient(token, "https://ghe.example.com/api/v3")
	if err != nil || gh.BaseURL.String() != "https://ghe.example.com/api/v3/" {
		t.Errorf("NewClient with a GHE base URL: %v, %v; want https://ghe.example.com/api/v3/", gh.BaseURL, err)
	}
	if _, err := Publish(context.Background(), gh, owner, repo, Verdict{Commit: "main"}); err == nil {
		t.Error("Publish on a branch name = nil error, want one asking for a full SHA")
	}
}

// TestPublishChannelContext: the status context and check run name carry
// the channel, so a nightly (or beta) pass can never satisfy branch
// protection that requires the GA verdict.
func TestPublishChannelContext(t *testing.T) {
	for _, c := range []struct {
		channel     string
		passed      bool
		wantContext string
	}{
		{"nightly", true, "rustynet/release-gate/nightly"},
		{"beta", true, "rustynet/release-gate/beta"},
		{"ga", false, "rustynet/release-gate/ga"},
	} {
		f := startFake(t)
		v := Verdict{Passed: c.passed, Channel: c.channel, Commit: commit, Summary: "report"}
		if _, err := f.publish(v); err != nil {
			t.Fatalf("Publish(%s): %v", c.channel, err)
		}
		statuses, checkRuns := f.requests()
		if len(statuses) != 1 || len(checkRuns) != 1 {
			t.Fatalf("Publish(%s) made %d status and %d check run requests, want 1 and 1", c.channel, len(statuses), len(checkRuns))
		}
		if got := statuses[0]["context"]; got != c.wantContext {
			t.Errorf("Publish(%s verdict): status context = %v, want %s", c.channel, got, c.wantContext)
		}
		if c.channel != "ga" && (statuses[0]["context"] == "rustynet/release-gate/ga" || statuses[0]["context"] == "rustynet/release-gate") {
			t.Errorf("Publish(%s verdict) set the status context %v, which GA branch protection requires", c.channel, statuses[0]["context"])
		}
		if d, _ := statuses[0]["description"].(string); !strings.Contains(d, c.channel) {
			t.Errorf("Publish(%s verdict): description %q does not name the channel", c.channel, d)
		}
		if got, want := checkRuns[0]["name"], "rustynet release gate ("+c.channel+")"; got != want {
			t.Errorf("Publish(%s verdict): check run name = %v, want %s", c.channel, got, want)
		}
	}
}

// TestPublishRefusesBadChannel: the channel names the status context, so
// a verdict without one, or with one that is not a plain name, publishes
// nothing.
func TestPublishRefusesBadChannel(t *testing.T) {
	for _, channel := range []string{"", "GA", "ga/extra", "nightly ", "../ga"} {
		f := startFake(t)
		_, err := f.publish(Verdict{Passed: true, Channel: channel, Commit: commit})
		if err == nil || !strings.Contains(err.Error(), "channel") {
			t.Errorf("Publish(channel %q) = %v, want an error about the channel", channel, err)
		}
		if statuses, checkRuns := f.requests(); len(statuses)+len(checkRuns) != 0 {
			t.Errorf("Publish(channel %q) made %d requests, want none", channel, len(statuses)+len(checkRuns))
		}
	}
}
