package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tree is a binary with a group of commands (`key show|rotate`) and a
// leaf whose RunE returns what the test gives it.
func tree(leafErr error) *cobra.Command {
	root := New("tool", "v1.2.3", "a tool", "a tool for tests")
	key := &cobra.Command{Use: "key", Short: "keys"}
	show := &cobra.Command{Use: "show", RunE: func(*cobra.Command, []string) error { return leafErr }}
	var n int
	show.Flags().IntVarP(&n, "count", "n", 1, "how many")
	rotate := &cobra.Command{Use: "rotate NAME", Args: ExactArgs(1, "one NAME"), RunE: func(*cobra.Command, []string) error { return nil }}
	rotate.Flags().Bool("force", false, "even if fresh")
	export := &cobra.Command{Use: "export FILE...", Args: MinimumArgs(1, "FILE... (one or more)"), RunE: func(*cobra.Command, []string) error { return leafErr }}
	Choice(export.Flags(), "format", "pem", "the format", "pem", "der", "jwk")
	Choice(export.Flags(), "order", "", "the order", "asc", "desc")
	key.AddCommand(show, rotate, export)
	root.AddCommand(key)
	return root
}

// TestExecuteExitCodes: the exit code and message of each kind of
// outcome, the same for every binary built on this package.
func TestExecuteExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		leafErr error
		code    int
		want    string
	}{
		{[]string{"key", "show"}, nil, ExitOK, ""},
		{[]string{"--version"}, nil, ExitOK, "tool v1.2.3\n"},
		{[]string{"key", "show"}, errors.New("no key yet"), ExitNo, "tool key show: no key yet\n"},
		{[]string{"key", "show"}, Exit(4, errors.New("half done")), 4, "tool key show: half done\n"},
		{[]string{"key", "show"}, Exit(5, nil), 5, ""},
		{[]string{"key", "export"}, nil, ExitUsage, "tool key export: want FILE... (one or more), got 0 arguments"},
		{[]string{"key", "export", "a", "b", "--format", "der", "--order", "desc"}, nil, ExitOK, ""},
		{[]string{"key", "export", "a", "--format", "txt"}, nil, ExitUsage, `invalid value "txt" for --format: want one of pem, der or jwk`},
		{[]string{"key", "export", "a", "--order", "up"}, nil, ExitUsage, `invalid value "up" for --order: want asc or desc`},
		{[]string{"key", "show"}, Usagef("bad mix"), ExitUsage, "tool key show: bad mix\nRun 'tool key show --help' for usage.\n"},
		{nil, nil, ExitUsage, "tool: give a command"},
		{[]string{"kye"}, nil, ExitUsage, `unknown command "kye"`},
		{[]string{"key"}, nil, ExitUsage, "tool key: give a command: export, rotate, show"},
		{[]string{"key", "shw"}, nil, ExitUsage, `tool key: unknown command "shw": the commands are export, rotate, show; did you mean show?`},
		{[]string{"key", "show", "x"}, nil, ExitUsage, `tool key show: takes no arguments, got ["x"]`},
		{[]string{"key", "rotate"}, nil, ExitUsage, "tool key rotate: want one NAME\n"},
		{[]string{"key", "show", "--force"}, nil, ExitUsage, "tool key show: --force is a flag of tool key rotate, not of tool key show"},
		{[]string{"key", "show", "-n", "two"}, nil, ExitUsage, `tool key show: invalid value "two" for -n/--count: want a whole number`},
		{[]string{"completion", "bash"}, nil, ExitOK, "bash completion V2 for tool"},
	} {
		var stdout, stderr bytes.Buffer
		code := Execute(tree(tc.leafErr), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) || (tc.want == "" && out != "") {
			t.Errorf("Execute(%q) with RunE returning %v = %d, printed %q; want %d and %q", tc.args, tc.leafErr, code, out, tc.code, tc.want)
		}
	}
}

// TestRunnableRoot: a root that runs itself (a daemon's) runs without
// arguments, and refuses one it does not take.
func TestRunnableRoot(t *testing.T) {
	ran := false
	root := func() *cobra.Command {
		r := New("daemon", "v1", "a daemon", "a daemon")
		r.Args = ExactArgs(0, "no arguments")
		r.RunE = func(*cobra.Command, []string) error { ran = true; return nil }
		return r
	}
	var out bytes.Buffer
	if code := Execute(root(), nil, &out, &out); code != ExitOK || !ran {
		t.Errorf("Execute(daemon, no arguments) = %d (ran %v), printed %q; want %d and run", code, ran, out.String(), ExitOK)
	}
	out.Reset()
	if code := Execute(root(), []string{"x"}, &out, &out); code != ExitUsage || !strings.Contains(out.String(), "want no arguments") {
		t.Errorf("Execute(daemon, x) = %d, printed %q; want %d", code, out.String(), ExitUsage)
	}
}

// TestManPages: the hidden man command writes a page per command, in the
// section the root asks for, the same bytes whenever it runs.
func TestManPages(t *testing.T) {
	root := New("rnd", "v1.2.3", "a daemon", "")
	ManSection(root, "8")
	root.AddCommand(&cobra.Command{Use: "serve", Short: "serve it", RunE: func(*cobra.Command, []string) error { return nil }})
	dir := t.TempDir()
	var out, errb strings.Builder
	if code := Execute(root, []string{"man", dir}, &out, &errb); code != ExitOK {
		t.Fatalf("man: exit %d, %s", code, errb.String())
	}
	page, err := os.ReadFile(filepath.Join(dir, "rnd-serve.8"))
	if err != nil || !strings.Contains(string(page), `.TH "RND" "8"`) || !strings.Contains(string(page), "serve it") {
		t.Fatalf("rnd-serve.8: %v\n%s", err, page)
	}
	if _, err := os.Stat(filepath.Join(dir, "rnd.8")); err != nil {
		t.Error(err)
	}
	again := t.TempDir()
	root2 := New("rnd", "v1.2.3", "a daemon", "")
	ManSection(root2, "8")
	root2.AddCommand(&cobra.Command{Use: "serve", Short: "serve it", RunE: func(*cobra.Command, []string) error { return nil }})
	Execute(root2, []string{"man", again}, &out, &errb)
	if page2, _ := os.ReadFile(filepath.Join(again, "rnd-serve.8")); string(page2) != string(page) {
		t.Error("the pages differ between two runs: they carry a date or other state")
	}
}
