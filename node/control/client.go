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
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Client talks to one controller. Its methods may be called concurrently.
type Client struct {
	base string
	hc   *http.Client

	mu   sync.Mutex
	cred string
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
			return &api.Error{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		eb.Error.Status = resp.StatusCode
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

// IsStatus reports whether err is a refusal with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status == status
}
