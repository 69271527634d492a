package meshload

import (
	"context"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/controllertest"
)

// TestLoadClient: a simulated node registers through the node API and
// long-polls its netmap until it is removed.
func TestLoadClient(t *testing.T) {
	c := controllertest.Start(t)
	hc := controllertest.NewClient(t, c.CAFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, cred, err := register(ctx, hc, c.URL, c.AuthKey(true), 1)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	done := make(chan [2]int, 1)
	go func() {
		ok, failed := pollLoop(ctx, hc, c.URL, cred)
		done <- [2]int{ok, failed}
	}()
	// A second registration is a change the first node's poll returns with.
	if _, _, err := register(ctx, hc, c.URL, c.AuthKey(true), 2); err != nil {
		t.Fatalf("register: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := c.Admin.RemoveNode(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got[0] < 1 || got[1] != 0 {
			t.Fatalf("%d polls answered, %d failed; want at least one answered and none failed before the removal ended the loop", got[0], got[1])
		}
	case <-ctx.Done():
		t.Fatal("the poll loop did not end when its node was removed")
	}
}
