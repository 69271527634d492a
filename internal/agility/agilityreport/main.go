// Command agilityreport runs the backend conformance suite and writes the
// backend agility report (make agility-report).
//
//	go run ./internal/agility/agilityreport -out documents/agility/backend-agility.md [-in go-test.json]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/agility"
	"github.com/rustynet/rustynet/internal/atomicfile"
	"github.com/rustynet/rustynet/internal/machine"
	suite "github.com/rustynet/rustynet/node/backend/conformance"
)

func main() {
	out := flag.String("out", "documents/agility/backend-agility.md", "where to write the report")
	in := flag.String("in", "", "read `go test -json` output from this file instead of running the suite")
	flag.Parse()
	if err := run(*out, *in); err != nil {
		fmt.Fprintln(os.Stderr, "agilityreport:", err)
		os.Exit(1)
	}
}

func run(out, in string) error {
	// -p 1: one backend at a time, so that each measures its raw baseline
	// and its own throughput without the other loading the machine.
	args := []string{"test", "-json", "-p", "1", "-count=1", "-timeout", "20m", "-run", "^TestConformance$", "./node/backend/..."}
	command := "go " + strings.Join(args, " ")
	var raw []byte
	var testErr error
	var tested string
	if in != "" {
		var err error
		if raw, err = os.ReadFile(in); err != nil {
			return err
		}
		command = "(from " + in + ")"
		// The tree now need not be the one that produced the file.
		tested = "unknown (results read from " + in + ")"
	} else {
		// The commit is read before the run, which builds from the tree
		// from then on; a commit made during the run was not (or not
		// wholly) tested, so a change is named as one.
		tested = commit()
		cmd := exec.Command("go", args...)
		// The suite needs root; make a missing privilege a failure, not a
		// skip that would read as "not run".
		cmd.Env = append(os.Environ(), "RUSTYNET_REQUIRE=root")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, os.Stderr
		testErr = cmd.Run()
		raw = buf.Bytes()
		if after := commit(); after != tested {
			tested += " (changed during the run: " + after + " at its end)"
		}
	}
	rep, err := agility.Parse(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	// What each backend claims decides the cases it must pass, as in the
	// conformance gate; the suite does not run the others on it. With -in
	// the claims are this tree's.
	list, err := exec.Command("go", "run", "./cmd/rustynetd", "--list-backends").Output()
	if err != nil {
		return fmt.Errorf("rustynetd --list-backends: %w", err)
	}
	_, claims := agility.ParseBackends(string(list))
	for _, r := range rep.Results {
		r.Required = suite.CaseNamesFor(slices.Contains(claims[r.Backend], "preshared-keys"))
	}
	rep.Env = machine.Describe()
	rep.Generated = time.Now()
	rep.Command = command
	rep.Commit = tested
	var doc bytes.Buffer
	if err := rep.Markdown(&doc); err != nil {
		return err
	}
	if err := os.MkdirAll(dirOf(out), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(out, doc.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	for _, r := range rep.Results {
		if !r.Passed(rep.Order) {
			return fmt.Errorf("backend %s does not pass the suite (see %s)", r.Backend, out)
		}
	}
	if testErr != nil {
		return fmt.Errorf("go test: %w", testErr)
	}
	return nil
}

func commit() string {
	sha, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(sha))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		s += " (with uncommitted changes)"
	}
	return s
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}
