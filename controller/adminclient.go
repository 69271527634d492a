package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"syscall"

	"github.com/rustynet/rustynet/controller/api"
)

// AdminClient talks to a running controller over its admin socket.
type AdminClient struct {
	socket string
	hc     *http.Client
}

// NewAdminClient returns a client for the controller whose data dir is dir.
func NewAdminClient(dataDir string) *AdminClient {
	socket := filepath.Join(dataDir, AdminSocket)
	return &AdminClient{
		socket: socket,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// do sends a request and decodes a JSON answer into out (if not nil). A
// refusal comes back as an *api.Error.
func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

func (c *AdminClient) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://controller"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no controller is running on %s (start one with `rustynet-controller serve`)", c.socket)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%s: permission denied: run as the user the controller runs as", c.socket)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb api.ErrorBody
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb); err != nil || eb.Error == nil {
			return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		eb.Error.Status = resp.StatusCode
		return nil, eb.Error
	}
	return resp, nil
}

// CreateAuthKey creates a pre-auth key.
func (c *AdminClient) CreateAuthKey(ctx context.Context, req api.CreateAuthKeyRequest) (*api.CreateAuthKeyResponse, error) {
	var out api.CreateAuthKeyResponse
	return &out, c.do(ctx, http.MethodPost, api.AdminPathAuthKeys, req, &out)
}

// AuthKeys lists the pre-auth keys, oldest first.
func (c *AdminClient) AuthKeys(ctx context.Context) ([]api.AuthKey, error) {
	var out []api.AuthKey
	return out, c.do(ctx, http.MethodGet, api.AdminPathAuthKeys, nil, &out)
}

// RevokeAuthKey revokes a pre-auth key by ID.
func (c *AdminClient) RevokeAuthKey(ctx context.Context, id string) (*api.AuthKey, error) {
	var out api.AuthKey
	return &out, c.do(ctx, http.MethodDelete, api.AdminPathAuthKeys+"/"+url.PathEscape(id), nil, &out)
}

// Nodes lists the registered nodes by name.
func (c *AdminClient) Nodes(ctx context.Context) ([]api.AdminNode, error) {
	var out []api.AdminNode
	return out, c.do(ctx, http.MethodGet, api.AdminPathNodes, nil, &out)
}

// RemoveNode removes a node by ID or name.
func (c *AdminClient) RemoveNode(ctx context.Context, idOrName string) error {
	return c.do(ctx, http.MethodDelete, api.AdminPathNodes+"/"+url.PathEscape(idOrName), nil, nil)
}

// UpdateNode changes a node, by ID or name: today, renames it and binds
// the name.
func (c *AdminClient) UpdateNode(ctx context.Context, idOrName string, req api.UpdateNodeRequest) (*api.AdminNode, error) {
	var out api.AdminNode
	return &out, c.do(ctx, http.MethodPatch, api.AdminPathNodes+"/"+url.PathEscape(idOrName), req, &out)
}

// Policy returns the ACL policy in force.
func (c *AdminClient) Policy(ctx context.Context) (*api.Policy, error) {
	var out api.Policy
	return &out, c.do(ctx, http.MethodGet, api.AdminPathPolicy, nil, &out)
}

// SetPolicy replaces the ACL policy. An invalid policy is refused with its
// line and reason, and the old one stays in force.
func (c *AdminClient) SetPolicy(ctx context.Context, text string) (*api.Policy, error) {
	var out api.Policy
	return &out, c.do(ctx, http.MethodPut, api.AdminPathPolicy, api.SetPolicyRequest{Policy: text}, &out)
}

// Backup writes a consistent copy of the store to w, in the store's own
// format (a bbolt file, or an etcd snapshot).
func (c *AdminClient) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return c.BackupAs(ctx, "native", w)
}

// BackupAs writes a consistent copy of the store to w in format: "native"
// (Backup) or "logical" (store.Export's JSON, which restores into either
// store).
func (c *AdminClient) BackupAs(ctx context.Context, format string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, api.AdminPathBackup+"?format="+url.QueryEscape(format), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup interrupted after %d bytes: %w", n, err)
	}
	return n, nil
}
