// Package insecure holds Rustynet's insecure compatibility modes. Every
// mode is off by default. An operator turns one on with an exception that
// names its own expiry, in the environment, in the manner of Go's GODEBUG:
//
//	RUSTYNET_INSECURE=controller-tls12@2026-12-31
//
// A mode whose expiry has passed is off again, by itself, and says so.
// The modes are listed in policies/crypto.yaml too; the crypto-policy gate
// checks that the two lists agree.
package insecure

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Env is the environment variable that carries exceptions.
const Env = "RUSTYNET_INSECURE"

// Mode is an insecure compatibility mode.
type Mode struct {
	Name        string
	Description string
}

// Modes lists every insecure mode the code has.
var Modes = []Mode{
	{Name: "controller-tls12", Description: "the controller accepts TLS 1.2 clients"},
}

// MaxExceptionDays bounds how far ahead an exception may expire.
const MaxExceptionDays = 90

// Setting is the state of a mode as the environment asks for it.
type Setting struct {
	Mode    string
	Enabled bool
	Expires time.Time
	// Problem says why an exception in the environment is not honoured
	// (expired, too far ahead, malformed); empty when there is none.
	Problem string
}

// Lookup returns the setting of mode at now, from the environment value v
// (a comma-separated list of MODE@YYYY-MM-DD).
func Lookup(v, mode string, now time.Time) Setting {
	s := Setting{Mode: mode}
	if !slices.ContainsFunc(Modes, func(m Mode) bool { return m.Name == mode }) {
		s.Problem = fmt.Sprintf("%s is not an insecure mode", mode)
		return s
	}
	for item := range strings.SplitSeq(v, ",") {
		name, date, ok := strings.Cut(strings.TrimSpace(item), "@")
		if name != mode {
			continue
		}
		if !ok {
			s.Problem = fmt.Sprintf("%s=%s: an exception needs its expiry, as %s@YYYY-MM-DD", Env, item, mode)
			return s
		}
		exp, err := time.Parse(time.DateOnly, date)
		if err != nil {
			s.Problem = fmt.Sprintf("%s=%s: expiry %q is not a date (YYYY-MM-DD)", Env, item, date)
			return s
		}
		s.Expires = exp
		switch {
		case !now.Before(exp):
			s.Problem = fmt.Sprintf("the exception for %s expired on %s; the mode is off", mode, date)
		case exp.Sub(now) > MaxExceptionDays*24*time.Hour:
			s.Problem = fmt.Sprintf("the exception for %s runs to %s, more than %d days ahead; the mode is off", mode, date, MaxExceptionDays)
		default:
			s.Enabled = true
		}
		return s
	}
	return s
}

// Get returns the setting of mode from this process's environment, now.
func Get(mode string) Setting { return Lookup(os.Getenv(Env), mode, time.Now()) }
