// Package insecure holds Rustynet's insecure compatibility modes. Every
// mode is off by default. An operator turns one on with an exception that
// names its own expiry, in the environment, in the manner of Go's GODEBUG:
//
//	RUSTYNET_INSECURE=controller-tls12@2026-12-31
//
// A mode whose expiry has passed is off again, by itself, and says so.
// The environment alone does not turn a mode on: the crypto policy the
// daemon runs under (policies/crypto.yaml, built in, or the operator's
// copy) must grant it by an exception that names its owner and ticket and
// runs at least as long (Setting.Authorize). The modes are listed in
// policies/crypto.yaml too; the crypto-policy gate checks that the two
// lists agree.
package insecure

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rustynet/rustynet/policies"
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
	// (expired, too far ahead, malformed, granted by no exception of the
	// policy); empty when there is none.
	Problem string
	// Grant is the policy's exception that authorizes an enabled mode
	// (Authorize).
	Grant *Grant
}

// Grant is an exception of a crypto policy: who answers for the mode, the
// ticket that tracks it, and when it lapses.
type Grant struct {
	Mode, Owner, Ticket string
	Expires             time.Time
	// Source says where the exception is written (FILE:LINE).
	Source string
}

// GrantsOf lists a crypto policy's exceptions as grants.
func GrantsOf(pol *policies.Crypto) []Grant {
	var out []Grant
	for _, e := range pol.Exceptions {
		out = append(out, Grant{Mode: e.Mode.Value, Owner: e.Owner.Value, Ticket: e.Ticket.Value, Expires: e.Expires.Time,
			Source: fmt.Sprintf("%s:%d", pol.File, e.Mode.Line)})
	}
	return out
}

// Authorize holds an enabled setting to the policy's exceptions at now: it
// stays on only if one of grants is for its mode, names an owner and a
// ticket, is in force, expires at most MaxExceptionDays ahead, and not
// before the environment's own expiry. Otherwise the mode is off and
// Problem says why. A setting that is off is returned as it is.
func (s Setting) Authorize(grants []Grant, policy string, now time.Time) Setting {
	if !s.Enabled {
		return s
	}
	var why []string
	for _, g := range grants {
		if g.Mode != s.Mode {
			continue
		}
		switch {
		case g.Owner == "" || g.Ticket == "":
			why = append(why, fmt.Sprintf("the exception at %s names no owner or no ticket", g.Source))
		case !now.Before(g.Expires):
			why = append(why, fmt.Sprintf("the exception at %s lapsed on %s", g.Source, g.Expires.Format(time.DateOnly)))
		case g.Expires.Sub(now) > MaxExceptionDays*24*time.Hour:
			why = append(why, fmt.Sprintf("the exception at %s runs to %s, more than %d days ahead", g.Source, g.Expires.Format(time.DateOnly), MaxExceptionDays))
		case s.Expires.After(g.Expires):
			why = append(why, fmt.Sprintf("the exception at %s ends on %s, before the environment's %s", g.Source, g.Expires.Format(time.DateOnly), s.Expires.Format(time.DateOnly)))
		default:
			s.Grant = &g
			return s
		}
	}
	s.Enabled = false
	if len(why) == 0 {
		s.Problem = fmt.Sprintf("%s asks for %s until %s, but the crypto policy (%s) grants no exception for it; the mode is off (add one with an owner, a ticket and an expiry at most %d days ahead)",
			Env, s.Mode, s.Expires.Format(time.DateOnly), policy, MaxExceptionDays)
	} else {
		s.Problem = fmt.Sprintf("%s asks for %s until %s, but the crypto policy (%s) does not grant it: %s; the mode is off",
			Env, s.Mode, s.Expires.Format(time.DateOnly), policy, strings.Join(why, "; "))
	}
	return s
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
