// Package meshload drives a control-plane load through a testbed mesh's
// controller, as the slo and incident gates need it: simulated nodes
// register through the node API at a paced rate, each then long-polls its
// netmap as a node does, and the oldest are removed through the admin CLI.
package meshload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/testbed"
)

// Config is a load: its pace, and what runs it.
type Config struct {
	Mesh *testbed.Mesh
	// ControllerBin is the rustynet-controller binary (its admin CLI
	// removes nodes).
	ControllerBin string
	// Duration bounds the load; it also ends with its context.
	Duration time.Duration
	// RegistrationsPerMinute must be positive; RemovalsPerMinute may be 0.
	RegistrationsPerMinute, RemovalsPerMinute float64
	// Log receives each failed write; Progress, when set, the share of
	// Duration done.
	Log      io.Writer
	Progress func(float64)
}

// Stats is what the load client did, acknowledged by the controller.
type Stats struct {
	Registered   int `json:"registered"`
	Removed      int `json:"removed"`
	Polls        int `json:"polls"`
	FailedWrites int `json:"failed_writes"` // registrations and removals refused or failed
	FailedPolls  int `json:"failed_polls"`
}

func (l Stats) String() string {
	return fmt.Sprintf("%d registrations, %d removals, %d netmap polls; %d writes and %d polls failed",
		l.Registered, l.Removed, l.Polls, l.FailedWrites, l.FailedPolls)
}

// Run drives the load from the mesh's observer host: registrations
// through the node API, each simulated node then long-polling its netmap
// as a node does, and removals through the admin CLI. Simulated nodes ask
// for the QUIC backend while the mesh runs WireGuard, so the real nodes
// see them as peers they cannot use and do not probe them. It stops on its
// own at the configured duration, or when ctx ends (then with ctx's
// error). A registration or removal the controller refuses is counted and
// logged, not returned: the SLIs judge them.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	var st Stats
	var mu sync.Mutex
	mesh := cfg.Mesh
	if cfg.RegistrationsPerMinute <= 0 {
		return st, errors.New("meshload: registrations per minute must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	ca, err := os.ReadFile(mesh.CAFile())
	if err != nil {
		return st, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return st, errors.New("the controller's CA file holds no certificate")
	}
	obs := mesh.Observer()
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		// Every simulated node's long-poll shares a few HTTP/2
		// connections: they all come from the observer's address, which
		// the controller allows 256 connections.
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return obs.DialContext(ctx, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	base := mesh.ControllerURL()

	loadCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	pollCtx, stopPolls := context.WithCancel(ctx)
	var polls sync.WaitGroup
	defer func() { stopPolls(); polls.Wait() }()

	regEvery := time.Duration(float64(time.Minute) / cfg.RegistrationsPerMinute)
	var remEvery time.Duration
	if cfg.RemovalsPerMinute > 0 {
		remEvery = time.Duration(float64(time.Minute) / cfg.RemovalsPerMinute)
	}
	regTick := time.NewTicker(regEvery)
	defer regTick.Stop()
	var remC <-chan time.Time
	if remEvery > 0 {
		t := time.NewTicker(remEvery)
		defer t.Stop()
		remC = t.C
	}
	var live []string // simulated nodes, oldest first
	n := 0
	began := time.Now()
	for {
		select {
		case <-loadCtx.Done():
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			return st, nil
		case <-regTick.C:
			n++
			id, cred, err := register(loadCtx, hc, base, mesh.AuthKey(), n)
			if err != nil && loadCtx.Err() != nil {
				continue // cut short by the end of the load, not refused
			}
			mu.Lock()
			if err != nil {
				st.FailedWrites++
				mu.Unlock()
				fmt.Fprintf(cfg.Log, "load: registration %d: %v\n", n, err)
				continue
			}
			st.Registered++
			mu.Unlock()
			live = append(live, id)
			polls.Go(func() {
				ok, failed := pollLoop(pollCtx, hc, base, cred)
				mu.Lock()
				st.Polls += ok
				st.FailedPolls += failed
				mu.Unlock()
			})
		case <-remC:
			if len(live) == 0 {
				continue
			}
			id := live[0]
			live = live[1:]
			out, err := exec.CommandContext(loadCtx, cfg.ControllerBin, "node", "remove", "--data-dir", mesh.DataDir(), id).CombinedOutput()
			if err != nil && loadCtx.Err() != nil {
				continue
			}
			mu.Lock()
			if err != nil {
				st.FailedWrites++
				fmt.Fprintf(cfg.Log, "load: remove %s: %v %s\n", id, err, bytes.TrimSpace(out))
			} else {
				st.Removed++
			}
			mu.Unlock()
		}
		if cfg.Progress != nil {
			cfg.Progress(min(1, float64(time.Since(began))/float64(cfg.Duration)))
		}
	}
}

// register registers simulated node i and returns its ID and credential.
func register(ctx context.Context, hc *http.Client, base, authKey string, i int) (string, string, error) {
	var nk api.NodePublic
	var mk api.MachinePublic
	rand.Read(nk[:])
	rand.Read(mk[:])
	body, err := json.Marshal(api.RegisterRequest{AuthKey: authKey, NodeKey: nk, MachineKey: mk, Hostname: "slo-load-" + strconv.Itoa(i), Backends: []string{"quic"}})
	if err != nil {
		return "", "", err
	}
	var out api.RegisterResponse
	// As a capability-2 client, which the controller still serves: a
	// current one proves it holds the machine key (a challenge round
	// trip) that a simulated node does not have.
	if err := call(ctx, hc, http.MethodPost, base+api.PathRegister, "", body, &out, 2); err != nil {
		return "", "", err
	}
	return string(out.Node.ID), out.Credential, nil
}

// pollLoop long-polls a simulated node's netmap until ctx ends or the
// node is removed (401), counting polls answered and failed. A failed poll
// waits a second before the next, as a node backs off.
func pollLoop(ctx context.Context, hc *http.Client, base, cred string) (ok, failed int) {
	var rev uint64
	for ctx.Err() == nil {
		var m api.MapResponse
		err := call(ctx, hc, http.MethodGet, fmt.Sprintf("%s%s?since=%d&wait=30", base, api.PathNetmap, rev), cred, nil, &m, api.CurrentCapabilityVersion)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errUnauthorized):
			return // removed
		case err != nil:
			failed++
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		default:
			ok++
			rev = m.Revision
		}
	}
	return
}

var errUnauthorized = errors.New("401 unauthorized")

// call sends one API request as a client of capability version v.
func call(ctx context.Context, hc *http.Client, method, url, cred string, body []byte, out any, v api.CapabilityVersion) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set(api.HeaderCapabilityVersion, v.String())
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return errUnauthorized
	}
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(raw))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
