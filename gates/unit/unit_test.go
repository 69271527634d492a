package unit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/evidence"
	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/policies"
)

// TestEveryFailureLogged: the gate's reason names the first few failed
// tests; its log names every one, so that neither an auditor nor a seeded
// regression's blocked_by loses the sixth.
func TestEveryFailureLogged(t *testing.T) {
	// The gate's own needs, or it reports itself missing.
	require.Root(t)
	require.Docker(t)
	require.Command(t, "wg")
	require.Command(t, "iperf3")
	root := t.TempDir()
	src := "package m\n\nimport \"testing\"\n\nfunc TestPasses(t *testing.T) {}\n"
	var failing []string
	for i := range 7 {
		name := fmt.Sprintf("TestFails%d", i)
		failing = append(failing, "example.com/m."+name)
		src += fmt.Sprintf("\nfunc %s(t *testing.T) { t.Fatal(\"seeded\") }\n", name)
	}
	for name, data := range map[string]string{"go.mod": "module example.com/m\n\ngo 1.26\n", "m_test.go": src} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var reg gates.Registry
	Register(&reg)
	pol, err := policies.ParseRelease("release.yaml", []byte("version: 1\nchannels:\n  nightly:\n    gates: [unit]\n"), reg.Has)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if _, err := evidence.Keygen(keys, evidence.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadSigner(filepath.Join(keys, evidence.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	o, err := gates.Execute(context.Background(), gates.Options{Registry: &reg, Policy: pol, Channel: "nightly", Out: out, Root: root,
		Signer: signer, Commit: "0123456789abcdef0123456789abcdef01234567", Version: "test", Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var res evidence.GateResult
	for _, r := range o.Results {
		if r.Gate == "unit" {
			res = r
		}
	}
	if res.Status != evidence.StatusFail {
		t.Fatalf("unit gate on 7 failing tests: %s (%s), want fail", res.Status, res.Reason)
	}
	log, err := os.ReadFile(filepath.Join(out, "artifacts", "unit", "log.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range failing {
		if !strings.Contains(string(log), "FAIL "+name+"\n") {
			t.Errorf("the log does not name %s", name)
		}
	}
}

// TestCoveredTestsAreWhereTheGateRunsThem: every test the unit gate skips
// is defined only where its covering gate runs it, that gate is a gate of
// every channel, and the skip pattern names exactly those tests.
func TestCoveredTestsAreWhereTheGateRunsThem(t *testing.T) {
	root := "../.."
	rel, err := policies.LoadRelease(filepath.Join(root, "policies/release.yaml"), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		for _, c := range Covered {
			if !strings.Contains(string(data), "\nfunc "+c.Test+"(") {
				continue
			}
			found[c.Test]++
			if !strings.HasPrefix(filepath.ToSlash(dir)+"/", strings.TrimSuffix(c.Dir, "/")+"/") {
				t.Errorf("%s is defined in %s, outside %s where the %s gate runs it: the unit gate would skip it unseen", c.Test, path, c.Dir, c.Gate)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Covered {
		if found[c.Test] == 0 {
			t.Errorf("%s (covered by %s) is defined nowhere: drop it from Covered", c.Test, c.Gate)
		}
		for _, ch := range policies.Channels {
			gs, err := rel.Gates(ch)
			if err != nil || !slices.Contains(gs, c.Gate) {
				t.Errorf("channel %s does not run %s, which the unit gate leaves %s to", ch, c.Gate, c.Test)
			}
		}
	}
	re := regexp.MustCompile(skipPattern())
	for _, name := range []string{"TestConformance", "TestDRRegionLossShort", "TestDrills"} {
		if !re.MatchString(name) {
			t.Errorf("the skip pattern %s misses %s", skipPattern(), name)
		}
	}
	for _, name := range []string{"TestConformanceX", "TestDR", "TestDrillsOf", "XTestDrills"} {
		if re.MatchString(name) {
			t.Errorf("the skip pattern %s matches %s", skipPattern(), name)
		}
	}
}
