// Package policies loads the release-gating policies kept beside it as
// YAML: release.yaml (channels, the gates each requires, waivers) and
// crypto.yaml (every algorithm and option the product uses, its status and
// dates, insecure compatibility modes and their exceptions).
//
// Decoding is strict: an unknown field, a wrong type or a bad value is
// refused with the file, line and reason. Waivers and exceptions carry an
// owner and an expiry and lapse on their own.
package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxPolicyBytes bounds a policy file.
const MaxPolicyBytes = 1 << 20

// Error is a refused policy: where and why.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Str is a scalar with the line it was on, so later checks can say where.
type Str struct {
	Value string
	Line  int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Str) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, Msg: "want a string"}
	}
	s.Value, s.Line = n.Value, n.Line
	return nil
}

// Time is a timestamp (RFC 3339, or a date YYYY-MM-DD meaning its start in
// UTC) with its line.
type Time struct {
	time.Time
	Line int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Time) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, Msg: "want a date (YYYY-MM-DD) or an RFC 3339 time"}
	}
	t.Line = n.Line
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if v, err := time.Parse(layout, n.Value); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return &Error{Line: n.Line, Msg: fmt.Sprintf("%q is not a date (YYYY-MM-DD) or an RFC 3339 time", trunc(n.Value))}
}

var (
	nameRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*(/[a-z0-9=._-]+)*$`)
	ownerRE = regexp.MustCompile(`^\S+@\S+$|^[a-z][a-z0-9-]*$`)
	lineRE  = regexp.MustCompile(`line (\d+)`)
	typeRE  = regexp.MustCompile(`(in type|into) \[?\]?\*?\w+\.\w+`)
)

// Decode reads one YAML document strictly into v (unknown fields refused),
// as the policies are read: a refusal is an *Error with the file and, where
// the YAML says, the line. Other packages' YAML files use it too.
func Decode(file string, data []byte, v any) error { return decode(file, data, v) }

// decode reads one YAML document strictly into v.
func decode(file string, data []byte, v any) error {
	if len(data) > MaxPolicyBytes {
		return &Error{File: file, Msg: fmt.Sprintf("%d bytes, at most %d allowed", len(data), MaxPolicyBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return &Error{File: file, Msg: "the policy is empty"}
		}
		return yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return yamlError(file, err)
		}
		return &Error{File: file, Line: extra.Line, Msg: "a policy is one YAML document; found a second"}
	}
	return nil
}

func yamlError(file string, err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		pe.File = file
		return pe
	}
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = typeRE.ReplaceAllString(msg, "here")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
	}
	return &Error{File: file, Line: line, Msg: msg}
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Digest returns the hex SHA-256 of data, the identity of a policy file.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// readFile reads a policy file, bounded.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	return data, nil
}

// MaxHorizon is how far ahead a waiver or an exception may expire: one
// that must last longer is renewed, by a commit that says so, before it
// lapses.
const MaxHorizon = 90 * 24 * time.Hour

// checkHorizon refuses an expiry more than MaxHorizon after now.
func checkHorizon(file, what string, expires Time, now time.Time) error {
	if expires.Sub(now) > MaxHorizon {
		return &Error{File: file, Line: expires.Line, Msg: fmt.Sprintf("%s expires %s, more than %d days after %s: renew it closer to its end instead",
			what, expires.Format(time.DateOnly), int(MaxHorizon.Hours()/24), now.UTC().Format(time.DateOnly))}
	}
	return nil
}

// checkOwned validates the owner, reason and expiry every waiver and
// exception must have.
func checkOwned(file string, line int, owner, reason Str, expires Time) error {
	switch {
	case owner.Value == "":
		return &Error{File: file, Line: line, Msg: "no owner: every waiver and exception names who answers for it"}
	case !ownerRE.MatchString(owner.Value):
		return &Error{File: file, Line: owner.Line, Msg: fmt.Sprintf("owner %q: want an email address or a team name", trunc(owner.Value))}
	case strings.TrimSpace(reason.Value) == "":
		return &Error{File: file, Line: line, Msg: "no reason"}
	case expires.IsZero():
		return &Error{File: file, Line: line, Msg: "no expiry: waivers and exceptions must lapse on their own"}
	}
	return nil
}

// Duration is a Go duration ("90s", "5m") with its line.
type Duration struct {
	D    time.Duration
	Line int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, Msg: "want a duration such as 90s or 5m"}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &Error{Line: n.Line, Msg: fmt.Sprintf("%q is not a duration such as 90s or 5m", trunc(n.Value))}
	}
	d.D, d.Line = v, n.Line
	return nil
}

func isChannel(ch string) bool {
	for _, c := range knownChannels {
		if c == ch {
			return true
		}
	}
	return false
}

// LoadDir reads every root/dir/*.yaml with parse, sorted by name (each file
// named dir/NAME.yaml to parse). A directory with none is an error: a gate
// reading it would prove nothing.
func LoadDir[T any](root, dir string, parse func(file string, data []byte) (T, error)) ([]T, error) {
	files, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files (*.yaml) in %s", dir)
	}
	sort.Strings(files)
	var out []T
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, err
		}
		v, err := parse(filepath.ToSlash(filepath.Join(dir, filepath.Base(f))), data)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
