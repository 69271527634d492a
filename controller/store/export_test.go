package store_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/storetest"
)

func TestParseExportRefusals(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, "not a logical export"},
		{`{"format":"other","schema":1}`, `format "other"`},
		{`{"format":"rustynet-store-export","schema":9}`, "schema version 9"},
		{`{"format":"rustynet-store-export","schema":1,"extra":1}`, "unknown field"},
		{`{"format":"rustynet-store-export","schema":1} {}`, "data after its end"},
		{`{"format":"rustynet-store-export","schema":1,"nodes":[{"id":""}]}`, "nodes[0]: no ID"},
		{`{"format":"rustynet-store-export","schema":1,"nodes":[{"id":"a","name":"x","addresses":["100.64.0.1/32"]},{"id":"a","name":"y","addresses":["100.64.0.2/32"]}]}`, "appears twice"},
		{`{"format":"rustynet-store-export","schema":1,"nodes":[{"id":"a","name":"x","addresses":["100.64.0.1/32"]},{"id":"b","name":"y","addresses":["100.64.0.1/32"]}]}`, "is also held by node a"},
		{`{"format":"rustynet-store-export","schema":1,"auth_keys":[{"id":"k"},{"id":"k"}]}`, "key k appears twice"},
		{`{"format":"rustynet-store-export","schema":2,"nodes":[{"id":"a","name":"n00000000000000ab","addresses":["100.64.0.1/32"]}]}`, "has the form of a node ID"},
	} {
		_, err := store.ParseExport(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseExport(%.60q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

// TestParseExportMigratesSchema1: an export of a schema-1 store reads as
// schema 2, as opening that store would: a node named like a node ID gets
// the host- prefix, or the next free name when another node holds that.
func TestParseExportMigratesSchema1(t *testing.T) {
	in := &store.Exported{Format: store.ExportFormat, Schema: 1}
	for i, name := range []string{"n00000000000000ab", "host-n00000000000000ab", "web"} {
		n := storetest.Node(i + 1)
		n.Name = name
		in.Nodes = append(in.Nodes, n)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.ParseExport(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if e.Schema != store.SchemaVersion {
		t.Errorf("schema %d after parsing, want %d", e.Schema, store.SchemaVersion)
	}
	var got []string
	for _, n := range e.Nodes {
		got = append(got, string(n.ID)+"="+n.Name)
	}
	if want := "n0001=host-n00000000000000ab-2 n0002=host-n00000000000000ab n0003=web"; strings.Join(got, " ") != want {
		t.Errorf("names after parsing: %s, want %s", strings.Join(got, " "), want)
	}
}

func FuzzParseExport(f *testing.F) {
	f.Add([]byte(`{"format":"rustynet-store-export","schema":1,"revision":3,"nodes":[{"id":"a","name":"x","addresses":["100.64.0.1/32"]}],"auth_keys":[{"id":"k"}],"counters":{"ipam":1}}`))
	f.Add([]byte(`{"format":"rustynet-store-export","schema":1}`))
	f.Add([]byte(`{"format":"rustynet-store-export","schema":1,"nodes":[{"id":"a","name":"n00000000000000ab","addresses":["100.64.0.1/32"]},{"id":"b","name":"host-n00000000000000ab","addresses":["100.64.0.2/32"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := store.ParseExport(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What parses is whole: every node has an ID, a name and an
		// address, and no unique value twice.
		names := map[string]bool{}
		for _, n := range e.Nodes {
			if n.ID == "" || n.Name == "" || len(n.Addresses) == 0 {
				t.Fatalf("accepted a node without ID, name or address: %+v", n)
			}
			// Migrated to this build's schema: no name of the form
			// of a node ID, and still no name twice.
			if api.ValidNodeID(n.Name) || names[n.Name] {
				t.Fatalf("node %s named %q after parsing", n.ID, n.Name)
			}
			names[n.Name] = true
		}
		if e.Counters == nil {
			t.Fatal("nil counters accepted")
		}
	})
}
