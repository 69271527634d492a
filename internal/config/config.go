// Package config reads a daemon's YAML config file. Its keys are the
// daemon's own flag names (listen, data-dir, log-level, ...) and its values
// what the flag takes, so there is one name and one meaning for each
// setting however it is given; a list is a flag given several times. A
// flag given on the command line overrides the file.
//
// Decoding is strict: an unknown key, a nested map, a second document or a
// value the flag refuses is an *Error naming the file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// MaxBytes bounds a config file.
const MaxBytes = 1 << 20

// Error is a refused config file: where and why.
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

// Entry is one setting of a file: a flag's name, its values (one for a
// scalar, each of a list's) and the line it is on.
type Entry struct {
	Key    string
	Values []string
	Line   int
}

// Parse decodes a config file: a map of flag names to scalars or lists of
// scalars.
func Parse(file string, data []byte) ([]Entry, error) {
	if len(data) > MaxBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("%d bytes, at most %d allowed", len(data), MaxBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file sets nothing
		}
		return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		return nil, &Error{File: file, Line: line, Msg: "a config file is one YAML document; found a second"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Line, Msg: "want a map of settings (flag names) to values"}
	}
	var out []Entry
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, &Error{File: file, Line: k.Line, Msg: "a key must be a setting's name"}
		}
		if first, ok := seen[k.Value]; ok {
			return nil, &Error{File: file, Line: k.Line, Msg: fmt.Sprintf("%s is set twice (first on line %d)", k.Value, first)}
		}
		seen[k.Value] = k.Line
		e := Entry{Key: k.Value, Line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				return nil, &Error{File: file, Line: v.Line, Msg: fmt.Sprintf("%s has no value", k.Value)}
			}
			e.Values = []string{v.Value}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
					return nil, &Error{File: file, Line: item.Line, Msg: fmt.Sprintf("%s: a list holds values, not %s", k.Value, kindName(item))}
				}
				e.Values = append(e.Values, item.Value)
			}
		default:
			return nil, &Error{File: file, Line: v.Line, Msg: fmt.Sprintf("%s: want a value or a list of values, not %s", k.Value, kindName(v))}
		}
		out = append(out, e)
	}
	return out, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return "a value"
}

// Load reads and parses a config file.
func Load(file string) ([]Entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, err
	}
	return Parse(file, data)
}

// Apply sets, from the file's entries, every flag of fs the command line
// did not set (pflag's Changed, taken before the first entry is applied).
// skip lists flags a file may not set (the file's own flag, actions such
// as --version): naming one is refused too.
func Apply(file string, entries []Entry, fs *pflag.FlagSet, skip ...string) error {
	onCommandLine := CommandLine(fs)
	for _, e := range entries {
		f := fs.Lookup(e.Key)
		if f == nil || containsString(skip, e.Key) {
			return &Error{File: file, Line: e.Line, Msg: fmt.Sprintf("unknown setting %q%s", e.Key, suggest(fs, e.Key, skip))}
		}
		if onCommandLine[e.Key] {
			continue // the command line wins
		}
		if len(e.Values) > 1 && !repeatable(f) {
			return &Error{File: file, Line: e.Line, Msg: fmt.Sprintf("%s takes one value, not a list", e.Key)}
		}
		for _, v := range e.Values {
			if err := fs.Set(e.Key, v); err != nil {
				return &Error{File: file, Line: e.Line, Msg: fmt.Sprintf("%s: %q: %s", e.Key, v, want(f, err))}
			}
		}
	}
	return nil
}

// Value returns the last value the entries give key, if any.
func Value(entries []Entry, key string) (string, bool) {
	for _, e := range entries {
		if e.Key == key && len(e.Values) > 0 {
			return e.Values[len(e.Values)-1], true
		}
	}
	return "", false
}

// repeatable reports whether a flag accumulates values (a pflag.Value
// whose Set appends, which says so with IsRepeatable, or one of pflag's
// slices).
func repeatable(f *pflag.Flag) bool {
	if r, ok := f.Value.(interface{ IsRepeatable() bool }); ok {
		return r.IsRepeatable()
	}
	_, ok := f.Value.(pflag.SliceValue)
	return ok
}

// want says what a flag takes, for a value it refused: the parse errors
// of Go's strconv and time packages ("strconv.ParseInt: parsing ...")
// are not the user's words.
func want(f *pflag.Flag, err error) string {
	switch f.Value.Type() {
	case "bool":
		return "want true or false"
	case "int", "int8", "int16", "int32", "int64":
		return "want a whole number"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "want a whole number, 0 or more"
	case "float32", "float64":
		return "want a number"
	case "duration":
		return "want a duration such as 30s or 5m"
	}
	return err.Error()
}

// suggest names the closest flag to a misspelt key.
func suggest(fs *pflag.FlagSet, key string, skip []string) string {
	best, dist := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if containsString(skip, f.Name) {
			return
		}
		if d := levenshtein(strings.ReplaceAll(key, "_", "-"), f.Name); d < dist {
			best, dist = f.Name, d
		}
	})
	if best == "" {
		return " (the keys are the daemon's flag names; see --help)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
