package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/localapi"
)

// agent is a daemon whose answers the test sets.
type agent struct {
	status *localapi.Status
	key    api.NodePublic
	err    error
}

func (a *agent) Status() *localapi.Status { return a.status }
func (a *agent) Ping(context.Context, string, time.Duration) (*localapi.PingResult, error) {
	return nil, errors.New("no ping here")
}
func (a *agent) RotateKey(context.Context) (api.NodePublic, error) { return a.key, a.err }

// serve serves a's local API in a new state dir until the test ends.
func serve(t *testing.T, a localapi.Agent) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := localapi.Serve(ctx, dir, a, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	return dir
}

// TestRotateKeyTellsTheTruth: what `rustynet rotate-key` prints and how it
// exits when the rotation is confirmed, pending (its answer was lost) or
// refused.
func TestRotateKeyTellsTheTruth(t *testing.T) {
	k := api.NodePublic{1, 2, 3}
	pending := fmt.Errorf("%w: node key %s was sent, but the controller's answer did not arrive (stream reset); the node keeps the key and completes the rotation when the controller answers", localapi.ErrRotationPending, k)
	for _, tc := range []struct {
		name     string
		err      error
		code     int
		want     []string // in stdout and stderr
		wantNone []string
	}{
		{"confirmed", nil, 0, []string{"new node key " + k.String()}, []string{"pending", "refused"}},
		{"pending", pending, 3, []string{k.String() + " sent", "completes the rotation when the controller answers"}, []string{"refused"}},
		{"refused", errors.New("the controller refused the new node key, and holds the one this node uses: bad (400 bad_request)"), 1,
			[]string{"refused"}, []string{"sent", k.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := serve(t, &agent{key: k, err: tc.err})
			var stdout, stderr bytes.Buffer
			code := run([]string{"rotate-key", "--state-dir", dir}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.code {
				t.Errorf("rustynet rotate-key exited %d, want %d; printed %q", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("rustynet rotate-key printed %q, want it to say %q", out, w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(out, w) {
					t.Errorf("rustynet rotate-key printed %q, which says %q", out, w)
				}
			}
		})
	}
}

// TestStatusShowsAPendingKey: `rustynet status` shows the key in use, a
// pending one and why they disagree with the controller.
func TestStatusShowsAPendingKey(t *testing.T) {
	st := &localapi.Status{State: "rotating", NodeKey: api.NodePublic{1}, PendingNodeKey: api.NodePublic{2},
		KeyMismatch: "the new node key was sent to the controller, which has not confirmed it", Peers: []localapi.Peer{}}
	dir := serve(t, &agent{status: st})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "--state-dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("rustynet status exited %d: %s", code, stderr.String())
	}
	for _, w := range []string{"state:      rotating", st.NodeKey.String(), st.PendingNodeKey.String(), st.KeyMismatch} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("rustynet status printed %q, want %q in it", stdout.String(), w)
		}
	}
}

// TestStatusWarnsOfDeprecation: `rustynet status` warns when the controller
// announces the removal of the node's capability version, with its sunset,
// and says nothing of it otherwise.
func TestStatusWarnsOfDeprecation(t *testing.T) {
	since, sunset := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), time.Date(2027, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		dep  *localapi.Deprecation
		want string
	}{
		{&localapi.Deprecation{CapabilityVersion: 2, Since: &since, Sunset: &sunset},
			"warning:    the controller deprecates this rustynetd's capability version 2 (since 2026-12-04); it may stop serving it from 2027-12-02: upgrade rustynetd before then\n"},
		{&localapi.Deprecation{CapabilityVersion: 2}, "warning:    the controller deprecates this rustynetd's capability version 2; upgrade rustynetd\n"},
		{nil, ""},
	} {
		dir := serve(t, &agent{status: &localapi.Status{State: "running", Peers: []localapi.Peer{}, Deprecation: tc.dep}})
		var stdout, stderr bytes.Buffer
		if code := run([]string{"status", "--state-dir", dir}, &stdout, &stderr); code != 0 {
			t.Fatalf("rustynet status exited %d: %s", code, stderr.String())
		}
		if got := stdout.String(); (tc.want == "" && strings.Contains(got, "warning:")) || !strings.Contains(got, tc.want) {
			t.Errorf("rustynet status printed %q, want %q in it", got, tc.want)
		}
	}
}
