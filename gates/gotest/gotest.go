// Package gotest runs `go test -json` for gates and reads its events: which
// tests passed and failed, and how far the run has got.
package gotest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/procgroup"
)

// Event is one line of `go test -json`.
type Event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// Result is what a run of `go test -json` reported.
type Result struct {
	Passed, Failed, Skipped []string // "package.Test" (subtests included)
	// PackagesFailed lists packages that failed outside any test (build
	// failures, TestMain).
	PackagesFailed []string
	Raw            []byte
}

// OK reports whether nothing failed.
func (r *Result) OK() bool { return len(r.Failed) == 0 && len(r.PackagesFailed) == 0 }

// Run runs `go test -json ARGS` in the gate's repository, with extra
// environment, reporting progress as packages finish (total is the number
// of packages expected; 0 for no progress).
func Run(ctx context.Context, r *gates.Run, env []string, total int, args ...string) (*Result, error) {
	cmd := r.Command(ctx, "go", append([]string{"test", "-json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(&out, pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		finished := map[string]bool{}
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
				finished[e.Package] = true
				if total > 0 {
					r.Progress(float64(len(finished)) / float64(total))
				}
			}
		}
	}()
	runErr := cmd.Run()
	// A test that started a process and did not stop it leaves it in the
	// command's process group: say so, and end it.
	if left := procgroup.Left(cmd); len(left) > 0 {
		fmt.Fprintf(r.Log, "go test left %d processes running; killed: %s\n", len(left), strings.Join(left, ", "))
		procgroup.Kill(cmd)
	}
	pw.Close()
	<-done
	if ctx.Err() != nil {
		// Interrupted or out of time: the tests killed mid-run say
		// nothing of the code (a failure among them is the kill's).
		return nil, ctx.Err()
	}
	res := Parse(out.Bytes())
	if runErr != nil && res.OK() {
		return nil, fmt.Errorf("go test: %v", runErr)
	}
	return res, nil
}

// Parse reads `go test -json` output.
func Parse(raw []byte) *Result {
	res := &Result{Raw: raw}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		name := e.Package + "." + e.Test
		switch {
		case e.Test == "" && e.Action == "fail":
			res.PackagesFailed = append(res.PackagesFailed, e.Package)
		case e.Test == "":
		case e.Action == "pass":
			res.Passed = append(res.Passed, name)
		case e.Action == "fail":
			res.Failed = append(res.Failed, name)
		case e.Action == "skip":
			res.Skipped = append(res.Skipped, name)
		}
	}
	for _, l := range [][]string{res.Passed, res.Failed, res.Skipped} {
		sort.Strings(l)
	}
	// A package fails when any of its tests does; keep only those that
	// failed on their own.
	var own []string
	for _, p := range res.PackagesFailed {
		prefix := p + "."
		if !anyPrefix(res.Failed, prefix) {
			own = append(own, p)
		}
	}
	res.PackagesFailed = own
	return res
}

func anyPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
