package matrix

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden cell lists")

// TestCellsGolden expands every matrix file and compares the cell names
// with testdata/NAME.cells (go test -update rewrites them).
func TestCellsGolden(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no matrix files")
	}
	for _, f := range files {
		mf, cells, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, c := range cells {
			b.WriteString(c.Name() + "\n")
		}
		golden := filepath.Join("testdata", mf.Name+".cells")
		if *update {
			os.MkdirAll("testdata", 0o755)
			os.WriteFile(golden, []byte(b.String()), 0o644)
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if b.String() != string(want) {
			t.Errorf("%s expands to\n%s\nwant (%s)\n%s", f, b.String(), golden, want)
		}
	}
}

func TestCellName(t *testing.T) {
	c := Cell{Kind: "throughput", Params: map[string]string{"traffic": "tcp-bulk", "peers": "2", "mtu": "1420", "backend": "wireguard"}}
	if got, want := c.Name(), "throughput/backend=wireguard/mtu=1420/peers=2/traffic=tcp-bulk"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}

func TestParseRefusals(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"", "empty"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: teleport\n    axes: {}\n", "kind"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: route-apply\n    axes: {routes: [\"0\"]}\n", "routes"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: route-apply\n    axes: {routes: [\"10\"], backend: [wireguard]}\n", "axis"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: throughput\n    axes: {backend: [wireguard], mtu: [\"1420\"], peers: [\"2\"], traffic: [tcp-bulk]}\n", "duration"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: handshake\n    axes: {backend: [gre]}\n", "backend"},
		{"version: 1\nname: x\nrepetitions: 0\nsuites: []\n", "repetitions"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: route-apply\n    repetitions: 1001\n    axes: {routes: [\"10\"]}\n", "repetitions 1001: want 1 to 1000"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: route-apply\n    repetitions: -1\n    axes: {routes: [\"10\"]}\n", "repetitions -1"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: handshake\n    axes: {backend: [quic]}\n  - kind: handshake\n    axes: {backend: [quic]}\n", "twice"},
		{"version: 1\nname: x\nrepetitions: 3\nextra: 1\n", "extra"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: netmap-propagation\n    axes: {nodes: [\"10\"], store: [sqlite]}\n", "store"},
		{"version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: netmap-propagation\n    axes: {nodes: [\"10\"]}\n  - kind: netmap-propagation\n    axes: {nodes: [\"10\"], store: [bolt]}\n", "twice"},
	} {
		if _, _, err := Parse("m.yaml", []byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error about %q", c.yaml, err, c.want)
		}
	}
}

// TestOptionalAxis: a suite may leave out the store axis, which then is
// bolt, and a cell on bolt is named without it.
func TestOptionalAxis(t *testing.T) {
	_, cells, err := Parse("m.yaml", []byte("version: 1\nname: x\nrepetitions: 3\nsuites:\n  - kind: netmap-propagation\n    axes: {nodes: [\"10\"], store: [bolt, etcd3]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cells {
		got = append(got, c.Name()+" "+c.Param("store"))
	}
	want := []string{"netmap-propagation/nodes=10 bolt", "netmap-propagation/nodes=10/store=etcd3 etcd3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cells %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("nightly.yaml")
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, cells, err := Parse("m.yaml", data)
		if err == nil && len(cells) == 0 {
			t.Fatal("accepted a matrix with no cells")
		}
	})
}
