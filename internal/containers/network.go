package containers

import (
	"context"

	"github.com/testcontainers/testcontainers-go/network"
)

// Network is a Docker bridge network for one test. Containers on it reach
// each other by their network aliases. It is removed when the test ends,
// after the containers started on it.
type Network struct {
	Name string
}

// NewNetwork creates a network and registers its removal with t.
func NewNetwork(ctx context.Context, t T) *Network {
	t.Helper()
	setup(t)
	nw, err := network.New(ctx, network.WithLabels(labels(t)))
	if err != nil {
		t.Fatalf("containers.NewNetwork: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := nw.Remove(ctx); err != nil {
			t.Errorf("remove network %s: %v", nw.Name, err)
		}
	})
	return &Network{Name: nw.Name}
}
