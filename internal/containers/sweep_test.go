package containers

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/rustynet/rustynet/internal/require"
)

const sweepChildEnv = "RUSTYNET_CONTAINERS_SWEEP_CHILD"

// sweepChild is the process TestSweep kills: it starts a network and a
// container on it, prints their names and waits (it is killed long
// before its cleanup could run).
func sweepChild() {
	ctx := context.Background()
	err := RunDrill("sweep-child", os.Stderr, func(d *Drill) {
		n := NewNetwork(ctx, d)
		p := StartProcess(ctx, d, Process{What: "relay", Image: "relayd",
			Bin:      Binary(d, "github.com/rustynet/rustynet/internal/relay/relayd"),
			Args:     []string{"--route", "127.0.0.1:9000=127.0.0.1:9001"},
			Networks: []Attachment{{Network: n}}})
		fmt.Printf("%s %s\n", n.Name, p.Container.GetContainerID())
		time.Sleep(5 * time.Minute)
	})
	fmt.Fprintln(os.Stderr, "sweep child:", err)
	os.Exit(1)
}

// TestSweep: a process killed before its cleanup ran (a test binary under
// an interrupted gate) leaves a network and a container; the next process
// to use the package removes them (Sweep), and leaves a live process's
// alone.
func TestSweep(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	live := NewNetwork(ctx, t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sweepChildEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	f := strings.Fields(line)
	if err != nil || len(f) != 2 {
		t.Fatalf("the child said %q, %v; want its network and container", line, err)
	}
	network, ctr := f[0], f[1]
	exists := func() (netOK, ctrOK bool) {
		defer provider.Close()
		cs, err := provider.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("id", ctr)})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := provider.Client().NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", network)})
		if err != nil {
			t.Fatal(err)
		}
		return len(ns.Items) > 0, len(cs.Items) > 0
	}
	if n, c := exists(); !n || !c {
		t.Fatalf("after the child was killed: network there %v, container there %v; want both left behind", n, c)
	}
	swept, err := Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n, c := exists(); n || c {
		t.Errorf("after Sweep (%q): network there %v, container there %v; want neither", swept, n, c)
	}
	if slices.ContainsFunc(swept, func(s string) bool { return strings.Contains(s, live.Name) }) {
		t.Errorf("Sweep removed %s, the network of this live process", live.Name)
	}
}
