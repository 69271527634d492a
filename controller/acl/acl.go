// Package acl parses and evaluates the controller's ACL policy: which nodes
// may open connections to which, by tag and by node. Nothing is allowed
// unless a rule allows it; with no policy set at all, every node may reach
// every other (AllowAll).
//
// A policy is YAML:
//
//	acls:
//	  - action: accept
//	    src: ["tag:web", "node:laptop"]
//	    dst: ["tag:db"]
//
// Selectors are "*" (every node), "tag:NAME" (nodes registered with a key
// carrying that tag), "id:ID" (the node with that controller-assigned ID)
// and "name:NAME" (the node the admin bound that name to, through an auth
// key created with --name or `rustynet-controller node rename`). A name a
// node chose for itself (its hostname) is a label, never matched: a node
// cannot take another's identity by the name it asks for, and no name has
// the form of an ID. "node:X", from policies written before names were
// bound, means "id:X" when X has the form of a node ID and "name:X"
// otherwise.
//
// A policy may also choose which backend nodes run:
//
//	backends:
//	  - nodes: ["tag:edge"]
//	    backend: quic
//
// The first rule that selects a node and names a backend the node supports
// wins; a node no rule picks runs its first supported backend.
//
// And the post-quantum mode of nodes (node/pq):
//
//	pq:
//	  - nodes: ["tag:wave1"]
//	    mode: prefer
//
// "off" (the default for a node no rule selects) runs classical WireGuard;
// "prefer" adds the post-quantum preshared key with every peer that can,
// and stays classical with the others; "require" passes no traffic to a
// peer until the pair holds one. The first rule that selects a node wins.
package acl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rustynet/rustynet/controller/api"
)

// Limits on a policy. Its size limit is api.MaxPolicyBytes.
const (
	MaxRules            = 10000
	MaxSelectorsPerSide = 1000
)

// ParseError is a refused policy: the line (1-based; 0 when the whole
// document is at fault) and the reason.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy line %d: %s", e.Line, e.Msg)
	}
	return "policy: " + e.Msg
}

// Subject is a node as rules see it.
type Subject struct {
	ID api.NodeID
	// Name is the node's bound name; empty when the node chose its own,
	// which no rule matches.
	Name string
	Tags []string
}

// Policy is a parsed policy. The zero value denies everything; use
// AllowAll for the default.
type Policy struct {
	allowAll bool
	rules    []rule
	backends []backendRule
	pq       []pqRule
}

// pqRule sets the post-quantum mode of the nodes it selects.
type pqRule struct {
	line  int
	nodes []selector
	mode  string
}

// backendRule picks the backend for the nodes it selects.
type backendRule struct {
	line    int
	nodes   []selector
	backend string
}

type rule struct {
	line     int
	src, dst []selector
}

type selectorKind int

const (
	selAny selectorKind = iota
	selTag
	selID
	selName
)

type selector struct {
	kind  selectorKind
	value string
}

// AllowAll is the policy in force when none was ever set.
func AllowAll() *Policy { return &Policy{allowAll: true} }

// IsAllowAll reports whether p is the default allow-all policy.
func (p *Policy) IsAllowAll() bool { return p.allowAll }

// Allows reports whether src may open connections to dst.
func (p *Policy) Allows(src, dst *Subject) bool {
	if p.allowAll {
		return true
	}
	for i := range p.rules {
		r := &p.rules[i]
		if matchAny(r.src, src) && matchAny(r.dst, dst) {
			return true
		}
	}
	return false
}

// Backend chooses the backend a node runs: the backend of the first
// backends rule that selects the node and that the node supports, else the
// node's first supported backend.
func (p *Policy) Backend(s *Subject, supported []string) string {
	for _, r := range p.backends {
		if matchAny(r.nodes, s) && slices.Contains(supported, r.backend) {
			return r.backend
		}
	}
	if len(supported) > 0 {
		return supported[0]
	}
	return ""
}

// PQMode is the post-quantum mode of a node: that of the first pq rule
// that selects it, else api.PQOff.
func (p *Policy) PQMode(s *Subject) string {
	for _, r := range p.pq {
		if matchAny(r.nodes, s) {
			return r.mode
		}
	}
	return api.PQOff
}

// Visible reports whether a and b are peers: either may reach the other.
func (p *Policy) Visible(a, b *Subject) bool { return p.Allows(a, b) || p.Allows(b, a) }

func matchAny(sels []selector, s *Subject) bool {
	for _, sel := range sels {
		switch sel.kind {
		case selAny:
			return true
		case selTag:
			if slices.Contains(s.Tags, sel.value) {
				return true
			}
		case selID:
			if sel.value == string(s.ID) {
				return true
			}
		case selName:
			if s.Name != "" && sel.value == s.Name {
				return true
			}
		}
	}
	return false
}

type rawPolicy struct {
	ACLs     []rawRule        `yaml:"acls"`
	Backends []rawBackendRule `yaml:"backends"`
	PQ       []rawPQRule      `yaml:"pq"`
}

type rawPQRule struct {
	pqRule
}

// UnmarshalYAML decodes a pq rule: nodes (selectors) and mode.
func (r *rawPQRule) UnmarshalYAML(value *yaml.Node) error {
	r.line = value.Line
	var err error
	r.nodes, r.mode, err = decodeNodesRule(value, "pq", "mode", func(v string) bool { return api.ValidPQMode(v) }, "want off, prefer or require")
	return err
}

type rawBackendRule struct {
	backendRule
}

var backendNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// UnmarshalYAML decodes a backends rule: nodes (selectors) and backend.
func (r *rawBackendRule) UnmarshalYAML(value *yaml.Node) error {
	r.line = value.Line
	var err error
	r.nodes, r.backend, err = decodeNodesRule(value, "backends", "backend", backendNameRE.MatchString, "want a backend name such as wireguard")
	return err
}

// decodeNodesRule decodes a rule of kind that sets field for the nodes it
// selects: a mapping of nodes (selectors) and field, whose value valid
// accepts (want says what it takes). Unknown and missing fields are refused
// with their line.
func decodeNodesRule(value *yaml.Node, kind, field string, valid func(string) bool, want string) ([]selector, string, error) {
	if value.Kind != yaml.MappingNode {
		return nil, "", &ParseError{value.Line, fmt.Sprintf("a %s rule must be a mapping with nodes and %s", kind, field)}
	}
	var nodes []selector
	var val string
	seen := map[string]bool{}
	for i := 0; i+1 < len(value.Content); i += 2 {
		k, v := value.Content[i], value.Content[i+1]
		seen[k.Value] = true
		switch k.Value {
		case "nodes":
			sels, err := decodeSelectors("nodes", v)
			if err != nil {
				return nil, "", err
			}
			nodes = sels
		case field:
			if v.Kind != yaml.ScalarNode || !valid(v.Value) {
				return nil, "", &ParseError{v.Line, fmt.Sprintf("%s %q: %s", field, trunc(v.Value), want)}
			}
			val = v.Value
		default:
			return nil, "", &ParseError{k.Line, fmt.Sprintf("unknown field %q in %s rule (want nodes, %s)", trunc(k.Value), kind, field)}
		}
	}
	for _, f := range []string{"nodes", field} {
		if !seen[f] {
			return nil, "", &ParseError{value.Line, fmt.Sprintf("%s rule has no %s", kind, f)}
		}
	}
	return nodes, val, nil
}

type rawRule struct {
	line   int
	action string
	src    []selector
	dst    []selector
}

// UnmarshalYAML decodes a rule, refusing unknown fields with their line.
func (r *rawRule) UnmarshalYAML(value *yaml.Node) error {
	r.line = value.Line
	if value.Kind != yaml.MappingNode {
		return &ParseError{value.Line, "a rule must be a mapping with action, src and dst"}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(value.Content); i += 2 {
		k, v := value.Content[i], value.Content[i+1]
		seen[k.Value] = true
		switch k.Value {
		case "action":
			if v.Kind != yaml.ScalarNode || v.Value != "accept" {
				return &ParseError{v.Line, fmt.Sprintf("action %q: the only action is \"accept\" (anything not accepted is denied)", trunc(v.Value))}
			}
			r.action = v.Value
		case "src", "dst":
			sels, err := decodeSelectors(k.Value, v)
			if err != nil {
				return err
			}
			if k.Value == "src" {
				r.src = sels
			} else {
				r.dst = sels
			}
		default:
			return &ParseError{k.Line, fmt.Sprintf("unknown field %q in rule (want action, src, dst)", trunc(k.Value))}
		}
	}
	for _, f := range []string{"action", "src", "dst"} {
		if !seen[f] {
			return &ParseError{value.Line, fmt.Sprintf("rule has no %s", f)}
		}
	}
	return nil
}

func decodeSelectors(field string, v *yaml.Node) ([]selector, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, &ParseError{v.Line, fmt.Sprintf("%s must be a list of selectors", field)}
	}
	if len(v.Content) == 0 {
		return nil, &ParseError{v.Line, fmt.Sprintf("%s is empty: a rule must name at least one selector on each side", field)}
	}
	if len(v.Content) > MaxSelectorsPerSide {
		return nil, &ParseError{v.Line, fmt.Sprintf("%s has %d selectors, at most %d allowed", field, len(v.Content), MaxSelectorsPerSide)}
	}
	sels := make([]selector, 0, len(v.Content))
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, &ParseError{item.Line, fmt.Sprintf("%s: each selector must be a string", field)}
		}
		sel, err := parseSelector(item.Value)
		if err != nil {
			return nil, &ParseError{item.Line, err.Error()}
		}
		sels = append(sels, sel)
	}
	return sels, nil
}

func parseSelector(s string) (selector, error) {
	switch {
	case s == "*":
		return selector{kind: selAny}, nil
	case strings.HasPrefix(s, "tag:"):
		if !api.ValidTag(s) {
			return selector{}, fmt.Errorf("selector %q: a tag is \"tag:\" and a lowercase name of letters, digits and dashes", trunc(s))
		}
		return selector{kind: selTag, value: s}, nil
	case strings.HasPrefix(s, "id:"):
		id := strings.TrimPrefix(s, "id:")
		if !api.ValidNodeID(id) {
			return selector{}, fmt.Errorf("selector %q: a node ID is \"n\" and 16 lowercase hex digits, as `rustynet-controller node list` shows", trunc(s))
		}
		return selector{kind: selID, value: id}, nil
	case strings.HasPrefix(s, "name:"):
		name := strings.TrimPrefix(s, "name:")
		if !api.ValidName(name) {
			return selector{}, fmt.Errorf("selector %q: a name is a lowercase DNS label that is not of the form of a node ID (use id: for IDs)", trunc(s))
		}
		return selector{kind: selName, value: name}, nil
	case strings.HasPrefix(s, "node:"):
		v := strings.TrimPrefix(s, "node:")
		switch {
		case api.ValidNodeID(v):
			return selector{kind: selID, value: v}, nil
		case api.ValidName(v):
			return selector{kind: selName, value: v}, nil
		}
		return selector{}, fmt.Errorf("selector %q: a node is \"id:ID\" or \"name:NAME\"", trunc(s))
	default:
		return selector{}, fmt.Errorf("selector %q: want \"*\", \"tag:NAME\", \"id:ID\" or \"name:NAME\"", trunc(s))
	}
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// Parse parses and checks a policy. The error is a *ParseError saying on
// which line and why.
func Parse(data []byte) (*Policy, error) {
	if len(data) > api.MaxPolicyBytes {
		return nil, &ParseError{0, fmt.Sprintf("policy is %d bytes, at most %d allowed", len(data), api.MaxPolicyBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var raw rawPolicy
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ParseError{0, "policy is empty; to deny everything write \"acls: []\""}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, &ParseError{extra.Line, "a policy is one YAML document; found a second"}
	}
	if raw.ACLs == nil {
		// Distinguish "acls: []" (deny all) from a document without acls.
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err == nil && !hasKey(&doc, "acls") {
			return nil, &ParseError{1, "policy has no \"acls\" list; to deny everything write \"acls: []\""}
		}
	}
	if len(raw.ACLs) > MaxRules {
		return nil, &ParseError{0, fmt.Sprintf("policy has %d rules, at most %d allowed", len(raw.ACLs), MaxRules)}
	}
	if len(raw.Backends) > MaxRules {
		return nil, &ParseError{0, fmt.Sprintf("policy has %d backends rules, at most %d allowed", len(raw.Backends), MaxRules)}
	}
	if len(raw.PQ) > MaxRules {
		return nil, &ParseError{0, fmt.Sprintf("policy has %d pq rules, at most %d allowed", len(raw.PQ), MaxRules)}
	}
	p := &Policy{rules: make([]rule, len(raw.ACLs))}
	for i, r := range raw.ACLs {
		p.rules[i] = rule{line: r.line, src: r.src, dst: r.dst}
	}
	for _, b := range raw.Backends {
		p.backends = append(p.backends, b.backendRule)
	}
	for _, q := range raw.PQ {
		p.pq = append(p.pq, q.pqRule)
	}
	return p, nil
}

func hasKey(doc *yaml.Node, key string) bool {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// yamlError turns a yaml.v3 error into a *ParseError, keeping its line and
// dropping Go type names.
func yamlError(err error) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe
	}
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.ReplaceAll(msg, "in type acl.rawPolicy", "in policy (want acls, backends, pq)")
	msg = strings.ReplaceAll(msg, "into []acl.rawBackendRule", "into a list of backends rules")
	msg = strings.ReplaceAll(msg, "into []acl.rawPQRule", "into a list of pq rules")
	msg = strings.ReplaceAll(msg, "into []acl.rawRule", "into a list of rules")
	msg = strings.ReplaceAll(msg, "into acl.rawPolicy", "into a policy (want a mapping with acls)")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
		msg = strings.TrimSpace(strings.Replace(msg, m[0], "", 1))
	}
	return &ParseError{line, msg}
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
