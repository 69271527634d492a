package gen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rustynet/rustynet/internal/atomicfile"
	"github.com/rustynet/rustynet/internal/slo"
)

// File is one generated file.
type File struct {
	Path string // relative to the repository root
	Data []byte
}

// Files generates every file slogen writes: the SLO rule files, the SLO
// catalogue, and the alert catalogue (from the rule files as they will be,
// the generated ones included). The alerts must pass CheckAlerts.
func Files(ctx context.Context, root string) ([]File, error) {
	specs, err := slo.LoadSpecs(root)
	if err != nil {
		return nil, err
	}
	rules, err := Generate(ctx, specs)
	if err != nil {
		return nil, err
	}
	var out []File
	for _, r := range rules {
		out = append(out, File{Path: r.Path, Data: r.Data})
	}
	out = append(out, File{Path: slo.SLOCatalogue, Data: Catalogue(rules)})
	// The alert catalogue reads the rule files: those generated now, over
	// what is on disk, in a scratch copy of the rules directory.
	tmp, err := os.MkdirTemp("", "slogen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, slo.RulesDir), 0o755); err != nil {
		return nil, err
	}
	existing, err := filepath.Glob(filepath.Join(root, slo.RulesDir, "*.yml"))
	if err != nil {
		return nil, err
	}
	for _, f := range existing {
		if strings.HasPrefix(filepath.Base(f), "slo-") {
			continue // generated: replaced by this run's
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, slo.RulesDir, filepath.Base(f)), data, 0o644); err != nil {
			return nil, err
		}
	}
	for _, r := range rules {
		if err := os.WriteFile(filepath.Join(tmp, filepath.FromSlash(r.Path)), r.Data, 0o644); err != nil {
			return nil, err
		}
	}
	alerts, err := slo.LoadAlerts(tmp)
	if err != nil {
		return nil, err
	}
	if errs := slo.CheckAlerts(root, alerts); len(errs) > 0 {
		return nil, fmt.Errorf("%d alert problems, first: %w", len(errs), errs[0])
	}
	out = append(out, File{Path: slo.AlertCatalogue, Data: slo.RenderAlertCatalogue(alerts)})
	return out, nil
}

// WriteFiles writes the files under root, each atomically, and removes
// generated rule files (slo-*.yml) that no spec produces any more.
func WriteFiles(root string, files []File) error {
	keep := map[string]bool{}
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
		keep[filepath.Clean(p)] = true
	}
	old, err := filepath.Glob(filepath.Join(root, slo.RulesDir, "slo-*.yml"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if !keep[filepath.Clean(p)] {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}
