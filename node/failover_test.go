package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node/control"
	"github.com/rustynet/rustynet/node/localapi"
)

// replicaAddr is one more address of a controller: a TCP relay to the
// controller's own listener, standing for a replica over the same store.
// TLS passes through it, so the controller's CA serves every replica, and
// the revisions are the same on all, as they are for replicas that share
// one store. Kill cuts every connection through it and refuses new ones,
// as a replica's death does.
type replicaAddr struct {
	ln     net.Listener
	target string
	URL    string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	opened int
	closed bool
	wg     sync.WaitGroup
}

func newReplicaAddr(t *testing.T, target string) *replicaAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replicaAddr{ln: ln, target: target, URL: "https://" + ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.Kill)
	return r
}

func (r *replicaAddr) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

// track records c as open, or closes it if the relay is killed.
func (r *replicaAddr) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *replicaAddr) pipe(front net.Conn) {
	defer r.wg.Done()
	if !r.track(front) {
		return
	}
	back, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil || !r.track(back) {
		front.Close()
		return
	}
	r.mu.Lock()
	r.opened++
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go cp(back, front)
	go cp(front, back)
	<-done
	<-done
	r.mu.Lock()
	delete(r.conns, front)
	delete(r.conns, back)
	r.mu.Unlock()
}

// open returns how many connections the relay carries now.
func (r *replicaAddr) open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns) / 2
}

// Kill closes the listener and every connection through the relay, and
// waits for its goroutines.
func (r *replicaAddr) Kill() {
	r.mu.Lock()
	r.closed = true
	r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// TestFailoverBetweenReplicas: a node started with two controller
// replicas follows the netmap through the first; when that one dies, the
// node's dataplane carries traffic on, and the node moves to the second
// and follows the netmap there from the revision it had: it gets what
// changed as deltas, never a full netmap again. Its status and metrics
// name the replica it uses and count the switch.
func TestFailoverBetweenReplicas(t *testing.T) {
	ctl := controllertest.Start(t)
	r1, r2 := newReplicaAddr(t, ctl.APIAddr), newReplicaAddr(t, ctl.APIAddr)
	m := &netstackMesh{t: t, ctl: ctl, reg: backends(), backend: "wireguard"}
	key := m.AuthKey()
	a := m.NewNode("alpha", key)
	cfg := m.config("bravo", key)
	cfg.ControllerURL, cfg.ControllerURLs = "", []string{r1.URL, r2.URL}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := startNetstackNode(t, cfg)
	waitState(t, []meshNode{a, b}, "running", "both nodes follow the netmap")
	if st, _ := b.Status(context.Background()); st.Controller != r1.URL {
		t.Fatalf("bravo uses controller %s, want the first replica %s", st.Controller, r1.URL)
	}
	if err := transfer(t, a, b, 4096); err != nil {
		t.Fatal(err)
	}
	ctl.WaitPolls(2)
	if r1.open() == 0 {
		t.Fatal("no connection through the first replica: bravo's long-poll is not there")
	}
	full, ok := gathered(t, reg, "rustynet_node_netmaps_total", "kind", "full")
	if !ok || full == 0 {
		t.Fatalf("rustynet_node_netmaps_total{kind=\"full\"} = %v, %v; want the first full netmap counted", full, ok)
	}
	deltas, _ := gathered(t, reg, "rustynet_node_netmaps_total", "kind", "delta")

	r1.Kill()
	// The dataplane does not wait for the controller.
	if err := transfer(t, a, b, 64<<10); err != nil {
		t.Errorf("with the first replica just killed: %v", err)
	}
	eventually(t, 15*time.Second, "bravo follows the netmap through the second replica", func() error {
		st, err := b.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Controller != r2.URL || st.State != "running" || r2.open() == 0 {
			return fmt.Errorf("bravo uses %s, %s (%s); %d connections through the second replica", st.Controller, st.State, st.LastError, r2.open())
		}
		return nil
	})
	// A change after the switch reaches bravo through the second replica.
	c := m.NewNode("charlie", key)
	cst, _ := c.Status(context.Background())
	eventually(t, 15*time.Second, "bravo learns of charlie", func() error {
		st, err := b.Status(context.Background())
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(st.Peers, func(p localapi.Peer) bool { return p.ID == cst.Self.ID }) {
			return errors.New("charlie is not among bravo's peers")
		}
		return nil
	})
	if err := everyPair(t, []meshNode{a, b, c}, 4096); err != nil {
		t.Error(err)
	}
	if got, _ := gathered(t, reg, "rustynet_node_netmaps_total", "kind", "full"); got != full {
		t.Errorf("full netmaps applied: %v before the switch, %v after it; want no full netmap after the switch", full, got)
	}
	if got, _ := gathered(t, reg, "rustynet_node_netmaps_total", "kind", "delta"); got <= deltas {
		t.Errorf("delta netmaps applied: %v before the switch, %v after it; want charlie's arrival as one more", deltas, got)
	}
	if got, _ := gathered(t, reg, "rustynet_node_control_replica_switches_total", "reason", control.ReasonNetwork); got != 1 {
		t.Errorf("rustynet_node_control_replica_switches_total{reason=%q} = %v, want 1", control.ReasonNetwork, got)
	}
	if got, ok := gathered(t, reg, "rustynet_node_control_replica_info", "controller", r2.URL); !ok || got != 1 {
		t.Errorf("rustynet_node_control_replica_info{controller=%q} = %v, %v; want 1", r2.URL, got, ok)
	}
	if _, ok := gathered(t, reg, "rustynet_node_control_replica_info", "controller", r1.URL); ok {
		t.Errorf("rustynet_node_control_replica_info still names the dead replica %s", r1.URL)
	}
}
