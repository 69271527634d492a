// Package publish posts a release-gate verdict to GitHub: a commit status
// that branch protection can require, and, where the token allows, a
// check run carrying the Markdown report. Both are named after the
// verdict's channel, so a nightly or beta pass can never stand in for the
// GA verdict a release requires.
package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-github/v60/github"
)

// Verdict is what is published.
type Verdict struct {
	Passed  bool
	Channel string
	// Commit is the full SHA the status is set on.
	Commit string
	// Summary is the Markdown report (report.WriteMarkdown).
	Summary string
	// Blocking are "gate: reason" lines, one per blocking gate.
	Blocking []string
	// DetailsURL is an optional link, for example to the CI run.
	DetailsURL string
	// Awaiting lists the roles whose sign-off the channel still needs
	// when every gate passed: the status is pending, not failure.
	Awaiting []string
}

// ContextPrefix begins every commit status context Publish sets.
const ContextPrefix = "rustynet/release-gate"

// Context is the commit status context of a verdict on channel:
// rustynet/release-gate/ga, .../beta, .../nightly. Branch protection for a
// release requires the GA one.
func Context(channel string) string { return ContextPrefix + "/" + channel }

// CheckRunName is the name of the check run of a verdict on channel.
func CheckRunName(channel string) string { return "rustynet release gate (" + channel + ")" }

// channelRE is what a channel name may be: it is part of the status
// context, so nothing that could make it read as another channel's.
var channelRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// GitHub's limits.
const (
	maxDescription = 140   // characters of a commit status description
	maxSummary     = 65535 // characters of a check run's output summary
)

// Result says what Publish did.
type Result struct {
	// Context is the commit status context that was set.
	Context string
	// StatusURL is the API URL of the commit status.
	StatusURL string
	// CheckRunID is the check run's ID, 0 when none was created.
	CheckRunID int64
	// CheckRunSkipped says why no check run was created, when the token
	// was refused it.
	CheckRunSkipped string
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// Publish sets the commit status Context(v.Channel) on owner/repo@v.Commit
// (success or failure, with a description naming the channel and saying it
// passed or which gates block) and, where the token allows, creates a
// completed check run named CheckRunName(v.Channel) with the verdict as
// its conclusion and v.Summary, truncated to GitHub's limit, as its
// output. A channel that is not a plain lowercase name is refused before
// anything is sent. A check run refused for permissions (403, or 404 for a
// token without access to checks) is reported in Result.CheckRunSkipped
// and is not an error; any other failure is. When the status was set and
// the check run then failed, the Result says so next to the error.
func Publish(ctx context.Context, gh *github.Client, owner, repo string, v Verdict) (*Result, error) {
	if owner == "" || repo == "" {
		return nil, fmt.Errorf("publish: want an owner and a repository, have %q/%q", owner, repo)
	}
	if !shaRE.MatchString(v.Commit) {
		return nil, fmt.Errorf("publish: commit %q is not a full lowercase hex SHA", v.Commit)
	}
	if !channelRE.MatchString(v.Channel) {
		return nil, fmt.Errorf("publish: channel %q is not a channel name (lowercase letters, digits and dashes): the status context is named after it", v.Channel)
	}
	statusContext, checkRunName := Context(v.Channel), CheckRunName(v.Channel)
	where := fmt.Sprintf("%s/%s@%s", owner, repo, v.Commit)

	state := "failure"
	switch {
	case v.Passed:
		state = "success"
	case len(v.Awaiting) > 0 && len(v.Blocking) == 0:
		// Every gate passed; people have yet to sign it off.
		state = "pending"
	}
	st := &github.RepoStatus{State: github.String(state), Context: github.String(statusContext), Description: github.String(description(v))}
	if v.DetailsURL != "" {
		st.TargetURL = github.String(v.DetailsURL)
	}
	got, _, err := gh.Repositories.CreateStatus(ctx, owner, repo, v.Commit, st)
	if err != nil {
		return nil, fmt.Errorf("set commit status %s on %s: %w", statusContext, where, err)
	}
	res := &Result{Context: statusContext, StatusURL: got.GetURL()}

	conclusion, title := "failure", fmt.Sprintf("Release gate blocked for %s", v.Channel)
	if v.Passed {
		conclusion, title = "success", fmt.Sprintf("Release gate passed for %s", v.Channel)
	} else if state == "pending" {
		conclusion, title = "action_required", fmt.Sprintf("Release gate awaiting sign-off for %s by %s", v.Channel, strings.Join(v.Awaiting, ", "))
	} else if n := len(v.Blocking); n > 0 {
		title += fmt.Sprintf(": %d %s", n, plural(n, "gate blocks", "gates block"))
	}
	opts := github.CreateCheckRunOptions{
		Name:       checkRunName,
		HeadSHA:    v.Commit,
		Status:     github.String("completed"),
		Conclusion: github.String(conclusion),
		Output:     &github.CheckRunOutput{Title: github.String(title), Summary: github.String(summary(v))},
	}
	if v.DetailsURL != "" {
		opts.DetailsURL = github.String(v.DetailsURL)
	}
	run, _, err := gh.Checks.CreateCheckRun(ctx, owner, repo, opts)
	var er *github.ErrorResponse
	switch {
	case err == nil:
		res.CheckRunID = run.GetID()
	case errors.As(err, &er) && er.Response != nil &&
		(er.Response.StatusCode == http.StatusForbidden || er.Response.StatusCode == http.StatusNotFound):
		res.CheckRunSkipped = fmt.Sprintf("no check run: GitHub refused to create one with this token (%d %s); "+
			"check runs need a GitHub App token with checks:write. The commit status %s was set.",
			er.Response.StatusCode, er.Message, statusContext)
	default:
		return res, fmt.Errorf("create check run %q on %s (the commit status %s was set): %w", checkRunName, where, statusContext, err)
	}
	return res, nil
}

// description is the commit status description: that the verdict passed,
// or which gates block, in at most maxDescription characters.
func description(v Verdict) string {
	if v.Passed {
		return truncate(fmt.Sprintf("Release gate passed for %s", v.Channel), maxDescription, "…")
	}
	if len(v.Blocking) == 0 && len(v.Awaiting) > 0 {
		return truncate(fmt.Sprintf("Release gate for %s awaits sign-off by %s", v.Channel, strings.Join(v.Awaiting, ", ")), maxDescription, "…")
	}
	if len(v.Blocking) == 0 {
		return truncate(fmt.Sprintf("Release gate blocked for %s", v.Channel), maxDescription, "…")
	}
	var gates []string
	for _, b := range v.Blocking {
		g, _, _ := strings.Cut(b, ":")
		gates = append(gates, strings.TrimSpace(g))
	}
	d := fmt.Sprintf("Blocked for %s by %s", v.Channel, strings.Join(gates, ", "))
	if utf8.RuneCountInString(d) <= maxDescription {
		return d
	}
	// Name as many gates as fit, then say how many more.
	for k := len(gates) - 1; k >= 0; k-- {
		d = fmt.Sprintf("Blocked for %s by %d gates: %s", v.Channel, len(gates), strings.Join(gates[:k], ", "))
		if k > 0 {
			d += ", …"
		}
		if utf8.RuneCountInString(d) <= maxDescription {
			return d
		}
	}
	return truncate(d, maxDescription, "…")
}

// summary is the check run's output summary: the report, or the blocking
// lines when there is none, cut at a line to GitHub's limit with a note
// saying so.
func summary(v Verdict) string {
	s := v.Summary
	if strings.TrimSpace(s) == "" {
		s = "Release gate passed for " + v.Channel + "."
		if !v.Passed {
			s = "Release gate blocked for " + v.Channel + ".\n"
			for _, b := range v.Blocking {
				s += "\n- " + b
			}
		}
	}
	if len(s) <= maxSummary {
		return s
	}
	note := fmt.Sprintf("\n\n---\n**This summary is truncated**: the report has %d characters, GitHub shows at most %d. "+
		"The full report is report.md in the evidence bundle.\n", utf8.RuneCountInString(s), maxSummary)
	return truncate(s, maxSummary, note)
}

// truncate cuts s to at most max bytes (so at most max characters too)
// including tail, at a line break when there is one in the last quarter,
// and appends tail.
func truncate(s string, max int, tail string) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(tail)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if nl := strings.LastIndexByte(s[:cut], '\n'); nl > cut*3/4 {
		cut = nl
	}
	return s[:cut] + tail
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// NewClient returns a go-github client that authenticates with token
// (Authorization: Bearer) and, when baseURL is set, talks to that API
// base URL, used as given: for GitHub Enterprise Server that is
// https://HOST/api/v3/.
func NewClient(token, baseURL string) (*github.Client, error) {
	if token == "" {
		return nil, errors.New("github: no token")
	}
	gh := github.NewClient(&http.Client{Timeout: 2 * time.Minute}).WithAuthToken(token)
	if baseURL == "" {
		return gh, nil
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("github API base URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("github API base URL %q: want http(s)://HOST/PATH", baseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	gh.BaseURL = u
	return gh, nil
}
