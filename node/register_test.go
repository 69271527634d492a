package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/controllertest"
	"github.com/rustynet/rustynet/node/localapi"
)

// TestRegisterAnswerLost: the controller registers a node, but its answer
// is lost on the way back. The node retries and gets the same node back
// (ID and addresses), with a single-use auth key as with a reusable one,
// and the controller holds one node, not two.
func TestRegisterAnswerLost(t *testing.T) {
	for _, reusable := range []bool{false, true} {
		t.Run(fmt.Sprintf("reusable=%v", reusable), func(t *testing.T) {
			m := newLossMesh(t)
			m.proxy.DropAnswers(api.PathRegister, 1)
			b := m.viaProxy("bravo", m.ctl.AuthKey(reusable))
			ex := m.proxy.Exchanges(api.PathRegister)
			if len(ex) < 2 || ex[0].Action != controllertest.DroppedAnswer || ex[0].Status != 200 {
				t.Fatalf("register exchanges %+v, want a first one answered 200 and dropped, then a retry", ex)
			}
			var lost api.RegisterResponse
			if err := json.Unmarshal(ex[0].Body, &lost); err != nil {
				t.Fatalf("the lost answer %q: %v", ex[0].Body, err)
			}
			st, _ := b.Status(context.Background())
			if st.Self == nil || st.Self.ID != lost.Node.ID || !slices.Equal(st.Self.Addresses, lost.Node.Addresses) {
				t.Errorf("the node is %+v; the lost answer registered it as %s %v", st.Self, lost.Node.ID, lost.Node.Addresses)
			}
			nodes, err := m.ctl.Admin.Nodes(ctxT(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(nodes) != 1 || nodes[0].ID != lost.Node.ID {
				t.Errorf("the controller holds %+v, want the one node %s", nodes, lost.Node.ID)
			}
			a := m.NewNode("alpha", m.AuthKey()).(*netstackNode)
			keysAgree(t, m.netstackMesh, a, b)
		})
	}
}

// retriedAfter checks that the request after the first one the proxy
// answered 429 came at least wait later.
func retriedAfter(t *testing.T, ex []controllertest.Exchange, wait time.Duration) error {
	t.Helper()
	for i, e := range ex {
		if e.Action != controllertest.RateLimited {
			continue
		}
		if i+1 == len(ex) {
			return fmt.Errorf("no request to %s after the 429", e.Path)
		}
		if gap := ex[i+1].At.Sub(e.At); gap < wait {
			return fmt.Errorf("%s %s sent again %v after a 429 with Retry-After %v", e.Method, e.Path, gap.Round(time.Millisecond), wait)
		}
		return nil
	}
	return errors.New("no request was answered 429")
}

// TestRateLimitedRetryAfter: a node that the controller answers 429 with
// Retry-After waits at least that long before it sends that request
// again, and takes the 429 neither as fatal nor as a logout.
func TestRateLimitedRetryAfter(t *testing.T) {
	const wait = 2 * time.Second
	t.Run("register", func(t *testing.T) {
		m := newLossMesh(t)
		m.proxy.RateLimit(api.PathRegister, 1, wait)
		m.viaProxy("bravo", m.AuthKey())
		if err := retriedAfter(t, m.proxy.Exchanges(api.PathRegister), wait); err != nil {
			t.Error(err)
		}
	})
	t.Run("netmap", func(t *testing.T) {
		m := newLossMesh(t)
		b := m.viaProxy("bravo", m.AuthKey())
		m.proxy.RateLimit(api.PathNetmap, 1, wait)
		eventually(t, 20*time.Second, "a netmap poll after the 429", func() error {
			ex := m.proxy.Exchanges(api.PathNetmap)
			if i := slices.IndexFunc(ex, func(e controllertest.Exchange) bool { return e.Action == controllertest.RateLimited }); i < 0 || i+1 == len(ex) {
				return errors.New("no poll answered 429 and then another")
			}
			return nil
		})
		if err := retriedAfter(t, m.proxy.Exchanges(api.PathNetmap), wait); err != nil {
			t.Error(err)
		}
		waitState(t, []meshNode{b}, "running", "the node follows the netmap again")
	})
	t.Run("endpoints", func(t *testing.T) {
		m := newLossMesh(t)
		b := m.viaProxy("bravo", m.AuthKey())
		b.Stop()
		// A restarted node reports its endpoints first.
		m.proxy.RateLimit(api.PathEndpoints, 1, wait)
		b.Start()
		waitState(t, []meshNode{b}, "running", "the node reports its endpoints and follows the netmap")
		if err := retriedAfter(t, m.proxy.Exchanges(api.PathEndpoints), wait); err != nil {
			t.Error(err)
		}
	})
	t.Run("rotate-key", func(t *testing.T) {
		m := newLossMesh(t)
		key := m.AuthKey()
		a, b := m.NewNode("alpha", key).(*netstackNode), m.viaProxy("bravo", key)
		m.proxy.RateLimit(api.PathRotateKey, 1, wait)
		_, err := b.RotateKey(ctxT(t, 10*time.Second))
		if err == nil || errors.Is(err, localapi.ErrRotationPending) || !strings.Contains(err.Error(), "retry in") {
			t.Errorf("RotateKey answered 429 = %v, want a refusal that says when to retry", err)
		}
		if _, err := b.RotateKey(ctxT(t, 10*time.Second)); err == nil {
			t.Errorf("RotateKey right after a 429 succeeded, want a refusal until Retry-After passes")
		}
		if n := len(m.proxy.Exchanges(api.PathRotateKey)); n != 1 {
			t.Errorf("the controller got %d rotate-key requests within Retry-After of a 429, want 1", n)
		}
		eventually(t, 10*time.Second, "a rotation after Retry-After", func() error {
			_, err := b.RotateKey(ctxT(t, 10*time.Second))
			return err
		})
		if err := retriedAfter(t, m.proxy.Exchanges(api.PathRotateKey), wait); err != nil {
			t.Error(err)
		}
		keysAgree(t, m.netstackMesh, a, b)
	})
}
