package policies

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The sign-off roles of a release, in the order a checklist lists them.
const (
	RoleSecurity    = "security"
	RoleCompliance  = "compliance"
	RoleOperations  = "operations"
	RoleEngineering = "engineering"
)

// Roles are the roles that sign a release off. This is the one list of
// them: the checklist, the release policy's signers and the channels'
// required sign-offs are checked against it.
var Roles = []string{RoleSecurity, RoleCompliance, RoleOperations, RoleEngineering}

// BundleSource is the pseudo-gate a checklist item names to be proved by
// the bundle's signed manifest rather than by a gate's evidence: whether
// it was signed with a release key, from a clean tree, judged today.
const BundleSource = "bundle"

// BundleFields are the manifest fields an item on BundleSource may name.
var BundleFields = []string{"development_key", "dirty", "effective_time", "scope"}

// Checklist is launch-checklist.yaml: what each role attests before a
// channel that requires its sign-off can pass. An automated item is proved
// by a field of a gate's signed evidence, read again by whoever signs and
// by every verify; a manual item is a person's attestation, given when
// they sign.
type Checklist struct {
	Version int                        `yaml:"version"`
	Roles   map[string][]ChecklistItem `yaml:"roles"`

	// File and Digest identify the checklist as loaded.
	File   string `yaml:"-"`
	Digest string `yaml:"-"`
	Raw    []byte `yaml:"-"`
}

// ChecklistItem is one line of the checklist.
type ChecklistItem struct {
	ID   Str `yaml:"id"`
	What Str `yaml:"what"`
	// Gate and Field name the evidence that proves an automated item:
	// "status" (the gate's own status), or "details.KEY[.KEY...]" (a
	// field of the details its statement signed), or, on the gate
	// "bundle", a field of the signed manifest (BundleFields).
	Gate  Str `yaml:"gate"`
	Field Str `yaml:"field"`
	// Want is what the field must hold: "pass" (status only), "true",
	// "false", "empty", "absent", or a comparison "== N", ">= N", "<= N".
	Want Str `yaml:"want"`
	// Manual marks an item a person attests.
	Manual bool `yaml:"manual"`
}

// Automated reports whether the item is proved by evidence.
func (it ChecklistItem) Automated() bool { return !it.Manual }

var (
	itemIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	fieldRE  = regexp.MustCompile(`^(status|details(\.[A-Za-z0-9_-]+)+|[a-z_]+)$`)
	compRE   = regexp.MustCompile(`^(==|>=|<=) (-?[0-9]+(\.[0-9]+)?)$`)
)

// Want is a parsed ChecklistItem.Want.
type Want struct {
	Op    string // pass, true, false, empty, absent, ==, >=, <=
	Value float64
}

// ParseWant parses a want: see ChecklistItem.Want.
func ParseWant(s string) (Want, error) {
	switch s {
	case "pass", "true", "false", "empty", "absent":
		return Want{Op: s}, nil
	}
	if m := compRE.FindStringSubmatch(s); m != nil {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return Want{}, err
		}
		return Want{Op: m[1], Value: v}, nil
	}
	return Want{}, fmt.Errorf("want %q: one of pass, true, false, empty, absent, or == N, >= N, <= N", trunc(s))
}

// EvidenceFields says whether a gate is registered and which top-level
// detail keys its evidence holds (gates.Spec.Fields): what a checklist
// item may name.
type EvidenceFields func(gate string) (fields []string, ok bool)

// ParseChecklist decodes and checks launch-checklist.yaml. fields says
// which gates exist and what their evidence holds; an item naming a gate
// or a field that does not exist is refused with its line.
func ParseChecklist(file string, data []byte, fields EvidenceFields) (*Checklist, error) {
	var c Checklist
	if err := decode(file, data, &c); err != nil {
		return nil, err
	}
	c.File, c.Digest, c.Raw = file, Digest(data), data
	if c.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", c.Version)}
	}
	if len(c.Roles) == 0 {
		return nil, &Error{File: file, Line: 1, Msg: "no roles"}
	}
	ids := map[string]int{}
	for _, role := range sortedKeys(c.Roles) {
		items := c.Roles[role]
		if !slices.Contains(Roles, role) {
			return nil, &Error{File: file, Msg: fmt.Sprintf("role %q: want one of %v", trunc(role), Roles)}
		}
		if len(items) == 0 {
			return nil, &Error{File: file, Msg: fmt.Sprintf("role %s has no item: a sign-off must attest something", role)}
		}
		for _, it := range items {
			if err := checkItem(file, it, fields); err != nil {
				return nil, err
			}
			if first, ok := ids[it.ID.Value]; ok {
				return nil, &Error{File: file, Line: it.ID.Line, Msg: fmt.Sprintf("item %s is listed twice (first on line %d)", it.ID.Value, first)}
			}
			ids[it.ID.Value] = it.ID.Line
		}
	}
	return &c, nil
}

func checkItem(file string, it ChecklistItem, fields EvidenceFields) error {
	line := it.ID.Line
	switch {
	case !itemIDRE.MatchString(it.ID.Value):
		return &Error{File: file, Line: line, Msg: fmt.Sprintf("item id %q: want lower-case letters, digits and -", trunc(it.ID.Value))}
	case strings.TrimSpace(it.What.Value) == "":
		return &Error{File: file, Line: line, Msg: fmt.Sprintf("item %s says nothing of what it attests (what)", it.ID.Value)}
	}
	if it.Manual {
		if it.Gate.Value != "" || it.Field.Value != "" || it.Want.Value != "" {
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("item %s is manual and names evidence too: a manual item is a person's attestation, an automated one names its gate, field and want", it.ID.Value)}
		}
		return nil
	}
	if it.Gate.Value == "" || it.Field.Value == "" || it.Want.Value == "" {
		return &Error{File: file, Line: line, Msg: fmt.Sprintf("item %s: an automated item names its gate, field and want (or is manual: true)", it.ID.Value)}
	}
	want, err := ParseWant(it.Want.Value)
	if err != nil {
		return &Error{File: file, Line: it.Want.Line, Msg: fmt.Sprintf("item %s: %v", it.ID.Value, err)}
	}
	f := it.Field.Value
	if it.Gate.Value == BundleSource {
		if !slices.Contains(BundleFields, f) {
			return &Error{File: file, Line: it.Field.Line, Msg: fmt.Sprintf("item %s: the bundle's manifest has no field %q; it has %v", it.ID.Value, trunc(f), BundleFields)}
		}
		return nil
	}
	known, ok := fields(it.Gate.Value)
	if !ok {
		return &Error{File: file, Line: it.Gate.Line, Msg: fmt.Sprintf("item %s names gate %q, which is not registered", it.ID.Value, trunc(it.Gate.Value))}
	}
	if !fieldRE.MatchString(f) || (f != "status" && !strings.HasPrefix(f, "details.")) {
		return &Error{File: file, Line: it.Field.Line, Msg: fmt.Sprintf("item %s: field %q: want status or details.KEY", it.ID.Value, trunc(f))}
	}
	if f == "status" {
		if want.Op != "pass" {
			return &Error{File: file, Line: it.Want.Line, Msg: fmt.Sprintf("item %s: a gate's status can only be wanted to pass", it.ID.Value)}
		}
		return nil
	}
	if want.Op == "pass" {
		return &Error{File: file, Line: it.Want.Line, Msg: fmt.Sprintf("item %s: want pass is for a gate's status, not %s", it.ID.Value, f)}
	}
	key := strings.Split(f, ".")[1]
	if !slices.Contains(known, key) {
		return &Error{File: file, Line: it.Field.Line, Msg: fmt.Sprintf("item %s: the %s gate's evidence has no field details.%s; it declares %v", it.ID.Value, it.Gate.Value, trunc(key), known)}
	}
	return nil
}

// LoadChecklist reads and checks a checklist file.
func LoadChecklist(path string, fields EvidenceFields) (*Checklist, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseChecklist(path, data, fields)
}

// Items lists a role's items.
func (c *Checklist) Items(role string) []ChecklistItem { return c.Roles[role] }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
