package containers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rustynet/rustynet/internal/require"
)

// TestProcessLoadClient runs the DR load client as a Process beside a
// controller: its files go in before it starts, it exits on its own, and
// its log of acknowledged writes comes out with CopyFile.
func TestProcessLoadClient(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	n := NewNetwork(ctx, t)
	c := StartController(ctx, t, n)
	key := c.AuthKey(ctx, t, true)
	p := StartProcess(ctx, t, Process{
		What: "load client", Image: "loadclient", Bin: Binary(t, "github.com/rustynet/rustynet/internal/drload/loadclient"),
		Args: []string{"--controllers", c.URL, "--ca", "/ca.pem", "--auth-key-file", "/key", "--duration", "3s",
			"--registrations-per-minute", "300", "--endpoint-reports-per-minute", "300", "--out", DataDir + "/acks.jsonl"},
		Networks: []Attachment{{Network: n}},
		Files:    map[string][]byte{"/ca.pem": c.CAPEM, "/key": []byte(key)},
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if code, err := p.Wait(wctx); err != nil || code != 0 {
		l, _ := p.Logs(ctx)
		t.Fatalf("load client: exit %d, %v\n%s", code, err, l)
	}
	b, err := CopyFile(ctx, p.Container, DataDir+"/acks.jsonl", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r struct {
			OK bool `json:"ok"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.OK {
			ok++
		}
	}
	if ok < 10 {
		t.Errorf("%d writes acknowledged in 3 s at 10 a second:\n%s", ok, b)
	}
}
