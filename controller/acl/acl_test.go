package acl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/controller/api"
)

const webDB = `# web may reach db; ops may reach everything
acls:
  - action: accept
    src: ["tag:web"]
    dst: ["tag:db"]
  - action: accept
    src: ["node:ops"]
    dst: ["*"]
`

func TestAllows(t *testing.T) {
	p, err := Parse([]byte(webDB))
	if err != nil {
		t.Fatal(err)
	}
	web := &Subject{ID: "n1", Name: "web1", Tags: []string{"tag:web"}}
	db := &Subject{ID: "n2", Name: "db1", Tags: []string{"tag:db"}}
	ops := &Subject{ID: "n3", Name: "ops"}
	other := &Subject{ID: "n4", Name: "other"}
	for _, c := range []struct {
		src, dst *Subject
		want     bool
	}{
		{web, db, true},
		{db, web, false},
		{web, other, false},
		{ops, other, true},
		{ops, db, true},
		{other, ops, false},
	} {
		if got := p.Allows(c.src, c.dst); got != c.want {
			t.Errorf("Allows(%s, %s) = %v, want %v", c.src.Name, c.dst.Name, got, c.want)
		}
	}
	if !p.Visible(db, web) {
		t.Error("Visible(db, web) = false, want true (web may reach db)")
	}
	if p.Visible(web, other) {
		t.Error("Visible(web, other) = true, want false")
	}
	// A node whose name was not bound (its own hostname) is not ops.
	if p.Allows(&Subject{ID: "n5"}, db) {
		t.Error("node:ops matched a node with no bound name")
	}
}

// A node cannot pass for another by its name: id: selectors match only the
// ID, name: only the bound name, and node: is read as one or the other by
// the form of its value, never both.
func TestIdentityUnforgeable(t *testing.T) {
	const victim = "n0123456789abcdef"
	p, err := Parse([]byte(`acls:
  - action: accept
    src: ["id:` + victim + `"]
    dst: ["*"]
  - action: accept
    src: ["node:` + victim + `"]
    dst: ["tag:legacy"]
  - action: accept
    src: ["name:web1"]
    dst: ["tag:db"]
`))
	if err != nil {
		t.Fatal(err)
	}
	db := &Subject{ID: "n1111111111111111", Tags: []string{"tag:db", "tag:legacy"}}
	for _, c := range []struct {
		who  *Subject
		want bool
	}{
		{&Subject{ID: victim}, true},
		{&Subject{ID: "n2222222222222222", Name: victim}, false},
		{&Subject{ID: "n2222222222222222", Name: "web1"}, true},
		{&Subject{ID: "web1"}, false},
	} {
		if got := p.Allows(c.who, db); got != c.want {
			t.Errorf("Allows(%+v, db) = %v, want %v", *c.who, got, c.want)
		}
	}
	for _, bad := range []string{"id:web1", "name:" + victim, "id:N0123456789ABCDEF", "node:-x"} {
		if _, err := Parse([]byte("acls:\n  - action: accept\n    src: [\"" + bad + "\"]\n    dst: [\"*\"]\n")); err == nil {
			t.Errorf("Parse(selector %q) succeeded, want an error", bad)
		}
	}
}

func TestAllowAllAndDenyAll(t *testing.T) {
	a, b := &Subject{ID: "n1", Name: "a"}, &Subject{ID: "n2", Name: "b"}
	if !AllowAll().Allows(a, b) || !AllowAll().IsAllowAll() {
		t.Error("AllowAll does not allow")
	}
	p, err := Parse([]byte("acls: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Allows(a, b) || p.IsAllowAll() {
		t.Error(`"acls: []" allows a connection, want deny all`)
	}
}

func TestParseRefusals(t *testing.T) {
	for _, c := range []struct {
		policy   string
		wantLine int
		wantMsg  string
	}{
		{"", 0, "empty"},
		{"nothing: here\n", 1, "field nothing not found"},
		{"# comment only\nversion: 1\n", 2, "field version not found"},
		{"acls:\n  - action: accept\n    src: [\"tag:web\"]\n    dst: [\"tag:Bad\"]\n", 4, `selector "tag:Bad"`},
		{"acls:\n  - action: allow\n    src: ['*']\n    dst: ['*']\n", 2, `action "allow"`},
		{"acls:\n  - action: accept\n    src: ['*']\n    dst: ['*']\n    ports: [22]\n", 5, `unknown field "ports"`},
		{"acls:\n  - action: accept\n    dst: ['*']\n", 2, "rule has no src"},
		{"acls:\n  - action: accept\n    src: []\n    dst: ['*']\n", 3, "src is empty"},
		{"acls:\n  - action: accept\n    src: ['*'\n", 2, "did not find expected"},
		{"acls: []\n---\nacls: []\n", 2, "second"},
		{"acls:\n  - action: accept\n    src: ['user:bob']\n    dst: ['*']\n", 3, "want \"*\""},
	} {
		_, err := Parse([]byte(c.policy))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error = %v, want a *ParseError", c.policy, err)
			continue
		}
		if pe.Line != c.wantLine || !strings.Contains(pe.Msg, c.wantMsg) {
			t.Errorf("Parse(%q) = line %d %q, want line %d containing %q", c.policy, pe.Line, pe.Msg, c.wantLine, c.wantMsg)
		}
	}
}

// TestParsePolicySizeLimit: the parser takes a policy of api.MaxPolicyBytes,
// the one policy size limit, and refuses one byte more, naming the limit.
func TestParsePolicySizeLimit(t *testing.T) {
	const head = "acls: []\n#"
	atLimit := head + strings.Repeat("x", api.MaxPolicyBytes-len(head))
	if _, err := Parse([]byte(atLimit)); err != nil {
		t.Errorf("Parse(%d bytes) error = %v, want it accepted", len(atLimit), err)
	}
	over := atLimit + "x"
	want := fmt.Sprintf("at most %d allowed", api.MaxPolicyBytes)
	if _, err := Parse([]byte(over)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse(%d bytes) error = %v, want a refusal containing %q", len(over), err, want)
	}
}

// FuzzParse checks that no input crashes the parser, that every refusal is a
// *ParseError with a message, and that an accepted policy can be evaluated.
func FuzzParse(f *testing.F) {
	for _, s := range []string{webDB, "", "acls: []", "acls:\n  - action: accept\n    src: ['*']\n    dst: ['*']\n",
		"acls: [\n", "a: &a [*a, *a]\nacls: []\n", "acls:\n  - {action: accept, src: ['node:x'], dst: ['tag:y']}\n",
		"%YAML 1.1\n---\nacls: []\n", "acls: !!binary aGVsbG8=\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("Parse(%q) error %v (%T) is not a *ParseError with a message", data, err, err)
			}
			return
		}
		s := &Subject{ID: "n1", Name: "x", Tags: []string{"tag:y"}}
		p.Allows(s, s)
		if m := p.PQMode(s); !api.ValidPQMode(m) {
			t.Fatalf("PQMode = %q", m)
		}
	})
}

func TestPQRules(t *testing.T) {
	p, err := Parse([]byte(`acls: []
pq:
  - nodes: ["tag:db"]
    mode: require
  - nodes: ["*"]
    mode: prefer
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.PQMode(&Subject{ID: "n1", Tags: []string{"tag:db"}}); got != api.PQRequire {
		t.Errorf("tag:db: %q, want require (the first rule that selects it)", got)
	}
	if got := p.PQMode(&Subject{ID: "n2"}); got != api.PQPrefer {
		t.Errorf("another node: %q, want prefer", got)
	}
	if got := AllowAll().PQMode(&Subject{ID: "n3"}); got != api.PQOff {
		t.Errorf("with no policy: %q, want off", got)
	}
	none, err := Parse([]byte("acls: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := none.PQMode(&Subject{ID: "n4"}); got != api.PQOff {
		t.Errorf("with no pq rules: %q, want off", got)
	}
	for bad, want := range map[string]string{
		"acls: []\npq:\n  - nodes: [\"*\"]\n":                                    "pq rule has no mode",
		"acls: []\npq:\n  - nodes: [\"*\"]\n    mode: always\n":                  "want off, prefer or require",
		"acls: []\npq:\n  - nodes: [\"*\"]\n    mode: prefer\n    until: 2027\n": "unknown field \"until\" in pq rule",
		"acls: []\npq:\n  - mode: prefer\n":                                      "pq rule has no nodes",
	} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", bad, err, want)
		}
	}
}

func TestBackendRules(t *testing.T) {
	p, err := Parse([]byte(`acls: []
backends:
  - nodes: ["tag:edge"]
    backend: quic
  - nodes: ["node:legacy"]
    backend: wireguard
`))
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"wireguard", "quic"}
	for _, c := range []struct {
		s         *Subject
		supported []string
		want      string
	}{
		{&Subject{ID: "n1", Name: "e", Tags: []string{"tag:edge"}}, both, "quic"},
		{&Subject{ID: "n2", Name: "e2", Tags: []string{"tag:edge"}}, []string{"wireguard"}, "wireguard"},
		{&Subject{ID: "n3", Name: "other"}, []string{"quic", "wireguard"}, "quic"},
		{&Subject{ID: "n4", Name: "legacy"}, []string{"quic", "wireguard"}, "wireguard"},
		{&Subject{ID: "n5", Name: "none"}, nil, ""},
	} {
		if got := p.Backend(c.s, c.supported); got != c.want {
			t.Errorf("Backend(%s, %v) = %q, want %q", c.s.Name, c.supported, got, c.want)
		}
	}
	if got := AllowAll().Backend(&Subject{}, both); got != "wireguard" {
		t.Errorf("AllowAll().Backend = %q, want the node's first", got)
	}
	for _, bad := range []string{
		"acls: []\nbackends:\n  - nodes: [\"*\"]\n",
		"acls: []\nbackends:\n  - nodes: [\"*\"]\n    backend: Quic!\n",
		"acls: []\nbackends:\n  - nodes: [\"*\"]\n    backend: quic\n    weight: 2\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
