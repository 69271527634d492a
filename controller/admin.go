package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/rustynet/rustynet/controller/acl"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// AdminHandler returns the admin API. Serve it only on a private unix
// socket (see ListenAdmin): it has no authentication of its own.
func (s *Server) AdminHandler() http.Handler {
	rt := newRouter(s, false)
	rt.handle(http.MethodGet, api.AdminPathAuthKeys, s.listAuthKeys)
	rt.handle(http.MethodPost, api.AdminPathAuthKeys, s.createAuthKey)
	rt.handle(http.MethodDelete, api.AdminPathAuthKey, s.revokeAuthKey)
	rt.handle(http.MethodGet, api.AdminPathNodes, s.listNodes)
	rt.handle(http.MethodDelete, api.AdminPathNode, s.removeNode)
	rt.handle(http.MethodPatch, api.AdminPathNode, s.updateNode)
	rt.handle(http.MethodGet, api.AdminPathPolicy, s.getPolicy)
	rt.handleLimit(http.MethodPut, api.AdminPathPolicy, api.MaxPolicyBodyBytes, s.setPolicy)
	rt.handle(http.MethodGet, api.AdminPathBackup, s.backup)
	return rt
}

func notFound(format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

func authKeyView(k *store.AuthKey) api.AuthKey {
	return api.AuthKey{
		ID: k.ID, Description: k.Description, Reusable: k.Reusable, Tags: k.Tags,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, Uses: k.Uses, RevokedAt: k.RevokedAt, Name: k.Name,
	}
}

func (s *Server) createAuthKey(w http.ResponseWriter, r *http.Request) error {
	req, err := decode[api.CreateAuthKeyRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	id := randomHex(6)
	secret, _ := newSecret()
	now := s.now().UTC()
	k := &store.AuthKey{
		ID:          id,
		Hash:        sha256.Sum256([]byte(secret)),
		Description: req.Description,
		Reusable:    req.Reusable,
		Tags:        req.Tags,
		Name:        req.Name,
		CreatedAt:   now,
		ExpiresAt:   now.Add(time.Duration(req.TTLSeconds) * time.Second),
	}
	if _, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		if _, err := tx.AuthKey(id); err == nil {
			return effect{}, nil, fmt.Errorf("auth key ID %s collided; retry", id)
		}
		return effect{}, nil, tx.PutAuthKey(k)
	}); err != nil {
		return err
	}
	s.log.Info("auth key created", "auth_key", id, "reusable", k.Reusable, "tags", k.Tags, "name", k.Name, "expires", k.ExpiresAt)
	return writeJSON(w, http.StatusCreated, api.CreateAuthKeyResponse{
		AuthKey: authKeyView(k),
		Key:     api.AuthKeyPrefix + id + "_" + secret,
	})
}

func (s *Server) listAuthKeys(w http.ResponseWriter, r *http.Request) error {
	keys := []api.AuthKey{}
	if err := s.store.View(r.Context(), func(tx store.Tx) error {
		return tx.ForEachAuthKey(func(k *store.AuthKey) error {
			keys = append(keys, authKeyView(k))
			return nil
		})
	}); err != nil {
		return err
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].CreatedAt.Before(keys[j].CreatedAt) })
	return writeJSON(w, http.StatusOK, keys)
}

func (s *Server) revokeAuthKey(w http.ResponseWriter, r *http.Request) error {
	id := pathID(r)
	res, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		k, err := tx.AuthKey(id)
		if errors.Is(err, store.ErrNotFound) {
			return effect{}, nil, notFound("no auth key %s", truncate(id, 40))
		}
		if err != nil {
			return effect{}, nil, err
		}
		if k.RevokedAt != nil {
			return effect{}, k, nil // already revoked: idempotent
		}
		now := s.now().UTC()
		k.RevokedAt = &now
		return effect{}, k, tx.PutAuthKey(k)
	})
	if err != nil {
		return err
	}
	k := res.(*store.AuthKey)
	s.log.Info("auth key revoked", "auth_key", k.ID)
	return writeJSON(w, http.StatusOK, authKeyView(k))
}

func (s *Server) adminNodeView(n *store.Node) api.AdminNode {
	src := n.NameSource
	if src == "" {
		src = api.NameFromHostname
	}
	return api.AdminNode{
		ID: n.ID, Name: n.Name, NameSource: src, NodeKey: n.NodeKey, MachineKey: n.MachineKey,
		Addresses: n.Addresses, Endpoints: n.AllEndpoints(), Backends: n.Backends, Backend: s.st.activeBackend(n), Tags: n.Tags,
		AuthKeyID: n.AuthKeyID, CreatedAt: n.CreatedAt, Online: s.online(n.ID),
	}
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, _, _ := s.st.snapshot()
	out := make([]api.AdminNode, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, s.adminNodeView(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) error {
	n := s.st.nodeByNameOrID(pathID(r))
	if n == nil {
		return notFound("no node with ID or name %q", truncate(pathID(r), 70))
	}
	if _, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		err := tx.DeleteNode(n.ID)
		if errors.Is(err, store.ErrNotFound) {
			return effect{}, nil, notFound("node %s was already removed", n.ID)
		}
		if err != nil {
			return effect{}, nil, err
		}
		return effect{nodes: []nodeUpdate{{n.ID, nil}}}, nil, nil
	}); err != nil {
		return err
	}
	s.log.Info("node removed", "node", n.ID, "name", n.Name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateNode renames a node and binds the name (PATCH AdminPathNode).
func (s *Server) updateNode(w http.ResponseWriter, r *http.Request) error {
	req, err := decode[api.UpdateNodeRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	target := s.st.nodeByNameOrID(pathID(r))
	if target == nil {
		return notFound("no node with ID or name %q", truncate(pathID(r), 70))
	}
	res, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		old, err := tx.Node(target.ID)
		if errors.Is(err, store.ErrNotFound) {
			return effect{}, nil, notFound("node %s was removed", target.ID)
		}
		if err != nil {
			return effect{}, nil, err
		}
		n := old.Clone()
		counters := map[string]uint64{}
		displaced, err := bindName(tx, n, req.Name, api.NameFromAdmin, counters)
		if err != nil {
			return effect{}, nil, err
		}
		n.UpdatedAt = s.now().UTC()
		var eff effect
		for _, d := range displaced {
			if err := putNode(tx, d); err != nil {
				return effect{}, nil, err
			}
			eff.nodes = append(eff.nodes, nodeUpdate{d.ID, d})
		}
		if err := putNode(tx, n); err != nil {
			return effect{}, nil, err
		}
		for name, v := range counters {
			if err := tx.SetCounter(name, v); err != nil {
				return effect{}, nil, err
			}
		}
		eff.nodes = append(eff.nodes, nodeUpdate{n.ID, n})
		return eff, n, nil
	})
	if err != nil {
		return err
	}
	n := res.(*store.Node)
	s.log.Info("node renamed", "node", n.ID, "name", n.Name, "was", target.Name)
	return writeJSON(w, http.StatusOK, s.adminNodeView(n))
}

func policyView(rec *store.Policy) api.Policy {
	if rec == nil {
		return api.Policy{Default: true}
	}
	t := rec.UpdatedAt
	return api.Policy{Policy: rec.Text, UpdatedAt: &t}
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) error {
	_, rec, _ := s.st.snapshot()
	return writeJSON(w, http.StatusOK, policyView(rec))
}

func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request) error {
	// The body limit fits the largest allowed policy however it is escaped,
	// so a policy is refused for its size by Validate, naming the limit.
	req, err := decode[api.SetPolicyRequest](r.Body, api.MaxPolicyBodyBytes)
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.CodeBodyTooLarge {
		e.Message += fmt.Sprintf(", more than any policy of at most %d bytes needs", api.MaxPolicyBytes)
	}
	if err != nil {
		return err
	}
	rec, err := s.setPolicyText(r.Context(), req.Policy)
	if err != nil {
		return err
	}
	s.log.Info("policy set", "bytes", len(req.Policy))
	return writeJSON(w, http.StatusOK, policyView(rec))
}

// setPolicyText compiles and stores a policy, and tells the nodes it
// concerns.
func (s *Server) setPolicyText(ctx context.Context, text string) (*store.Policy, error) {
	compiled, err := acl.Parse([]byte(text))
	if err != nil {
		return nil, badRequest("%s; the policy in force is unchanged", err)
	}
	rec := &store.Policy{Text: text, UpdatedAt: s.now().UTC()}
	if _, err := s.mutate(ctx, func(tx store.Tx) (effect, any, error) {
		return effect{policy: &policyUpdate{rec: rec, compiled: compiled}}, nil, tx.PutPolicy(rec)
	}); err != nil {
		return nil, err
	}
	return rec, nil
}

// applyPolicyFile sets the policy a file holds (serve --policy-file),
// unless it is the one in force: a restart, or a SIGHUP with the file
// unchanged, changes nothing, and several replicas given one file agree.
func (s *Server) applyPolicyFile(ctx context.Context, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, api.MaxPolicyBytes+1))
	if err != nil {
		return err
	}
	if len(text) > api.MaxPolicyBytes {
		return fmt.Errorf("a policy may be at most %d bytes; %s is larger", api.MaxPolicyBytes, file)
	}
	if _, cur, _ := s.st.snapshot(); cur != nil && cur.Text == string(text) {
		s.log.Info("policy file unchanged: the policy in force is the file's", "file", file)
		return nil
	}
	if _, err := s.setPolicyText(ctx, string(text)); err != nil {
		return err
	}
	s.log.Info("policy set from the policy file", "file", file, "bytes", len(text))
	return nil
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request) error {
	var n int64
	var err error
	switch f := r.URL.Query().Get("format"); f {
	case "", "native":
		// The engine's own: a bbolt file, or an etcd snapshot.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="controller.db"`)
		n, err = s.store.Backup(r.Context(), w)
	case "logical":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="controller-export.json"`)
		n, err = store.Export(r.Context(), s.store, w)
	default:
		return badRequest("format=%q: want native or logical", truncate(f, 30))
	}
	if err != nil {
		if n == 0 {
			return err
		}
		// Headers are gone; abort the connection so the client sees a
		// truncated body rather than a complete-looking backup.
		panic(http.ErrAbortHandler)
	}
	s.log.Info("backup taken", "bytes", n)
	return nil
}
