package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/node/key"
)

// TestPendingKeySaved: a pending node key is kept in state.json (0600)
// and read back; without one, state.json does not mention it.
func TestPendingKeySaved(t *testing.T) {
	dir := t.TempDir()
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "pending_node_key") {
		t.Errorf("state.json without a pending key = %s, want no pending_node_key", raw)
	}
	pk := key.NewNode()
	st.PendingNodeKey = pk
	if err := saveJSON(dir, stateFile, st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.PendingNodeKey.Equal(pk) || !got.NodeKey.Equal(st.NodeKey) {
		t.Errorf("loadState after saving a pending key: pending %s, node %s; want %s, %s",
			got.PendingNodeKey.Public(), got.NodeKey.Public(), pk.Public(), st.NodeKey.Public())
	}
}

// TestStateControllerCompat: a state file from before replicas, which
// names the one controller it registered with, loads; its credential is
// kept when the node starts with that controller among its replicas (in
// any spelling of its URL) and dropped for another controller; the
// replicas the controller announced count as the same controller too.
func TestStateControllerCompat(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadState(dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	var old map[string]any
	if err := json.Unmarshal(raw, &old); err != nil {
		t.Fatal(err)
	}
	old["credential"], old["node_id"], old["controller"] = "rnc_n1_secret", "n1", "https://Ctl.example:8443/"
	raw, err = json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatalf("loading a state file from before replicas: %v", err)
	}
	if st.Credential != "rnc_n1_secret" || st.Controller != "https://Ctl.example:8443/" || st.Controllers != nil {
		t.Fatalf("loaded %+v", st)
	}
	for _, tc := range []struct {
		urls []string
		want bool
	}{
		{[]string{"https://ctl.example:8443"}, true},
		{[]string{"https://b.example:8443", "https://ctl.example:8443"}, true},
		{[]string{"https://other.example:8443"}, false},
		{[]string{"https://ctl.example:443"}, false},
	} {
		if got := sameController(st, tc.urls); got != tc.want {
			t.Errorf("state of controller %s: sameController(%q) = %v, want %v", st.Controller, tc.urls, got, tc.want)
		}
	}
	st.Controllers = []string{"https://r1.example:8443", "https://r2.example:8443"}
	if !sameController(st, []string{"https://r2.example:8443"}) {
		t.Errorf("sameController(%q) with the controller announcing it = false, want true", "https://r2.example:8443")
	}
	if !sameController(&persistent{}, []string{"https://any.example:1"}) {
		t.Error("a state that names no controller: sameController = false, want true")
	}
}
