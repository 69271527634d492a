package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// ExportFormat names the logical export: every record of a store as JSON,
// independent of the engine, so that a bbolt store restores into etcd and
// back.
const ExportFormat = "rustynet-store-export"

// MaxExportBytes bounds an export that Import reads (a store of 100,000
// nodes is under 100 MiB).
const MaxExportBytes = 256 << 20

// Exported is the logical export of a store.
type Exported struct {
	Format string `json:"format"`
	// Schema is the schema version of the records.
	Schema uint64 `json:"schema"`
	// Revision is the store's revision when it was exported; Import
	// leaves the new store at RestoredRevision, far past it, so that no
	// node's netmap revision from before is mistaken for the restored
	// state.
	Revision uint64            `json:"revision"`
	Nodes    []*Node           `json:"nodes"`
	AuthKeys []*AuthKey        `json:"auth_keys"`
	Policy   *Policy           `json:"policy,omitempty"`
	Counters map[string]uint64 `json:"counters"`
}

// RestoreGap and RestoredRevision set the store's revision after a
// restore. The nodes run on while the control plane is lost, and hold
// revisions of the lost history, newer than the backup; after an earlier
// restore (of this backup or another), revisions of that history too. Had
// the restored store gone on from the backup's revision, a revision a node
// holds could fall inside the restored replica's own history and be
// answered with a delta from the wrong one: peers the backup never held
// kept, changes made since missed. So the restored revision is past both:
// the backup's plus a gap no store writes between a backup and its
// restore (2^32), and the restore's time in microseconds since 1970, which
// no history restored earlier can have reached (that would take more
// than one write a microsecond since it was restored; it needs a clock not
// set back by more than the gap's worth). A replica answers every
// revision below its own history with a full netmap. (etcd's `snapshot
// restore --bump-revision` does the same for its watchers.)
const RestoreGap = 1 << 32

// RestoredRevision is the store's revision after e is restored at now.
func RestoredRevision(e *Exported, now time.Time) uint64 {
	return max(e.Revision+RestoreGap, uint64(max(now.UnixMicro(), 0)))
}

// Loader is a store that can take a whole export: Load writes it into the
// store, which must be empty, and leaves the store's revision at
// RestoredRevision(e, the time of the load). Both stores implement it.
type Loader interface {
	Load(ctx context.Context, e *Exported) error
}

// Export writes every record of s, read in one transaction, to w.
func Export(ctx context.Context, s Store, w io.Writer) (int64, error) {
	e := &Exported{Format: ExportFormat, Schema: SchemaVersion, Nodes: []*Node{}, AuthKeys: []*AuthKey{}, Counters: map[string]uint64{}}
	err := s.View(ctx, func(tx Tx) error {
		e.Revision = tx.Revision()
		e.Nodes, e.AuthKeys, e.Policy, e.Counters = e.Nodes[:0], e.AuthKeys[:0], nil, map[string]uint64{}
		if err := tx.ForEachNode(func(n *Node) error { e.Nodes = append(e.Nodes, n); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachAuthKey(func(k *AuthKey) error { e.AuthKeys = append(e.AuthKeys, k); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachCounter(func(name string, v uint64) error { e.Counters[name] = v; return nil }); err != nil {
			return err
		}
		p, err := tx.Policy()
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			e.Policy = p
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	enc := json.NewEncoder(bw)
	enc.SetIndent("", " ")
	if err := enc.Encode(e); err != nil {
		return cw.n, err
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ParseExport reads and checks a logical export: its format and schema,
// that every record is whole, and that no two nodes hold one unique value.
// Every refusal says what is wrong and where.
func ParseExport(r io.Reader) (*Exported, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxExportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the export: %w", err)
	}
	if len(data) > MaxExportBytes {
		return nil, fmt.Errorf("the export is over %d MiB", MaxExportBytes>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Exported
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("not a logical export (%s): %w", ExportFormat, err)
	}
	if dec.More() {
		return nil, errors.New("the export has data after its end")
	}
	if e.Format != ExportFormat {
		return nil, fmt.Errorf("format %q: want %q (a bbolt backup restores with `restore FILE`, an etcd snapshot with etcdutl)", e.Format, ExportFormat)
	}
	if e.Schema == 0 || e.Schema > SchemaVersion {
		return nil, fmt.Errorf("the export has schema version %d; this build reads 1 to %d", e.Schema, SchemaVersion)
	}
	seen := map[string]api.NodeID{}
	ids := map[api.NodeID]bool{}
	for i, n := range e.Nodes {
		if n == nil || n.ID == "" {
			return nil, fmt.Errorf("nodes[%d]: no ID", i)
		}
		if ids[n.ID] {
			return nil, fmt.Errorf("nodes[%d]: node %s appears twice", i, n.ID)
		}
		ids[n.ID] = true
		if n.Name == "" || len(n.Addresses) == 0 {
			return nil, fmt.Errorf("node %s: no name or no address", n.ID)
		}
		if e.Schema >= 2 && api.ValidNodeID(n.Name) {
			return nil, fmt.Errorf("node %s: the name %s has the form of a node ID, which no store of schema 2 or later holds", n.ID, n.Name)
		}
		unique := []string{IndexMachineKey + " " + n.MachineKey.String(), IndexNodeKey + " " + n.NodeKey.String(), IndexName + " " + n.Name}
		for _, a := range n.Addresses {
			unique = append(unique, IndexAddress+" "+a.Addr().String())
		}
		for _, u := range unique {
			if owner, dup := seen[u]; dup {
				return nil, fmt.Errorf("node %s: %s is also held by node %s", n.ID, u, owner)
			}
			seen[u] = n.ID
		}
	}
	keys := map[string]bool{}
	for i, k := range e.AuthKeys {
		if k == nil || k.ID == "" {
			return nil, fmt.Errorf("auth_keys[%d]: no ID", i)
		}
		if keys[k.ID] {
			return nil, fmt.Errorf("auth_keys[%d]: key %s appears twice", i, k.ID)
		}
		keys[k.ID] = true
	}
	if e.Counters == nil {
		e.Counters = map[string]uint64{}
	}
	if err := migrateExport(&e); err != nil {
		return nil, fmt.Errorf("migrate the export from schema %d: %w", e.Schema, err)
	}
	slices.SortFunc(e.Nodes, func(a, b *Node) int { return cmp.Compare(a.ID, b.ID) })
	return &e, nil
}

// Import reads a logical export from r and loads it into s, which must be
// empty (a new bbolt file, or an etcd prefix nothing was written under).
func Import(ctx context.Context, s Store, r io.Reader) (*Exported, error) {
	e, err := ParseExport(r)
	if err != nil {
		return nil, err
	}
	l, ok := s.(Loader)
	if !ok {
		return nil, fmt.Errorf("%T cannot load an export", s)
	}
	if err := l.Load(ctx, e); err != nil {
		return nil, err
	}
	return e, nil
}

// CheckEmpty returns an error unless tx sees an empty store.
func CheckEmpty(tx Tx) error {
	if tx.Revision() != 0 {
		return fmt.Errorf("the store is not empty (revision %d): restore only into a new one", tx.Revision())
	}
	empty := errors.New("not empty")
	if err := tx.ForEachNode(func(*Node) error { return empty }); err != nil {
		return fmt.Errorf("the store is not empty (it holds nodes): restore only into a new one")
	}
	if err := tx.ForEachAuthKey(func(*AuthKey) error { return empty }); err != nil {
		return fmt.Errorf("the store is not empty (it holds auth keys): restore only into a new one")
	}
	return nil
}

// LoadInto writes e's records through tx (used by the stores' Load): the
// caller has checked that the store is empty.
func LoadInto(tx Tx, nodes []*Node, keys []*AuthKey, counters map[string]uint64, policy *Policy) error {
	for _, n := range nodes {
		if err := tx.PutNode(n); err != nil {
			return fmt.Errorf("node %s: %w", n.ID, err)
		}
	}
	for _, k := range keys {
		if err := tx.PutAuthKey(k); err != nil {
			return fmt.Errorf("auth key %s: %w", k.ID, err)
		}
	}
	for name, v := range counters {
		if err := tx.SetCounter(name, v); err != nil {
			return fmt.Errorf("counter %s: %w", name, err)
		}
	}
	if policy != nil {
		if err := tx.PutPolicy(policy); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	return nil
}
