package controller_test

import (
	"bytes"
	"fmt"
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

// TestRegistrationRetry: a registration whose answer was lost is sent
// again with a new proof and gets the same node back, with a single-use key
// as with a reusable one, and no second node appears; without a proof (a
// client of version 2) the retry is refused, naming no node.
func TestRegistrationRetry(t *testing.T) {
	c := controllertest.Start(t)
	for _, reusable := range []bool{false, true} {
		t.Run(fmt.Sprintf("reusable=%v", reusable), func(t *testing.T) {
			before, err := c.Admin.Nodes(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			req := api.RegisterRequest{AuthKey: c.AuthKey(reusable), NodeKey: controllertest.Key[api.NodePublic](),
				MachineKey: controllertest.Key[api.MachinePublic](), Hostname: "retry"}
			var first, second api.RegisterResponse
			if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, &first); status != 200 {
				t.Fatalf("register: %d %s", status, body)
			}
			// The answer is lost; the node tries again.
			if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, &second); status != 200 {
				t.Fatalf("retry: %d %s", status, body)
			}
			if second.Node.ID != first.Node.ID || !slices.Equal(second.Node.Addresses, first.Node.Addresses) {
				t.Errorf("retry got node %s %v, want %s %v", second.Node.ID, second.Node.Addresses, first.Node.ID, first.Node.Addresses)
			}
			if m := poll(t, c, second.Credential, 0, 0); m.Self == nil || m.Self.ID != first.Node.ID {
				t.Errorf("the retry's credential does not serve the node")
			}
			after, err := c.Admin.Nodes(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before)+1 {
				t.Errorf("%d nodes after a registration and its retry, want %d", len(after), len(before)+1)
			}
			keys, _ := c.Admin.AuthKeys(ctx(t))
			for _, k := range keys {
				if k.ID == strings.Split(strings.TrimPrefix(req.AuthKey, api.AuthKeyPrefix), "_")[0] && k.Uses != 1 {
					t.Errorf("auth key used %d times by one node, want 1", k.Uses)
				}
			}
			if status, body := c.DoAs(2, http.MethodPost, api.PathRegister, "", req, nil); status != http.StatusConflict || bytes.Contains(body, []byte(first.Node.ID)) {
				t.Errorf("retry without a proof: %d %s, want 409 naming no node", status, body)
			}
		})
	}
}

// TestMachineProofRefusals: a proof made for other keys, or with another
// challenge, or a challenge this controller never issued, is refused; a
// client of version 3 that sends none is told how to get one.
func TestMachineProofRefusals(t *testing.T) {
	c := controllertest.Start(t)
	key := c.AuthKey(true)
	req := api.RegisterRequest{AuthKey: key, NodeKey: controllertest.Key[api.NodePublic](), MachineKey: controllertest.Key[api.MachinePublic]()}
	if err := controllertest.Prove(ctx(t), c.Client, c.URL, &req); err != nil {
		t.Fatal(err)
	}
	otherNode := req
	otherNode.NodeKey = controllertest.Key[api.NodePublic]()
	otherMachine := req
	otherMachine.MachineKey = controllertest.Key[api.MachinePublic]()
	forged := req
	forged.Challenge = "c1." + strings.Repeat("A", 54)
	noProof := api.RegisterRequest{AuthKey: key, NodeKey: req.NodeKey, MachineKey: req.MachineKey}
	noProof.MachineKey = [32]byte{}
	for name, tc := range map[string]struct {
		req    any
		status int
		msg    string
	}{
		"proof for another node key":    {otherNode, http.StatusUnauthorized, "does not match"},
		"proof for another machine key": {otherMachine, http.StatusUnauthorized, "does not match"},
		"forged challenge":              {forged, http.StatusUnauthorized, "not one this controller issued"},
		"no proof":                      {[]byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q}`, key, req.NodeKey, controllertest.Key[api.MachinePublic]())), http.StatusBadRequest, api.PathRegisterChallenge},
		"proof without challenge":       {[]byte(fmt.Sprintf(`{"auth_key":%q,"node_key":%q,"machine_key":%q,"machine_proof":%q}`, key, req.NodeKey, req.MachineKey, req.MachineProof)), http.StatusBadRequest, "go together"},
	} {
		status, body := c.Do(http.MethodPost, api.PathRegister, "", tc.req, nil)
		if status != tc.status || !strings.Contains(string(body), tc.msg) {
			t.Errorf("%s: %d %s, want %d containing %q", name, status, body, tc.status, tc.msg)
		}
	}
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, nil); status != 200 {
		t.Errorf("the genuine proof after the refusals: %d %s", status, body)
	}
}
