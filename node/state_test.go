package node

import (
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
