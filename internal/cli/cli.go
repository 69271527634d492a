// Package cli is what the rustynet commands share, on cobra: a root
// command with --version and shell completion (`completion
// bash|zsh|fish|powershell`), arguments refused unless a command takes
// them, flag values refused in words (Choice for a flag of a few words),
// errors that name what the user gave and what was expected, and one
// convention for exit codes. The four binaries use it: rustynet,
// rustynetd (a root that runs itself), rustynet-controller and
// rustynet-gate.
//
// Man pages: `NAME man DIR` (hidden; `make man` runs it for the four
// binaries) writes one page per command with cobra's doc package, in
// section 8 for a daemon (ManSection) and 1 otherwise.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// The exit codes every rustynet command keeps to. A command may add its
// own from 3 on, and says which in its help.
const (
	// ExitOK: the command did what was asked, and the answer is yes.
	ExitOK = 0
	// ExitNo: the command ran and the answer is no: the node is offline,
	// a peer does not answer, the daemon is not running.
	ExitNo = 1
	// ExitUsage: the command line is wrong (an unknown command or flag,
	// a flag of another command, a bad flag value, a missing or extra
	// argument); nothing was done.
	ExitUsage = 2
)

// ExitCodes is the help text for the shared exit codes.
const ExitCodes = `  0  success
  1  the command ran and the answer is no (offline, unreachable, not running)
  2  usage error: unknown command or flag, a flag of another command, a bad
     flag value, a missing or extra argument; nothing was done`

// New returns a root command for the binary name at version (the binary's
// `version` variable, which the Makefile sets with -ldflags). Its
// subcommands are added by the caller; Execute runs it.
func New(name, version, short, long string) *cobra.Command {
	root := &cobra.Command{
		Use:     name,
		Short:   short,
		Long:    long,
		Version: version,
		// Execute prints errors once, in its own form, and only usage
		// errors point at the help: a peer that does not answer is no
		// reason to show every flag.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate(name + " {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	return root
}

// UsageError is a command line that is wrong; Execute exits ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError: a command's own check of its arguments or
// flag values that failed.
func Usagef(format string, a ...any) error {
	return &UsageError{fmt.Errorf(format, a...)}
}

// ExitError ends the command with Code (3 or more: the command's own;
// or 1, or 2 for a command whose errors other than usage exit 2). A nil
// Err, or one that says nothing, prints nothing: the command has said
// what it found already.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// Exit returns an ExitError.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// ran marks an error returned by a command's RunE: everything cobra
// returns before RunE runs is a usage error.
type ran struct{ err error }

func (e *ran) Error() string { return e.err.Error() }
func (e *ran) Unwrap() error { return e.err }

// Execute runs root with args and returns the exit code: ExitOK;
// ExitUsage for a wrong command line, with a pointer to the command's
// help; an ExitError's code; else ExitNo. Errors are printed as
// "COMMAND PATH: error" on stderr.
//
// Commands without Args take no arguments. A root with its own RunE (a
// daemon whose flags are its settings) runs without arguments too.
func Execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	// The completion commands write where root does when they are made,
	// and are made strict too; help takes any topic, so it comes after.
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.InitDefaultCompletionCmd()
	root.AddCommand(manCmd(root))
	prepare(root)
	root.InitDefaultHelpCmd()
	if len(args) == 0 && !root.Runnable() {
		// Told what it can do, and a usage error: a script that forgot
		// the command fails. (A root that runs itself, such as a daemon's,
		// runs.)
		root.SetOut(stderr)
		root.Help()
		fmt.Fprintf(stderr, "%s: give a command\n", root.Name())
		return ExitUsage
	}
	c, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	if c == nil {
		c = root
	}
	var r *ran
	var usage *UsageError
	var exit *ExitError
	switch {
	case errors.As(err, &usage) || !errors.As(err, &r):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", c.CommandPath(), err, c.CommandPath())
		return ExitUsage
	case errors.As(err, &exit):
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "%s: %s\n", c.CommandPath(), msg)
		}
		return exit.Code
	default:
		fmt.Fprintf(stderr, "%s: %v\n", c.CommandPath(), err)
		return ExitNo
	}
}

// ManSection marks root's man pages as of section (8 for a daemon and
// its administration; the default is 1).
func ManSection(root *cobra.Command, section string) {
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations["man-section"] = section
}

// manCmd writes root's man pages into a directory.
func manCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write the man pages of every command into DIR",
		Hidden: true,
		Args:   ExactArgs(1, "one DIR to write the pages into"),
		RunE: func(c *cobra.Command, args []string) error {
			section := root.Annotations["man-section"]
			if section == "" {
				section = "1"
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			// No date: the pages are the same for the same commands,
			// whenever they are made.
			epoch := time.Unix(0, 0).UTC()
			h := &doc.GenManHeader{Title: strings.ToUpper(root.Name()), Section: section, Source: root.Name() + " " + root.Version, Manual: "Rustynet", Date: &epoch}
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, h, args[0])
		},
	}
}

// prepare makes every command below root strict (no arguments unless it
// says so; a command that only groups others refuses to run without one
// of them, as cobra does only for the root) and marks the errors of their
// RunE, so that Execute can tell them from cobra's refusals of the
// command line.
func prepare(root *cobra.Command) {
	for _, c := range root.Commands() {
		prepare(c)
		switch {
		case c.HasSubCommands() && !c.Runnable():
			c.Args = subcommand
			c.RunE = func(c *cobra.Command, _ []string) error {
				c.SetOut(c.ErrOrStderr())
				c.Help()
				return Usagef("give a command: %s", strings.Join(commandNames(c), ", "))
			}
			continue
		case c.Args == nil && !c.HasSubCommands():
			c.Args = noArgs
		}
	}
	if run := root.RunE; run != nil {
		root.RunE = func(c *cobra.Command, args []string) error {
			if err := run(c, args); err != nil {
				return &ran{err}
			}
			return nil
		}
	}
}

// subcommand refuses an argument that names none of a command's
// subcommands.
func subcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q: the commands are %s", args[0], strings.Join(commandNames(c), ", "))
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, which only its own lookup sets
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return errors.New(msg)
}

func commandNames(c *cobra.Command) []string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return names
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments, got %q", args)
	}
	return nil
}

// ExactArgs accepts n arguments, named by what (such as "one PEER (a name,
// node ID or mesh address)") in the refusal.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return fmt.Errorf("want %s", what)
		case len(args) > n:
			return fmt.Errorf("want %s, got %d arguments: %q", what, len(args), args)
		}
		return nil
	}
}

// MinimumArgs accepts n or more arguments, named by what (such as
// "PARTIAL... (one or more bundles)") in the refusal.
func MinimumArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// flagError words pflag's refusals for the user: a bad value says what
// the flag wants instead of Go's parse error, and an unknown flag that
// another command takes says which.
func flagError(c *cobra.Command, err error) error {
	var invalid *pflag.InvalidValueError
	if errors.As(err, &invalid) {
		f := invalid.GetFlag()
		return fmt.Errorf("invalid value %q for %s: want %s", invalid.GetValue(), flagName(f), wants(f))
	}
	var unknown *pflag.NotExistError
	if errors.As(err, &unknown) {
		name := unknown.GetSpecifiedName()
		if others := commandsWithFlag(c.Root(), name); len(others) > 0 {
			dash := "--"
			if unknown.GetSpecifiedShortnames() != "" {
				dash = "-"
			}
			return fmt.Errorf("%s%s is a flag of %s, not of %s", dash, name, strings.Join(others, " and "), c.CommandPath())
		}
	}
	return err
}

func flagName(f *pflag.Flag) string {
	if f.Shorthand != "" {
		return "-" + f.Shorthand + "/--" + f.Name
	}
	return "--" + f.Name
}

// wants says what a flag's type accepts.
func wants(f *pflag.Flag) string {
	if w, ok := f.Value.(interface{ Wants() string }); ok {
		return w.Wants()
	}
	switch t := f.Value.Type(); t {
	case "int", "int32", "int64":
		return "a whole number"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number, 0 or more"
	case "duration":
		return "a duration with its unit, such as 500ms, 2s or 1m"
	case "bool":
		return "true or false"
	default:
		return "a value of type " + t
	}
}

// commandsWithFlag lists the commands below root (by path) that take the
// flag name (long, or a one-letter shorthand) as their own.
func commandsWithFlag(root *cobra.Command, name string) []string {
	var out []string
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			fs := s.LocalNonPersistentFlags()
			if fs.Lookup(name) != nil || (len(name) == 1 && fs.ShorthandLookup(name) != nil) {
				out = append(out, s.CommandPath())
			}
			walk(s)
		}
	}
	walk(root)
	return out
}

// Choice defines a string flag that takes one of choices (its default
// may be another, such as "" for none); any other value is refused as a
// bad value, saying which it takes. Its help shows them as its type.
func Choice(fs *pflag.FlagSet, name, value, usage string, choices ...string) *string {
	p := new(string)
	*p = value
	fs.Var(&choice{p, choices}, name, usage)
	return p
}

type choice struct {
	val     *string
	choices []string
}

func (c *choice) String() string { return *c.val }
func (c *choice) Type() string   { return strings.Join(c.choices, "|") }
func (c *choice) Wants() string {
	n := len(c.choices)
	switch n {
	case 1:
		return c.choices[0]
	case 2:
		return c.choices[0] + " or " + c.choices[1]
	}
	return "one of " + strings.Join(c.choices[:n-1], ", ") + " or " + c.choices[n-1]
}

func (c *choice) Set(s string) error {
	for _, w := range c.choices {
		if s == w {
			*c.val = s
			return nil
		}
	}
	return errors.New("want " + c.Wants())
}
