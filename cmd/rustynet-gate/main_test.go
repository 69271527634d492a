package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/internal/clitest"
)

var binary string

// testVersion is the version the test binary's -ldflags set, as the
// Makefile's do.
const testVersion = clitest.Version

func TestMain(m *testing.M) {
	clitest.Main(m, "rustynet-gate", &binary, nil)
}

// changePayload changes one byte of a DSSE envelope's payload and keeps
// its signature.
func changePayload(t *testing.T, data []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	p = bytes.Replace(p, []byte(`"`), []byte(`" `), 1) // the same JSON, other bytes
	env["payload"] = base64.StdEncoding.EncodeToString(p)
	out, _ := json.Marshal(env)
	return out
}

// changeSignature flips a bit of a DSSE envelope's signature.
func changeSignature(t *testing.T, data []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	sig := env["signatures"].([]any)[0].(map[string]any)
	b, err := base64.StdEncoding.DecodeString(sig["sig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	sig["sig"] = base64.StdEncoding.EncodeToString(b)
	out, _ := json.Marshal(env)
	return out
}

// manifestCommit is the commit a bundle's manifest names, and whether the
// working tree had changes.
func manifestCommit(t *testing.T, dir string) (string, bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "manifest.dsse.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Payload []byte }
	var m struct {
		Commit string
		Dirty  bool
	}
	if err := json.Unmarshal(data, &env); err != nil || json.Unmarshal(env.Payload, &m) != nil || m.Commit == "" {
		t.Fatalf("manifest of %s: no commit (%v)", dir, err)
	}
	return m.Commit, m.Dirty
}

// github is a local stand-in for the two GitHub endpoints publish uses: it
// records the last commit status (its state and context) and refuses check
// runs, as GitHub does for a token without the checks permission.
type github struct {
	*httptest.Server
	mu            sync.Mutex
	last, context string
}

func (g *github) state() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

func (g *github) statusContext() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.context
}

func fakeGitHub(t *testing.T) *github {
	g := &github{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /repos/{owner}/{repo}/statuses/{sha}", func(w http.ResponseWriter, r *http.Request) {
		var st struct {
			State   string `json:"state"`
			Context string `json:"context"`
		}
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || r.Header.Get("Authorization") != "Bearer test-token" {
			http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.last, g.context = st.State, st.Context
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":1,"state":%q,"context":%q}`, st.State, st.Context)
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/check-runs", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"message":"Resource not accessible by integration"}`)
	})
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

func gate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return gateEnv(t, nil, args...)
}

// gateStdout runs the binary and returns its stdout alone.
func gateStdout(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// gateEnv runs the binary with env added to this process's environment.
func gateEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func writePolicy(t *testing.T, gates string) string {
	p := filepath.Join(t.TempDir(), "release.yaml")
	os.WriteFile(p, []byte("version: 1\nchannels:\n  nightly:\n    gates: ["+gates+"]\n"), 0o644)
	return p
}

// TestRunVerifyTamper runs the build and architecture gates for real,
// verifies the bundle, and checks every exit status: pass, blocked,
// invalid (tampered, wrong key) and usage.
func TestRunVerifyTamper(t *testing.T) {
	keys := t.TempDir()
	if out, code := gate(t, "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	if fi, _ := os.Stat(filepath.Join(keys, "gate.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("gate.key mode %o, want 600", fi.Mode().Perm())
	}
	key, pub := filepath.Join(keys, "gate.key"), filepath.Join(keys, "gate.pub")

	bundle := filepath.Join(t.TempDir(), "b")
	out, code := gate(t, "run", "--policy", writePolicy(t, "build, architecture"), "--channel", "nightly", "--out", bundle, "--key", key)
	if code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	// The reports run wrote (in another process) are what verify renders.
	if out, code := gate(t, "verify", bundle, "--pubkey", pub); code != 0 || !strings.Contains(out, "PASSED") ||
		!strings.Contains(out, "report.html and report.md: what the evidence renders to") {
		t.Fatalf("verify: exit %d, want 0 with both reports checked\n%s", code, out)
	}
	html, err := os.ReadFile(filepath.Join(bundle, evidence.ReportHTML))
	if err != nil || !bytes.Contains(html, []byte("PASSED")) {
		t.Errorf("report.html: %v", err)
	}
	if out, code := gate(t, "report", bundle, "--format", "md", "--pubkey", pub); code != 0 || !strings.Contains(out, "architecture") {
		t.Errorf("report --format md: exit %d\n%s", code, out)
	}

	// --commit takes the bundle's commit whole, or a short SHA of it.
	commit, _ := manifestCommit(t, bundle)
	short := commit[:6] + "0" // another commit's short SHA
	if commit[6] == '0' {
		short = commit[:6] + "1"
	}
	for _, c := range []struct {
		sha  string
		code int
		want string
	}{
		{commit, 0, "PASSED"},
		{commit[:7], 0, "PASSED"},
		{strings.ToUpper(commit[:12]), 0, "PASSED"},
		{short, 3, "the evidence is about commit " + commit + ", not " + short},
		{commit[:6], 2, "is too short: give at least 7 hex digits"},
		{"HEAD", 2, "want a commit SHA, in hex digits"},
	} {
		if out, code := gate(t, "verify", bundle, "--pubkey", pub, "--commit", c.sha); code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("verify --commit %s: exit %d, want %d saying %q\n%s", c.sha, code, c.code, c.want, out)
		}
	}

	// Wrong key: invalid.
	other := t.TempDir()
	gate(t, "keygen", "--out", other)
	if out, code := gate(t, "verify", bundle, "--pubkey", filepath.Join(other, "gate.pub")); code != 3 || strings.Contains(out, "Found:") ||
		!strings.Contains(out, "signed with another key") {
		t.Errorf("verify with the wrong key: exit %d, want 3 saying it was signed with another key\n%s", code, out)
	}
	// A changed artifact: invalid.
	res := filepath.Join(bundle, "artifacts", "architecture", "violations.json")
	data, _ := os.ReadFile(res)
	os.WriteFile(res, append(data, ' '), 0o644)
	if out, code := gate(t, "verify", bundle, "--pubkey", pub); code != 3 || !strings.Contains(out, "changed") {
		t.Errorf("verify of a changed artifact: exit %d, want 3\n%s", code, out)
	}
	os.WriteFile(res, data, 0o644)

	// Every other kind of file of a bundle, changed or missing: invalid.
	for _, c := range []struct {
		what, file string
		change     func(t *testing.T, data []byte) []byte // nil removes the file
	}{
		{"a gate statement's payload", "statements/architecture.dsse.json", changePayload},
		{"a gate statement's signature", "statements/architecture.dsse.json", changeSignature},
		{"the verdict's payload", "statements/verdict.dsse.json", changePayload},
		{"the manifest's payload", "manifest.dsse.json", changePayload},
		{"the manifest's signature", "manifest.dsse.json", changeSignature},
		{"the policy", "policy/release.yaml", func(_ *testing.T, d []byte) []byte { return append(d, '#') }},
		{"a missing gate statement", "statements/architecture.dsse.json", nil},
		{"a missing verdict", "statements/verdict.dsse.json", nil},
		{"a missing manifest", "manifest.dsse.json", nil},
		{"a missing artifact", "artifacts/architecture/violations.json", nil},
	} {
		dir := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(dir, os.DirFS(bundle)); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, c.file)
		if c.change == nil {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		} else {
			d, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(f, c.change(t, d), 0o644)
		}
		if out, code := gate(t, "verify", dir, "--pubkey", pub); code != 3 || !strings.Contains(out, "invalid") {
			t.Errorf("verify with %s: exit %d, want 3 saying the evidence is invalid\n%s", c.what, code, out)
		}
	}

	// What the file system can hold in place of a bundle's files, and
	// reports that do not say what the evidence says: invalid, at once
	// (a named pipe is not waited on).
	for _, c := range []struct {
		what, file, want string
		replace          func(t *testing.T, p string)
	}{
		{"a forged report.html", "report.html", "report.html is not the report", func(t *testing.T, p string) {
			os.WriteFile(p, []byte("<!doctype html><title>PASSED</title><h1>PASSED: every gate passed</h1>"), 0o644)
		}},
		{"a report.md with a gate dropped", "report.md", "report.md is not the report", func(t *testing.T, p string) {
			d, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.ReplaceAll(d, []byte("architecture"), []byte("")), 0o644)
		}},
		{"report.html a link to /etc/shadow", "report.html", "report.html is a symbolic link", func(t *testing.T, p string) {
			os.Remove(p)
			if err := os.Symlink("/etc/shadow", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"an artifact a link to /dev/zero", "artifacts/architecture/violations.json", "is a symbolic link", func(t *testing.T, p string) {
			os.Remove(p)
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"a named pipe in place of an artifact", "artifacts/architecture/violations.json", "is a named pipe", func(t *testing.T, p string) {
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		dir := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(dir, os.DirFS(bundle)); err != nil {
			t.Fatal(err)
		}
		c.replace(t, filepath.Join(dir, c.file))
		if out, code := gate(t, "verify", dir, "--pubkey", pub); code != 3 || !strings.Contains(out, c.want) {
			t.Errorf("verify with %s: exit %d, want 3 saying %q\n%s", c.what, code, c.want, out)
		}
	}

	// A report refused as not rendered from the evidence is rendered
	// again by report, as the refusal says; then the bundle verifies.
	rerendered := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(rerendered, os.DirFS(bundle)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, format string }{{"report.html", "html"}, {"report.md", "md"}} {
		os.WriteFile(filepath.Join(rerendered, f.name), []byte("forged"), 0o644)
		cmd := exec.Command(binary, "report", rerendered, "--format", f.format, "--pubkey", pub)
		cmd.Stderr = os.Stderr
		data, err := cmd.Output()
		if err != nil {
			t.Fatalf("report --format %s: %v", f.format, err)
		}
		os.WriteFile(filepath.Join(rerendered, f.name), data, 0o644)
	}
	if out, code := gate(t, "verify", rerendered, "--pubkey", pub); code != 0 || !strings.Contains(out, "report.html and report.md: what the evidence renders to") {
		t.Errorf("verify with the reports rendered again by report: exit %d, want 0\n%s", code, out)
	}

	// Judged under the verifier's own policy rather than the bundle's: a
	// bundle that passes the lenient policy it was made under is blocked
	// (exit 1) under one that requires a gate it did not run, and publish
	// judges under the repository's policy, never the bundle's.
	if out, code := gate(t, "verify", bundle, "--pubkey", pub, "--policy", writePolicy(t, "build, architecture")); code != 0 ||
		!strings.Contains(out, "the policy the bundle was made under") {
		t.Errorf("verify under an identical policy: exit %d, want 0 saying it is the bundle's own\n%s", code, out)
	}
	strict := writePolicy(t, "build, architecture, crypto-policy")
	if out, code := gate(t, "verify", bundle, "--pubkey", pub, "--policy", strict); code != 1 || !strings.Contains(out, "BLOCKED") ||
		!regexp.MustCompile(`crypto-policy +missing`).MatchString(out) || !strings.Contains(out, "made under another policy") {
		t.Errorf("verify under a stricter policy: exit %d, want 1 blocked by crypto-policy missing\n%s", code, out)
	}
	gh := fakeGitHub(t)
	commit, dirty := manifestCommit(t, bundle)
	out, code = gateEnv(t, []string{"GITHUB_TOKEN=test-token"}, "publish", bundle, "--pubkey", pub, "--policy", strict,
		"--repo", "rustynet/rustynet", "--sha", commit, "--api-url", gh.URL+"/")
	switch {
	case dirty:
		// Run from a working tree with changes (a developer's): such
		// evidence is not about the commit, and is never published.
		if code != 2 || !strings.Contains(out, "uncommitted changes") || gh.state() != "" {
			t.Errorf("publish of a dirty tree's bundle: exit %d, status %q, want 2 and none\n%s", code, gh.state(), out)
		}
	case code != 1 || gh.state() != "failure" || !strings.Contains(out, "check run skipped"):
		t.Errorf("publish under a stricter policy: exit %d and status %q, want 1 and failure, the check run skipped\n%s", code, gh.state(), out)
	case gh.statusContext() != "rustynet/release-gate/nightly" || !strings.Contains(out, "status rustynet/release-gate/nightly set"):
		// A nightly verdict under the GA context (or the one context all
		// channels once shared) would satisfy the GA branch protection.
		t.Errorf("publish of a nightly bundle set the status context %q, want rustynet/release-gate/nightly\n%s", gh.statusContext(), out)
	}

	// A partial run (--gates): it passes on the gates it ran, says what
	// the channel also requires, verifies as partial, and cannot be
	// published as a verdict on the channel.
	partial := filepath.Join(t.TempDir(), "b2")
	out, code = gate(t, "run", "--policy", writePolicy(t, "build, architecture, crypto-policy"), "--channel", "nightly",
		"--gates", "architecture", "--out", partial, "--key", key)
	if code != exitPartialPass || !strings.Contains(out, "PASSED (partial run)") || !strings.Contains(out, "also requires crypto-policy") {
		t.Errorf("a partial run: exit %d, want %d, saying it is partial and what else the channel requires\n%s", code, exitPartialPass, out)
	}
	if out, code := gate(t, "verify", partial, "--pubkey", pub); code != exitPartialPass || !strings.Contains(out, "partial") ||
		!regexp.MustCompile(`crypto-policy +out-of-scope`).MatchString(out) {
		t.Errorf("verify of a partial bundle: exit %d, want %d, saying partial with crypto-policy out of scope\n%s", code, exitPartialPass, out)
	}
	// --json: what a script reads, for a pass, a partial pass and
	// evidence that cannot be trusted.
	tampered := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(tampered, os.DirFS(bundle)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tampered, "policy", "release.yaml"), []byte("#"), 0o644)
	for _, c := range []struct {
		dir     string
		code    int
		outcome string
		partial bool
	}{{bundle, exitPass, outcomePassed, false}, {partial, exitPartialPass, outcomePartialPass, true}, {tampered, exitInvalid, outcomeInvalid, false}} {
		stdout, code := gateStdout(t, "verify", c.dir, "--pubkey", pub, "--json")
		var vj verdictJSON
		if err := json.Unmarshal([]byte(stdout), &vj); err != nil || code != c.code || vj.Exit != c.code || vj.Outcome != c.outcome || vj.Partial != c.partial {
			t.Errorf("verify --json %s: exit %d, %+v (%v); want exit %d, outcome %s, partial %v\n%s", filepath.Base(c.dir), code, vj, err, c.code, c.outcome, c.partial, stdout)
		}
		if c.code == exitInvalid && vj.Reason == "" {
			t.Errorf("verify --json of invalid evidence gives no reason: %s", stdout)
		}
		if c.partial && !slices.Equal(vj.Scope, []string{"build", "architecture"}) {
			t.Errorf("verify --json of a partial run: scope %v, want [build architecture] (build always runs)", vj.Scope)
		}
	}
	stdout, code := gateStdout(t, "gates", "--json")
	var specs []gateSpecJSON
	if err := json.Unmarshal([]byte(stdout), &specs); err != nil || code != 0 || len(specs) < 7 {
		t.Errorf("gates --json: exit %d, %d gates (%v)\n%s", code, len(specs), err, stdout)
	}
	if md, err := os.ReadFile(filepath.Join(partial, "report.md")); err != nil || !strings.Contains(string(md), "PASSED (partial run)") {
		t.Errorf("the partial run's report does not say it is partial (%v)", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	pubOut, pubCode := gateEnv(t, []string{"GITHUB_TOKEN=unused"}, "publish", partial, "--pubkey", pub, "--repo", "rustynet/rustynet", "--sha", strings.TrimSpace(string(head)))
	if pubCode != 2 || !strings.Contains(pubOut, "partial run") {
		t.Errorf("publish of a partial run: exit %d, want 2 refusing it\n%s", pubCode, pubOut)
	}

	// Usage errors.
	if out, code := gate(t, "run", "--policy", writePolicy(t, "build, fuzzing"), "--channel", "nightly", "--out", t.TempDir(), "--key", key); code != 2 || !strings.Contains(out, "not registered") {
		t.Errorf("a policy naming an unknown gate: exit %d, want 2\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nchannels: [\n"), 0o644)
	if out, code := gate(t, "run", "--policy", bad, "--channel", "nightly", "--out", t.TempDir(), "--key", key); code != 2 || !strings.Contains(out, "bad.yaml:") {
		t.Errorf("malformed YAML: exit %d, want 2 with the file and line\n%s", code, out)
	}
	if _, code := gate(t, "verify", bundle); code != 2 {
		t.Errorf("verify without --pubkey: exit %d, want 2", code)
	}
}
