package controllertest

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// TestKillCutsLongPolls: Kill ends an open long-poll with no response
// (where Stop answers it), refuses new connections, and Restart serves the
// same state on the same URL.
func TestKillCutsLongPolls(t *testing.T) {
	c := Start(t)
	a := c.Register(c.AuthKey(false), "a")
	var m api.MapResponse
	if status, body := c.Do(http.MethodGet, api.PathNetmap+"?since=0&wait=0", a.Credential, nil, &m); status != http.StatusOK {
		t.Fatalf("first poll: %d %s", status, body)
	}
	get := func(wait int) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?since=%d&wait=%d", c.URL, api.PathNetmap, m.Revision, wait), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
		req.Header.Set("Authorization", "Bearer "+a.Credential)
		return c.Client.Do(req)
	}
	// status is 0 if the long-poll got no response.
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := get(100)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	c.WaitPolls(1)
	url := c.URL
	c.Kill()
	select {
	case r := <-done:
		if r.status != 0 {
			t.Errorf("long-poll across the kill answered %d, want the connection cut", r.status)
		}
		t.Logf("long-poll across the kill: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll still open 5s after the kill")
	}
	if resp, err := get(0); err == nil {
		resp.Body.Close()
		t.Errorf("poll after the kill answered %s, want the connection refused", resp.Status)
	}
	c.Restart()
	if c.URL != url {
		t.Errorf("URL after the restart = %s, want %s", c.URL, url)
	}
	var m2 api.MapResponse
	if status, body := c.Do(http.MethodGet, fmt.Sprintf("%s?since=%d&wait=0", api.PathNetmap, m.Revision), a.Credential, nil, &m2); status != http.StatusOK || m2.Revision != m.Revision {
		t.Errorf("poll after the restart: %d %s, revision %d; want 200 at revision %d", status, body, m2.Revision, m.Revision)
	}
}
