package containers

import (
	"context"
	"fmt"

	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
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

// Disconnect takes ctr off network n, as a cut cable would: its other
// networks stay, and so does everything it runs. Connect puts it back.
func Disconnect(ctx context.Context, ctr testcontainers.Container, n *Network) error {
	if err := start(); err != nil {
		return err
	}
	defer provider.Close() // its idle connections; the provider stays usable
	_, err := provider.Client().NetworkDisconnect(ctx, n.Name, client.NetworkDisconnectOptions{Container: ctr.GetContainerID(), Force: true})
	if err != nil {
		return fmt.Errorf("disconnect %.12s from %s: %w", ctr.GetContainerID(), n.Name, err)
	}
	return nil
}

// Connect attaches ctr to network n with aliases (those it had there, to
// undo a Disconnect: Docker forgets them).
func Connect(ctx context.Context, ctr testcontainers.Container, n *Network, aliases ...string) error {
	if err := start(); err != nil {
		return err
	}
	defer provider.Close()
	_, err := provider.Client().NetworkConnect(ctx, n.Name, client.NetworkConnectOptions{Container: ctr.GetContainerID(),
		EndpointConfig: &mobynet.EndpointSettings{Aliases: aliases}})
	if err != nil {
		return fmt.Errorf("connect %.12s to %s: %w", ctr.GetContainerID(), n.Name, err)
	}
	return nil
}
