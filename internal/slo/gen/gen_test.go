package gen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/internal/slo"
)

const root = "../../.."

// TestGeneratedFilesFresh fails when a generated file (rules, catalogues)
// differs from what the specs and rule files produce now.
func TestGeneratedFilesFresh(t *testing.T) {
	files, err := Files(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("generated %d files, want the rules of every spec and two catalogues", len(files))
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil {
			t.Errorf("%s: %v (run `make rules`)", f.Path, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s is stale: it differs from what %s and %s generate; run `make rules` and commit the result", f.Path, slo.SpecDir, slo.RulesDir)
		}
	}
	// No generated rule file without its spec.
	have, _ := filepath.Glob(filepath.Join(root, slo.RulesDir, "slo-*.yml"))
	for _, p := range have {
		rel := slo.RulesDir + "/" + filepath.Base(p)
		found := false
		for _, f := range files {
			found = found || f.Path == rel
		}
		if !found {
			t.Errorf("%s has no spec in %s any more; run `make rules`", rel, slo.SpecDir)
		}
	}
}

// TestSlothVersionIsGoMods keeps SlothVersion, which the generated files
// name, the version go.mod builds them with.
func TestSlothVersionIsGoMods(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "github.com/slok/sloth "+SlothVersion+"\n") {
		t.Fatalf("go.mod does not require github.com/slok/sloth %s; update SlothVersion and run `make rules`", SlothVersion)
	}
}

// TestGenerateRefusesInvalidSLO: what only Sloth's validation sees (a
// query without the window, an objective over 100) is refused too, naming
// the file and the SLO.
func TestGenerateRefusesInvalidSLO(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"query without window", "sum(rate(x_total[{{.window}}]))", "sum(rate(x_total[5m]))"},
		{"objective over 100", "objective: 99.9", "objective: 100.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := slo.ParseSpec("slos/bad.yaml", []byte(strings.Replace(goodSpec, tc.from, tc.to, 1)))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = Generate(context.Background(), []slo.Spec{s})
			if err == nil {
				t.Fatal("generated rules from an invalid SLO")
			}
			if !strings.Contains(err.Error(), "slos/bad.yaml") || !strings.Contains(err.Error(), "svc-avail") {
				t.Fatalf("error %q does not name the file and the SLO", err)
			}
		})
	}
}

// goodSpec is the spec package slo's tests accept.
var goodSpec = func() string {
	data, err := os.ReadFile("../testdata/spec.yaml")
	if err != nil {
		panic(err)
	}
	return string(data)
}()
