package cryptopolicy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"

	"github.com/rustynet/rustynet/internal/procgroup"
)

// quicPackage is the QUIC backend, relative to the repository root.
const quicPackage = "./node/backend/quic/"

// pinTests are the QUIC backend's own tests of its X25519MLKEM768 pin, and
// what each proves.
var pinTests = []struct{ name, proves string }{
	{"TestClassicalRefused", "a peer offering only X25519 is refused, dialing the backend and dialed by it, and the same peer offering X25519MLKEM768 connects"},
	{"TestCheckState", "checkState, run inside every handshake and on every established connection, refuses TLS 1.2 and every key exchange but X25519MLKEM768"},
}

// probeQUICPin runs the QUIC backend's tests of its X25519MLKEM768 pin in
// the repository at root and judges their outcome. It returns an error
// only when the tests could not be run (they did not build).
func probeQUICPin(ctx context.Context, rep *report, root string) error {
	names := make([]string, len(pinTests))
	for i, t := range pinTests {
		names[i] = t.name
	}
	args := []string{"test", "-count=1", "-json", "-run", "^(" + strings.Join(names, "|") + ")$", quicPackage}
	cmd := exec.CommandContext(ctx, "go", args...)
	procgroup.Set(cmd) // the test binary dies with it
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	fmt.Fprintf(rep.log, "$ go %s\n", strings.Join(args, " "))
	out, err := cmd.Output()
	if stderr.Len() > 0 {
		fmt.Fprintf(rep.log, "%s", stderr.Bytes())
	}
	return judgePin(rep, out, err)
}

// testEvent is a line of `go test -json` (test2json).
type testEvent struct {
	Action string
	Test   string
	Output string
}

// judgePin reads the `go test -json` output of the pin's tests: each must
// have run and passed. A test that failed, was skipped or did not run (it
// was renamed or removed) leaves the pin unproven, and fails the check.
// Output with no test at all and a failed run is an error: the tests did
// not build.
func judgePin(rep *report, out []byte, runErr error) error {
	final := map[string]string{}
	output := map[string][]string{}
	ran := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // a build line, not an event
		}
		if e.Test == "" {
			output[""] = append(output[""], e.Output) // the package's and the build's
			continue
		}
		ran = true
		top, _, _ := strings.Cut(e.Test, "/")
		switch e.Action {
		case "output":
			output[top] = append(output[top], e.Output)
		case "pass", "fail", "skip":
			if e.Test == top {
				final[top] = e.Action
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("go test output: %w", err)
	}
	if !ran && runErr != nil {
		return fmt.Errorf("go test %s: %w: %s", quicPackage, runErr, excerpt(output[""]))
	}
	for _, t := range pinTests {
		switch final[t.name] {
		case "pass":
			rep.add("quic-pin", true, "%s passed: %s", t.name, t.proves)
		case "fail":
			rep.add("quic-pin", false, "%s failed, so the pin is broken (%s): %s", t.name, t.proves, excerpt(output[t.name]))
		case "skip":
			rep.add("quic-pin", false, "%s was skipped, so the pin is unproven (%s): %s", t.name, t.proves, excerpt(output[t.name]))
		default:
			rep.add("quic-pin", false, "%s did not run in %s (renamed or removed?), so the pin is unproven: it must show that %s", t.name, quicPackage, t.proves)
		}
	}
	return nil
}

// excerpt keeps the lines of a test's output that say something, bounded.
func excerpt(lines []string) string {
	var keep []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		keep = append(keep, l)
	}
	s := strings.Join(keep, " | ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
