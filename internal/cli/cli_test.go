package cli

import (
	"bytes"
	"errors"
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
	key.AddCommand(show, rotate)
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
		{[]string{"key", "show"}, Usagef("bad mix"), ExitUsage, "tool key show: bad mix\nRun 'tool key show --help' for usage.\n"},
		{nil, nil, ExitUsage, "tool: give a command"},
		{[]string{"kye"}, nil, ExitUsage, `unknown command "kye"`},
		{[]string{"key"}, nil, ExitUsage, "tool key: give a command: rotate, show"},
		{[]string{"key", "shw"}, nil, ExitUsage, `tool key: unknown command "shw": the commands are rotate, show; did you mean show?`},
		{[]string{"key", "show", "x"}, nil, ExitUsage, `tool key show: takes no arguments, got ["x"]`},
		{[]string{"key", "rotate"}, nil, ExitUsage, "tool key rotate: want one NAME\n"},
		{[]string{"key", "show", "--force"}, nil, ExitUsage, "tool key show: --force is a flag of tool key rotate, not of tool key show"},
		{[]string{"key", "show", "-n", "two"}, nil, ExitUsage, `tool key show: invalid value "two" for -n/--count: want a whole number`},
		{[]string{"completion", "bash"}, nil, ExitOK, "bash completion V2 for tool"},
	} {
		var stdout, stderr bytes.Buffer
		code := Execute(tree(tc.leafErr), tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("Execute(%q) with RunE returning %v = %d, printed %q; want %d and %q", tc.args, tc.leafErr, code, out, tc.code, tc.want)
		}
	}
}
