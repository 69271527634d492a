// Package control is the node's client of the controller's API v1.
package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Client talks to one controller. Its methods may be called concurrently.
//
// When the controller answers a request 429 with Retry-After, the client
// holds back that request (its path, whatever the query) until the time
// has passed: it refuses it at once with the same kind of error, which
// RetryAfter reads, without sending it.
type Client struct {
	base string
	hc   *http.Client

	mu        sync.Mutex
	cred      string
	notBefore map[string]time.Time // path -> when it may be sent again
}

// New returns a client for the controller at url (https://HOST:PORT) that
// trusts the CA certificate in caFile (PEM) and nothing else.
func New(url, caFile string) (*Client, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("controller URL %q: want https://HOST:PORT", url)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("controller CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("controller CA %s holds no PEM certificate", caFile)
	}
	return &Client{
		base: strings.TrimSuffix(url, "/"),
		hc: &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     api.MaxWait + time.Minute,
		}},
		notBefore: map[string]time.Time{},
	}, nil
}

// SetCredential sets the credential sent with every request.
func (c *Client) SetCredential(cred string) {
	c.mu.Lock()
	c.cred = cred
	c.mu.Unlock()
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request. A refusal comes back as an *api.Error with Status
// set; a network failure as the transport's error.
func (c *Client) do(ctx context.Context, method, path string, timeout time.Duration, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	route, _, _ := strings.Cut(path, "?")
	if wait := c.RetryIn(route); wait > 0 {
		return &RateLimitedError{Err: &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited,
			Message: fmt.Sprintf("not sent: the controller asked this node to wait %v more before the next %s %s", wait.Round(time.Millisecond), method, route)},
			until: time.Now().Add(wait), NotSent: true}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.mu.Lock()
	cred := c.cred
	c.mu.Unlock()
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &eb) != nil || eb.Error == nil {
			eb.Error = &api.Error{Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		eb.Error.Status = resp.StatusCode
		if resp.StatusCode == http.StatusTooManyRequests {
			until := time.Now().Add(retryAfter(resp.Header.Get("Retry-After")))
			c.mu.Lock()
			c.notBefore[route] = until
			c.mu.Unlock()
			return &RateLimitedError{Err: eb.Error, until: until}
		}
		return eb.Error
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

const requestTimeout = 30 * time.Second

// Challenge asks for a registration challenge (capability version 3).
func (c *Client) Challenge(ctx context.Context) (*api.RegisterChallenge, error) {
	var out api.RegisterChallenge
	if err := c.do(ctx, http.MethodGet, api.PathRegisterChallenge, requestTimeout, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Register registers the node.
func (c *Client) Register(ctx context.Context, req *api.RegisterRequest) (*api.RegisterResponse, error) {
	var out api.RegisterResponse
	if err := c.do(ctx, http.MethodPost, api.PathRegister, requestTimeout, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Netmap long-polls for the netmap after revision since, waiting up to wait.
func (c *Client) Netmap(ctx context.Context, since uint64, wait time.Duration) (*api.MapResponse, error) {
	var out api.MapResponse
	path := fmt.Sprintf("%s?since=%d&wait=%d", api.PathNetmap, since, int(wait/time.Second))
	if err := c.do(ctx, http.MethodGet, path, wait+requestTimeout, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReportEndpoints reports the node's local endpoints and listen port.
func (c *Client) ReportEndpoints(ctx context.Context, req *api.EndpointsRequest) (*api.Node, error) {
	var out api.Node
	if err := c.do(ctx, http.MethodPost, api.PathEndpoints, requestTimeout, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateKey replaces the node key at the controller.
func (c *Client) RotateKey(ctx context.Context, k api.NodePublic, backendKeys map[string]string) (*api.Node, error) {
	var out api.Node
	if err := c.do(ctx, http.MethodPost, api.PathRotateKey, requestTimeout, api.RotateKeyRequest{NodeKey: k, BackendKeys: backendKeys}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Logout removes the node from the controller.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, api.PathLogout, requestTimeout, nil, nil)
}

// RetryIn returns how long the controller asked the node to wait before
// it sends a request to path again (0 if it may send it now).
func (c *Client) RetryIn(path string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.notBefore[path]
	if !ok {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		delete(c.notBefore, path)
		return 0
	}
	return d
}

// MinRetryAfter is the wait a 429 without a usable Retry-After stands for.
const MinRetryAfter = time.Second

// retryAfter parses a Retry-After value: whole seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return max(time.Duration(secs)*time.Second, MinRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), MinRetryAfter)
	}
	return MinRetryAfter
}

// RateLimitedError is the controller's 429 (rate_limited), or the
// client's own refusal to send a request that the controller asked it to
// hold back (NotSent). It unwraps to the *api.Error.
type RateLimitedError struct {
	Err     *api.Error
	NotSent bool
	until   time.Time
}

func (e *RateLimitedError) Error() string { return e.Err.Error() }
func (e *RateLimitedError) Unwrap() error { return e.Err }

// RetryAfter reports how long from now the controller asked the node to
// wait before it sends the refused request again, and whether err is such
// a refusal.
func RetryAfter(err error) (time.Duration, bool) {
	var e *RateLimitedError
	if !errors.As(err, &e) {
		return 0, false
	}
	return max(time.Until(e.until), 0), true
}

// IsStatus reports whether err is a refusal with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status == status
}
