package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rustynet/rustynet/internal/atomicfile"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/key"
)

// Files in the state directory. All are written 0600 through a temporary
// file and a rename, so a crash leaves the old version or the new one.
const (
	stateFile  = "state.json"
	netmapFile = "netmap.json"
)

// persistent is what the node keeps across restarts.
type persistent struct {
	NodeKey    key.NodePrivate    `json:"node_key"`
	MachineKey key.MachinePrivate `json:"machine_key"`
	// PendingNodeKey is a new node key on its way to the controller: it is
	// saved before it is sent, and becomes NodeKey once the controller
	// confirms it (its answer, or a netmap that shows it). A node that
	// starts with one sends it again; the controller answers at once for
	// a key it already holds.
	PendingNodeKey key.NodePrivate `json:"pending_node_key,omitzero"`
	// Credential authenticates the node to the controller; empty until
	// registered and after the controller removed the node.
	Credential string     `json:"credential,omitempty"`
	NodeID     api.NodeID `json:"node_id,omitempty"`
	Controller string     `json:"controller,omitempty"`
	// ListenPort is kept so that peers find the node where they last saw
	// it after a restart, even with the controller down.
	ListenPort uint16 `json:"listen_port,omitempty"`
}

// loadState reads DIR/state.json, creating the directory (0700) and fresh
// keys on first start.
func loadState(dir string) (*persistent, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	var p persistent
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.NodeKey, p.MachineKey = key.NewNode(), key.NewMachine()
		if err := saveJSON(dir, stateFile, &p); err != nil {
			return nil, err
		}
		return &p, nil
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if p.NodeKey.IsZero() || p.MachineKey.IsZero() {
		return nil, fmt.Errorf("state %s has no keys", filepath.Join(dir, stateFile))
	}
	return &p, nil
}

// loadNetmap reads the cached netmap, or returns nil if there is none.
func loadNetmap(dir string) (*api.MapResponse, error) {
	data, err := os.ReadFile(filepath.Join(dir, netmapFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m api.MapResponse
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cached netmap: %w", err)
	}
	if !m.Full || m.Self == nil {
		return nil, errors.New("cached netmap is not a full netmap")
	}
	return &m, nil
}

func saveJSON(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o600)
}
