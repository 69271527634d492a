package store_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/controller/store"
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
	} {
		_, err := store.ParseExport(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseExport(%.60q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func FuzzParseExport(f *testing.F) {
	f.Add([]byte(`{"format":"rustynet-store-export","schema":1,"revision":3,"nodes":[{"id":"a","name":"x","addresses":["100.64.0.1/32"]}],"auth_keys":[{"id":"k"}],"counters":{"ipam":1}}`))
	f.Add([]byte(`{"format":"rustynet-store-export","schema":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := store.ParseExport(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What parses is whole: every node has an ID, a name and an
		// address, and no unique value twice.
		for _, n := range e.Nodes {
			if n.ID == "" || n.Name == "" || len(n.Addresses) == 0 {
				t.Fatalf("accepted a node without ID, name or address: %+v", n)
			}
		}
		if e.Counters == nil {
			t.Fatal("nil counters accepted")
		}
	})
}
