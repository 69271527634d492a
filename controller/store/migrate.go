package store

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/rustynet/rustynet/controller/api"
)

// IDShapedNamePrefix is what schema 2 puts before a name that has the form
// of a node ID, as registration has done since capability version 3.
const IDShapedNamePrefix = "host-"

// RenameIDShapedNames is the migration to schema 2. Controllers before
// capability version 3 named a node after its hostname even when the
// hostname had the form of a node ID ("n" and 16 hex digits), so a
// schema-1 store may hold a node whose name is another node's ID, or could
// become one: a bare policy selector of that form means "id:", and an
// admin reading the node list cannot tell the two apart. Each such node is
// renamed IDShapedNamePrefix+name, or that with the first free "-N"
// suffix, keeping its ID, keys and addresses. Names were never bound
// before schema 2 could exist (binding came with capability version 3), so
// no policy selector names these nodes. It renames at most limit nodes (all
// when limit is 0), so that a store with limits on a transaction's size can
// run it in batches until it returns fewer, and returns the nodes renamed.
func RenameIDShapedNames(tx Tx, limit int) ([]*Node, error) {
	var due []*Node
	if err := tx.ForEachNode(func(n *Node) error {
		if api.ValidNodeID(n.Name) {
			due = append(due, n.Clone())
		}
		if limit > 0 && len(due) == limit {
			return errBatchFull
		}
		return nil
	}); err != nil && !errors.Is(err, errBatchFull) {
		return nil, err
	}
	taken := func(name string) (bool, error) {
		_, err := tx.NodeIDBy(IndexName, name)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return due, renameIDShaped(due, taken, tx.PutNode)
}

// renameIDShaped gives each of nodes, whose names have the form of a node
// ID, the first free name of IDShapedNamePrefix+name, then -2, -3 and so on,
// and puts it.
func renameIDShaped(nodes []*Node, taken func(string) (bool, error), put func(*Node) error) error {
	for _, n := range nodes {
		name, err := freeName(taken, IDShapedNamePrefix+n.Name)
		if err != nil {
			return fmt.Errorf("rename node %s (%s): %w", n.ID, n.Name, err)
		}
		n.Name = name
		if err := put(n); err != nil {
			return fmt.Errorf("rename node %s to %s: %w", n.ID, name, err)
		}
	}
	return nil
}

// migrateExport brings the records of an export of an earlier schema to
// this build's, as opening a store of that schema would.
func migrateExport(e *Exported) error {
	if e.Schema < 2 {
		names := map[string]bool{}
		var due []*Node
		for _, n := range e.Nodes {
			names[n.Name] = true
			if api.ValidNodeID(n.Name) {
				due = append(due, n)
			}
		}
		taken := func(name string) (bool, error) { return names[name], nil }
		put := func(n *Node) error { names[n.Name] = true; return nil }
		if err := renameIDShaped(due, taken, put); err != nil {
			return err
		}
	}
	e.Schema = SchemaVersion
	return nil
}

var errBatchFull = errors.New("batch full")

// freeName returns base, or base-N with the smallest N >= 2, whichever is
// not taken.
func freeName(taken func(string) (bool, error), base string) (string, error) {
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			name = base + "-" + strconv.Itoa(i)
		}
		if t, err := taken(name); err != nil || !t {
			return name, err
		}
	}
	return "", fmt.Errorf("no free name from %s-2 to %s-999", base, base)
}
