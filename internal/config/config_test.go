package config

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }
func (l *list) IsRepeatable() bool { return true }
func (l *list) Type() string       { return "strings" }

func flags() (*pflag.FlagSet, *string, *int, *bool, *time.Duration, *list) {
	fs := pflag.NewFlagSet("d", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", ":8443", "")
	conns := fs.Int("max-conns", 10, "")
	loop := fs.Bool("allow-loopback", false, "")
	wait := fs.Duration("wait", time.Second, "")
	var sans list
	fs.Var(&sans, "tls-san", "")
	fs.Bool("version", false, "")
	return fs, listen, conns, loop, wait, &sans
}

// TestApply: the file sets what the command line did not; the command
// line wins; a list fills a repeatable flag.
func TestApply(t *testing.T) {
	fs, listen, conns, loop, wait, sans := flags()
	if err := fs.Parse([]string{"--max-conns", "5"}); err != nil {
		t.Fatal(err)
	}
	entries, err := Parse("c.yaml", []byte("# the controller\nlisten: 127.0.0.1:9443\nmax-conns: 99\nallow-loopback: true\nwait: 2m\ntls-san: [a.example, 10.0.0.1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply("c.yaml", entries, fs, "version"); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:9443" || *conns != 5 || !*loop || *wait != 2*time.Minute || len(*sans) != 2 || (*sans)[1] != "10.0.0.1" {
		t.Errorf("listen %q conns %d loop %v wait %v sans %v", *listen, *conns, *loop, *wait, *sans)
	}
	if v, ok := Value(entries, "listen"); !ok || v != "127.0.0.1:9443" {
		t.Errorf("Value(listen) = %q, %v", v, ok)
	}
	if entries, err := Parse("empty.yaml", []byte("# nothing\n")); err != nil || len(entries) != 0 {
		t.Errorf("an empty file: %v, %v", entries, err)
	}
}

// TestRefusals: every refusal names the file and line, and says why.
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		yaml, want string
		line       int
	}{
		{"listen: :1\nlisen: :2\n", `unknown setting "lisen" (did you mean listen?)`, 2},
		{"version: true\n", `unknown setting "version"`, 1},
		{"frobnicate: 1\n", "the keys are the daemon's flag names", 1},
		{"max-conns: many\n", `max-conns: "many": want a whole number`, 1},
		{"allow-loopback: perhaps\n", `allow-loopback: "perhaps": want true or false`, 1},
		{"wait: soon\n", `wait: "soon": want a duration such as 30s or 5m`, 1},
		{"listen: [a, b]\n", "listen takes one value, not a list", 1},
		{"listen:\n  host: a\n", "listen: want a value or a list of values, not a map", 2},
		{"listen:\n", "listen has no value", 1},
		{"tls-san: [a, [b]]\n", "tls-san: a list holds values, not a list", 1},
		{"listen: a\nlisten: b\n", "listen is set twice (first on line 1)", 2},
		{"- listen\n", "want a map of settings", 1},
		{"listen: a\n---\nlisten: b\n", "one YAML document", 2},
		{"listen: [\n", "", 0},
	} {
		fs, _, _, _, _, _ := flags()
		fs.Parse(nil)
		entries, err := Parse("c.yaml", []byte(c.yaml))
		if err == nil {
			err = Apply("c.yaml", entries, fs, "version")
		}
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, c.want) || (c.line > 0 && ce.Line != c.line) || ce.File != "c.yaml" {
			t.Errorf("%q: %v; want c.yaml:%d saying %q", c.yaml, err, c.line, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: :8443\ntls-san: [a, b]\n"))
	f.Add([]byte("a: {b: c}\n"))
	f.Add([]byte("- x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse("c.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Msg == "" {
				t.Fatalf("error %v (%T) is not an *Error with a message", err, err)
			}
			return
		}
		fs, _, _, _, _, _ := flags()
		fs.Parse(nil)
		if err := Apply("c.yaml", entries, fs); err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Line == 0 {
				t.Fatalf("Apply: %v is not an *Error with a line", err)
			}
		}
	})
}

// TestReloadLevel: a reload takes the file's log-level, or the default
// when the file dropped it; a level the command line set stays.
func TestReloadLevel(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	fs := pflag.NewFlagSet("d", pflag.ContinueOnError)
	fs.String("log-level", "info", "")
	fs.Parse(nil)
	level := new(slog.LevelVar)
	for _, c := range []struct {
		text string
		cmd  bool
		want slog.Level
		err  string
	}{
		{"log-level: debug\n", false, slog.LevelDebug, ""},
		{"# no level\n", false, slog.LevelInfo, ""},
		{"log-level: warn\n", true, slog.LevelInfo, ""},
		{"log-level: loud\n", false, slog.LevelInfo, `log-level "loud": want debug, info, warn or error`},
	} {
		os.WriteFile(file, []byte(c.text), 0o600)
		got, err := ReloadLevel(file, fs, map[string]bool{"log-level": c.cmd}, level)
		if got != c.want || level.Level() != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q (command line %v): %v, %v; want %v, %q", c.text, c.cmd, got, err, c.want, c.err)
		}
	}
}
