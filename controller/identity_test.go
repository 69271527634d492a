package controller_test

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
)

// Attacks on identities in the ACL, as a malicious node with a valid auth
// key would try them. Each used to get through.

// TestHostnameCannotPassForAnID: a node that registers with the victim's
// ID as its hostname does not inherit the victim's rules, in its own
// netmap or in anyone else's.
func TestHostnameCannotPassForAnID(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	victim := c.Register(key, "victim")
	db := c.Register(c.AuthKey(false, "tag:db"), "db")
	for _, sel := range []string{"node:" + string(victim.Node.ID), "id:" + string(victim.Node.ID)} {
		t.Run(sel, func(t *testing.T) {
			if _, err := c.Admin.SetPolicy(ctx(t), "acls:\n  - action: accept\n    src: [\""+sel+"\"]\n    dst: [\"tag:db\"]\n"); err != nil {
				t.Fatal(err)
			}
			attacker := c.Register(key, string(victim.Node.ID))
			if attacker.Node.Name == string(victim.Node.ID) {
				t.Errorf("the attacker got the name %q, which is the victim's ID", attacker.Node.Name)
			}
			if got := peerIDs(poll(t, c, attacker.Credential, 0, 0).Peers); len(got) != 0 {
				t.Errorf("the attacker's peers = %v, want none", got)
			}
			if got := peerIDs(poll(t, c, db.Credential, 0, 0).Peers); !slices.Equal(got, []api.NodeID{victim.Node.ID}) {
				t.Errorf("db's peers = %v, want only the victim %s", got, victim.Node.ID)
			}
		})
	}
}

// TestNamesAreBoundByTheAdmin: "name:" rules match only a name the admin
// bound (through an auth key or a rename), never one a node chose; so a
// node can neither take a name before its owner registers nor inherit the
// name of a removed node.
func TestNamesAreBoundByTheAdmin(t *testing.T) {
	c := controllertest.Start(t)
	db := c.Register(c.AuthKey(false, "tag:db"), "db")
	if _, err := c.Admin.SetPolicy(ctx(t), "acls:\n  - action: accept\n    src: [\"name:web1\", \"node:ops\"]\n    dst: [\"tag:db\"]\n"); err != nil {
		t.Fatal(err)
	}
	anyone := c.AuthKey(true)

	// A squatter registers as web1 before its owner does: it gets the
	// name as a label, and no rule.
	squatter := c.Register(anyone, "web1")
	if got := peerIDs(poll(t, c, squatter.Credential, 0, 0).Peers); len(got) != 0 {
		t.Errorf("squatter named %q has peers %v, want none", squatter.Node.Name, got)
	}
	// The rightful web1 registers with a key that binds the name: it gets
	// the name and the rule; the squatter gives the name up.
	web1 := c.Register(c.NamedAuthKey("web1"), "anything")
	if web1.Node.Name != "web1" {
		t.Fatalf("node registered with a key bound to web1 is named %q", web1.Node.Name)
	}
	if got := peerIDs(poll(t, c, web1.Credential, 0, 0).Peers); !slices.Equal(got, []api.NodeID{db.Node.ID}) {
		t.Errorf("web1's peers = %v, want [%s]", got, db.Node.ID)
	}
	nodes, err := c.Admin.Nodes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		switch n.ID {
		case squatter.Node.ID:
			if n.Name == "web1" || n.NameSource != api.NameFromHostname {
				t.Errorf("squatter after web1 registered: name %q from %s, want another name from the hostname", n.Name, n.NameSource)
			}
		case web1.Node.ID:
			if n.NameSource != api.NameFromAuthKey {
				t.Errorf("web1's name source = %q, want %q", n.NameSource, api.NameFromAuthKey)
			}
		}
	}
	// A second key bound to web1 cannot take the name from its holder.
	var out api.RegisterResponse
	req := api.RegisterRequest{AuthKey: c.NamedAuthKey("web1"), NodeKey: controllertest.Key[api.NodePublic](), MachineKey: controllertest.Key[api.MachinePublic]()}
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, &out); status != http.StatusConflict || !bytes.Contains(body, []byte("bound to another node")) {
		t.Errorf("register with a second key bound to web1: %d %s, want 409", status, body)
	}

	// ops is removed; a node that asks for its name gets a label only.
	ops := c.Register(c.NamedAuthKey("ops"), "ops")
	if got := peerIDs(poll(t, c, ops.Credential, 0, 0).Peers); !slices.Equal(got, []api.NodeID{db.Node.ID}) {
		t.Fatalf("ops's peers = %v, want [%s]", got, db.Node.ID)
	}
	if err := c.Admin.RemoveNode(ctx(t), string(ops.Node.ID)); err != nil {
		t.Fatal(err)
	}
	heir := c.Register(anyone, "ops")
	if heir.Node.Name != "ops" {
		t.Fatalf("the heir is named %q; this test wants it to have the free name ops", heir.Node.Name)
	}
	if got := peerIDs(poll(t, c, heir.Credential, 0, 0).Peers); len(got) != 0 {
		t.Errorf("a node that took a removed node's name has peers %v, want none", got)
	}
	// The admin binds it: now the rule matches.
	renamed, err := c.Admin.UpdateNode(ctx(t), string(heir.Node.ID), api.UpdateNodeRequest{Name: "ops"})
	if err != nil || renamed.NameSource != api.NameFromAdmin {
		t.Fatalf("bind ops to the heir: %+v, %v", renamed, err)
	}
	if got := peerIDs(poll(t, c, heir.Credential, 0, 0).Peers); !slices.Equal(got, []api.NodeID{db.Node.ID}) {
		t.Errorf("after the admin bound ops, its peers = %v, want [%s]", got, db.Node.ID)
	}
}

// TestNamedAuthKeyRefusals: a key that binds a name registers one node,
// and the name must be one no ID can be confused with.
func TestNamedAuthKeyRefusals(t *testing.T) {
	c := controllertest.Start(t)
	for _, req := range []api.CreateAuthKeyRequest{
		{TTLSeconds: 60, Name: "web1", Reusable: true},
		{TTLSeconds: 60, Name: "n0123456789abcdef"},
		{TTLSeconds: 60, Name: "Web_1"},
	} {
		if _, err := c.Admin.CreateAuthKey(ctx(t), req); err == nil {
			t.Errorf("CreateAuthKey(%+v) succeeded, want a refusal", req)
		}
	}
	a := c.Register(c.AuthKey(false), "a")
	if _, err := c.Admin.UpdateNode(ctx(t), string(a.Node.ID), api.UpdateNodeRequest{Name: string(a.Node.ID)}); err == nil ||
		!strings.Contains(err.Error(), "node ID") {
		t.Errorf("rename to an ID-shaped name: %v, want a refusal", err)
	}
}
