package policies

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Release is release.yaml: which gates each channel requires, and the
// waivers in force.
type Release struct {
	Version  int                `yaml:"version"`
	Channels map[string]Channel `yaml:"channels"`
	Waivers  []Waiver           `yaml:"waivers"`
	// Checklist is the launch checklist the sign-offs answer, a path
	// relative to this file's directory; a run of a channel that requires
	// sign-offs copies it into the bundle, and the sign-offs answer that
	// copy.
	Checklist Str `yaml:"checklist"`
	// Signers lists, for each role, the public keys whose sign-off counts
	// for it.
	Signers map[string][]Signer `yaml:"signers"`

	// File and Digest identify the policy as loaded.
	File   string `yaml:"-"`
	Digest string `yaml:"-"`
	Raw    []byte `yaml:"-"`
}

// Channel is a release channel: nightly, beta or ga.
type Channel struct {
	Description string `yaml:"description"`
	Gates       []Str  `yaml:"gates"`
	// Signoffs lists the roles whose sign-off the channel requires: its
	// verdict awaits them once every gate passed.
	Signoffs []Str `yaml:"signoffs"`
}

// Signer is a person (or team) whose key may sign a role off.
type Signer struct {
	Name Str `yaml:"name"`
	// Key is the public key, PKIX PEM (as rustynet-gate keygen writes
	// it): ECDSA P-256 or Ed25519.
	Key Str `yaml:"key"`
	// KeyID is the key's ID as the evidence records signers (DSSE's
	// SHA256 key ID, the key's OpenSSH fingerprint), filled in at load.
	KeyID string `yaml:"-"`
	// Public is the parsed key, filled in at load.
	Public crypto.PublicKey `yaml:"-"`
}

// Waiver lets a channel pass although a gate did not, until it expires.
type Waiver struct {
	Gate     Str   `yaml:"gate"`
	Channels []Str `yaml:"channels"` // empty: every channel
	Owner    Str   `yaml:"owner"`
	Reason   Str   `yaml:"reason"`
	Ticket   Str   `yaml:"ticket"`
	Expires  Time  `yaml:"expires"`
	Line     int   `yaml:"-"`
}

// The release channels, from the least to the most demanding. This is
// the one list of them: the gates, the budgets and the soak floors use
// these.
const (
	Nightly = "nightly"
	Beta    = "beta"
	GA      = "ga"
)

// Channels lists the channels a release policy may define, in order.
var Channels = []string{Nightly, Beta, GA}

var knownChannels = Channels

// ParseRelease decodes and checks release.yaml. known reports whether a
// gate name is registered; every gate named must be.
func ParseRelease(file string, data []byte, known func(string) bool) (*Release, error) {
	var r Release
	if err := decode(file, data, &r); err != nil {
		return nil, err
	}
	r.File, r.Digest, r.Raw = file, Digest(data), data
	if r.Version != 1 {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("version %d: this build reads version 1", r.Version)}
	}
	if len(r.Channels) == 0 {
		return nil, &Error{File: file, Line: 1, Msg: "no channels"}
	}
	for _, name := range r.ChannelNames() {
		if !slices.Contains(knownChannels, name) {
			return nil, &Error{File: file, Msg: fmt.Sprintf("channel %q: want one of %v", trunc(name), knownChannels)}
		}
		ch := r.Channels[name]
		if len(ch.Gates) == 0 {
			return nil, &Error{File: file, Msg: fmt.Sprintf("channel %s requires no gate", name)}
		}
		seen := map[string]bool{}
		for _, g := range ch.Gates {
			if !nameRE.MatchString(g.Value) {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("gate %q: not a gate name", trunc(g.Value))}
			}
			if known != nil && !known(g.Value) {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("channel %s names gate %q, which is not registered", name, g.Value)}
			}
			if seen[g.Value] {
				return nil, &Error{File: file, Line: g.Line, Msg: fmt.Sprintf("channel %s names gate %s twice", name, g.Value)}
			}
			seen[g.Value] = true
		}
	}
	if err := r.checkSignoffs(file); err != nil {
		return nil, err
	}
	for _, w := range r.Waivers {
		line := w.Gate.Line
		if w.Gate.Value == "" {
			return nil, &Error{File: file, Line: line, Msg: "waiver names no gate"}
		}
		if known != nil && !known(w.Gate.Value) {
			return nil, &Error{File: file, Line: line, Msg: fmt.Sprintf("waiver for gate %q, which is not registered", w.Gate.Value)}
		}
		for _, c := range w.Channels {
			if _, ok := r.Channels[c.Value]; !ok {
				return nil, &Error{File: file, Line: c.Line, Msg: fmt.Sprintf("waiver names channel %q, which the policy does not define", c.Value)}
			}
		}
		if err := checkOwned(file, line, w.Owner, w.Reason, w.Expires); err != nil {
			return nil, err
		}
		if w.Ticket.Value == "" {
			return nil, &Error{File: file, Line: line, Msg: "waiver has no ticket"}
		}
	}
	return &r, nil
}

// LoadRelease reads and checks a release policy file.
func LoadRelease(path string, known func(string) bool) (*Release, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseRelease(path, data, known)
}

// ChannelNames lists the channels, sorted.
func (r *Release) ChannelNames() []string {
	names := make([]string, 0, len(r.Channels))
	for n := range r.Channels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Gates lists the gates a channel requires, or an error naming the
// channels there are.
func (r *Release) Gates(channel string) ([]string, error) {
	ch, ok := r.Channels[channel]
	if !ok {
		return nil, fmt.Errorf("channel %q: the policy defines %v", channel, r.ChannelNames())
	}
	out := make([]string, len(ch.Gates))
	for i, g := range ch.Gates {
		out[i] = g.Value
	}
	return out, nil
}

// CheckHorizon refuses a policy with a waiver that expires more than
// MaxHorizon after now. The runner checks it at the start of a run, and
// verify against the time the bundle was made.
func (r *Release) CheckHorizon(now time.Time) error {
	for _, w := range r.Waivers {
		if err := checkHorizon(r.File, "the waiver for gate "+w.Gate.Value, w.Expires, now); err != nil {
			return err
		}
	}
	return nil
}

// Waiver returns the waiver for gate on channel in force at t, if any, and
// any that matched but had expired (an expired waiver blocks, and says so).
func (r *Release) Waiver(gate, channel string, t time.Time) (active, expired *Waiver) {
	for i := range r.Waivers {
		w := &r.Waivers[i]
		if w.Gate.Value != gate {
			continue
		}
		if len(w.Channels) > 0 && !slices.ContainsFunc(w.Channels, func(c Str) bool { return c.Value == channel }) {
			continue
		}
		if t.Before(w.Expires.Time) {
			return w, nil
		}
		expired = w
	}
	return nil, expired
}

// checkSignoffs checks the signers and the channels' required sign-offs:
// every role is known, every key parses, no key is listed twice, a
// channel that requires a role's sign-off has a signer for it, and a
// checklist for the sign-offs to answer.
func (r *Release) checkSignoffs(file string) error {
	seen := map[string]string{} // key ID -> role/name
	for _, role := range sortedKeys(r.Signers) {
		if !slices.Contains(Roles, role) {
			return &Error{File: file, Msg: fmt.Sprintf("signers for role %q: want one of %v", trunc(role), Roles)}
		}
		list := r.Signers[role]
		for i := range list {
			s := &list[i]
			if strings.TrimSpace(s.Name.Value) == "" {
				return &Error{File: file, Line: s.Key.Line, Msg: fmt.Sprintf("a signer for %s has no name", role)}
			}
			pub, id, err := parsePublicKey(s.Key.Value)
			if err != nil {
				return &Error{File: file, Line: s.Key.Line, Msg: fmt.Sprintf("signer %s (%s): %v", s.Name.Value, role, err)}
			}
			if prev, ok := seen[id]; ok {
				// One key, one role: a sign-off says which role it is
				// for, and a key that could sign for two would let one
				// person be two of the sign-offs a channel needs.
				return &Error{File: file, Line: s.Key.Line, Msg: fmt.Sprintf("signer %s (%s) has the key of %s: one key signs for one role", s.Name.Value, role, prev)}
			}
			seen[id] = role + "/" + s.Name.Value
			s.Public, s.KeyID = pub, id
		}
	}
	needs := false
	for _, name := range r.ChannelNames() {
		roles := map[string]bool{}
		for _, ro := range r.Channels[name].Signoffs {
			switch {
			case !slices.Contains(Roles, ro.Value):
				return &Error{File: file, Line: ro.Line, Msg: fmt.Sprintf("channel %s requires the sign-off of role %q: want one of %v", name, trunc(ro.Value), Roles)}
			case roles[ro.Value]:
				return &Error{File: file, Line: ro.Line, Msg: fmt.Sprintf("channel %s requires the sign-off of %s twice", name, ro.Value)}
			case len(r.Signers[ro.Value]) == 0:
				return &Error{File: file, Line: ro.Line, Msg: fmt.Sprintf("channel %s requires the sign-off of %s, and signers lists no key for it", name, ro.Value)}
			}
			roles[ro.Value] = true
			needs = true
		}
	}
	if needs && r.Checklist.Value == "" {
		return &Error{File: file, Msg: "a channel requires sign-offs, and the policy names no checklist for them to answer"}
	}
	if c := r.Checklist.Value; c != "" && (strings.Contains(c, "/") || strings.HasPrefix(c, ".")) {
		return &Error{File: file, Line: r.Checklist.Line, Msg: fmt.Sprintf("checklist %q: want a file name beside the policy", trunc(c))}
	}
	return nil
}

// Signoffs lists the roles whose sign-off a channel requires.
func (r *Release) Signoffs(channel string) []string {
	var out []string
	for _, ro := range r.Channels[channel].Signoffs {
		out = append(out, ro.Value)
	}
	return out
}

// SignerFor returns the signer of role whose key has the given ID.
func (r *Release) SignerFor(role, keyID string) (*Signer, bool) {
	for i := range r.Signers[role] {
		if s := &r.Signers[role][i]; s.KeyID == keyID {
			return s, true
		}
	}
	return nil, false
}

// RoleOfKey returns the role and signer a key ID is listed for, if any.
func (r *Release) RoleOfKey(keyID string) (string, *Signer, bool) {
	for _, role := range sortedKeys(r.Signers) {
		if s, ok := r.SignerFor(role, keyID); ok {
			return role, s, true
		}
	}
	return "", nil, false
}

// parsePublicKey parses a PKIX PEM public key of the kinds the evidence
// signs with, and returns it with its key ID (evidence.KeyID's form).
func parsePublicKey(text string) (crypto.PublicKey, string, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, "", fmt.Errorf("key: want a PKIX PEM block (-----BEGIN PUBLIC KEY-----)")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, "", fmt.Errorf("key: text after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("key: %v", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("key: ECDSA on %s; want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, "", fmt.Errorf("key: %T; want ECDSA P-256 or Ed25519", pub)
	}
	id, err := dsse.SHA256KeyID(pub)
	if err != nil {
		return nil, "", fmt.Errorf("key: %v", err)
	}
	return pub, id, nil
}
