package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/rustynet/rustynet/internal/atomicfile"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/control"
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
	// Controller is the controller replica the node registered through
	// (the one controller, in state files from before replicas), and
	// Controllers the replicas the controller announced, as last saved.
	// They name the controller the credential belongs to
	// (sameController); the node tries the announced replicas first
	// after a restart.
	Controller  string   `json:"controller,omitempty"`
	Controllers []string `json:"controllers,omitempty"`
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

// knownControllers returns the controller URLs the state names, in
// canonical form (control.CanonicalURL) where they have one.
func (p *persistent) knownControllers() []string {
	var out []string
	for _, u := range append([]string{p.Controller}, p.Controllers...) {
		if u == "" {
			continue
		}
		if c, err := control.CanonicalURL(u); err == nil {
			u = c
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// sameController reports whether the controller at urls (canonical) is
// the one the state's credential belongs to: the state names no
// controller, or one of urls is a replica it names. A node started with
// another controller's URLs registers again.
func sameController(p *persistent, urls []string) bool {
	known := p.knownControllers()
	return len(known) == 0 || slices.ContainsFunc(urls, func(u string) bool { return slices.Contains(known, u) })
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
