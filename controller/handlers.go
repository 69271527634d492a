package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

const ipamCounter = "ipam"

// Handler returns the node-facing API v1. Serve it over HTTPS.
func (s *Server) Handler() http.Handler {
	rt := newRouter(s, true)
	rt.handle(http.MethodGet, api.PathHealthz, s.healthz)
	rt.handle(http.MethodGet, api.PathRegisterChallenge, s.registerChallenge)
	rt.handle(http.MethodPost, api.PathRegister, s.register)
	rt.handle(http.MethodGet, api.PathNetmap, s.authed(s.netmap))
	rt.handle(http.MethodPost, api.PathEndpoints, s.authed(s.endpoints))
	rt.handle(http.MethodPost, api.PathRotateKey, s.authed(s.rotateKey))
	rt.handle(http.MethodPost, api.PathLogout, s.authed(s.logout))
	rt.handleLimit(http.MethodPost, PathReplicaCommit, maxReplicaRequest, s.replicaCommit)
	return rt
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if s.replicated != nil {
		// A replica without its store serves stale netmaps and refuses
		// every write: not healthy. (The cause is in its log and
		// metrics, not on this unauthenticated page.)
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := s.store.View(ctx, func(store.Tx) error { return nil }); err != nil {
			s.log.Warn("health check: store unavailable", "err", err)
			w.Header().Set("Retry-After", "2")
			return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "the controller's store (etcd) cannot be reached or has no quorum"})
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func unauthorized(format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized, Message: fmt.Sprintf(format, args...)}
}

func conflict(code, format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusConflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

// credential is a parsed "rnc_<node id>_<secret>".
type credential struct {
	id   api.NodeID
	hash store.Hash
}

func parseCredential(tok string) (credential, bool) {
	id, secret, ok := splitToken(tok, api.CredentialPrefix)
	if !ok {
		return credential{}, false
	}
	return credential{id: api.NodeID(id), hash: sha256.Sum256([]byte(secret))}, true
}

// bearer extracts the credential of the Authorization header. It returns
// false, nil when there is no header.
func bearer(r *http.Request) (credential, bool, *api.Error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return credential{}, false, nil
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return credential{}, false, unauthorized("Authorization header must be \"Bearer <credential>\"")
	}
	c, ok := parseCredential(strings.TrimSpace(tok))
	if !ok {
		return credential{}, false, unauthorized("malformed credential: want the %s... value that registration returned", api.CredentialPrefix)
	}
	return c, true, nil
}

type authedFunc func(w http.ResponseWriter, r *http.Request, self *store.Node, cred credential) error

// authed requires a valid node credential.
func (s *Server) authed(h authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, present, apiErr := bearer(r)
		if apiErr != nil {
			return apiErr
		}
		if !present {
			return unauthorized("missing credential: send \"Authorization: Bearer <credential>\" with the credential registration returned")
		}
		self, ok := s.st.authenticate(c.id, c.hash)
		if !ok && s.replicated != nil {
			n, err := s.authenticateFromStore(r.Context(), c)
			if err != nil {
				return err
			}
			self, ok = n, n != nil
		}
		if !ok {
			return unauthorized("unknown credential: the node was removed, logged out or re-registered; register again")
		}
		return h(w, r, self, c)
	}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	req, err := decode[api.RegisterRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	keyID, keySecret, ok := splitToken(req.AuthKey, api.AuthKeyPrefix)
	if !ok {
		s.metrics.registered.WithLabelValues("refused").Inc()
		return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeInvalidAuthKey,
			Message: fmt.Sprintf("malformed auth key: want the %s... value that `rustynet-controller authkey create` printed", api.AuthKeyPrefix)}
	}
	keyHash := store.Hash(sha256.Sum256([]byte(keySecret)))
	cred, hasCred, apiErr := bearer(r)
	if apiErr != nil {
		return apiErr
	}
	// proven: the client holds the machine private key.
	proven := false
	switch {
	case req.MachineProof != "":
		if err := s.challenges.verify(req); err != nil {
			s.metrics.registered.WithLabelValues("refused").Inc()
			return err
		}
		proven = true
	case clientVersion(r) >= 3:
		return needProof()
	}
	secret, credHash := newSecret()
	if err := s.checkEndpoints(req.Endpoints); err != nil {
		return err
	}
	in := &registerIntent{
		MachineKey: req.MachineKey, NodeKey: req.NodeKey, Hostname: req.Hostname,
		Backends: req.Backends, BackendKeys: req.BackendKeys, PQ: pqOf(r, req.PQ),
		Endpoints: req.Endpoints, ListenPort: req.ListenPort,
		Observed:  s.observedEndpoint(r, req.ListenPort),
		AuthKeyID: keyID, AuthKeyHash: keyHash,
		Proven: proven, NewID: api.NodeID("n" + randomHex(8)), NewCredentialHash: credHash,
	}
	if hasCred {
		in.CredentialNode, in.CredentialHash = cred.id, &cred.hash
	}
	n, _, err := s.commitRegister(r.Context(), in, true)
	if err != nil {
		var apiErr *api.Error
		var fu *forwardedUnavailable
		if !errors.As(err, &fu) && errors.As(err, &apiErr) {
			s.metrics.registered.WithLabelValues("refused").Inc()
		} else {
			s.metrics.registered.WithLabelValues("error").Inc()
		}
		return err
	}
	s.metrics.registered.WithLabelValues("ok").Inc()
	s.log.Info("node registered", "node", n.ID, "name", n.Name, "addresses", n.Addresses, "auth_key", n.AuthKeyID, "machine_proof", proven)
	return writeJSON(w, http.StatusOK, api.RegisterResponse{
		Node:       nodeView(s.st.policyNow(), n),
		Credential: api.CredentialPrefix + string(n.ID) + "_" + secret,
	})
}

// bindName gives n the bound name, from source (api.NameFromAuthKey or
// api.NameFromAdmin). A node holding the name by its own hostname gives it
// up and gets a free variant of it (returned, to be stored before n); a
// node the name is bound to keeps it, and the binding is refused.
func bindName(tx store.Tx, n *store.Node, name, source string, counters map[string]uint64) ([]*store.Node, error) {
	var displaced []*store.Node
	holderID, err := tx.NodeIDBy(store.IndexName, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	case holderID != n.ID:
		holder, err := tx.Node(holderID)
		if err != nil {
			return nil, err
		}
		if holder.NameBound() {
			return nil, conflict(api.CodeConflict, "the name %s is bound to another node; rename or remove that node first", name)
		}
		h := holder.Clone()
		newName, suffix, err := uniqueName(tx, name)
		if err != nil {
			return nil, err
		}
		counters[nameCounter(name)] = suffix
		h.Name = newName
		displaced = append(displaced, h)
	}
	n.Name, n.NameSource = name, source
	return displaced, nil
}

// checkAuthKey returns the key if it may register a node now. Unknown keys
// and wrong secrets get the same answer. A single-use key that was used
// is accepted when reuse says the node asking is the one it registered.
func checkAuthKey(tx store.Tx, id string, hash store.Hash, now time.Time, reuse func(*store.AuthKey) bool) (*store.AuthKey, error) {
	refuse := func(format string, args ...any) error {
		return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeInvalidAuthKey, Message: fmt.Sprintf(format, args...)}
	}
	k, err := tx.AuthKey(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !hashEqual(k.Hash, hash)) {
		return nil, refuse("unknown auth key")
	}
	if err != nil {
		return nil, err
	}
	switch {
	case k.RevokedAt != nil:
		return nil, refuse("auth key %s was revoked at %s", k.ID, k.RevokedAt.Format(time.RFC3339))
	case !now.Before(k.ExpiresAt):
		return nil, refuse("auth key %s expired at %s", k.ID, k.ExpiresAt.Format(time.RFC3339))
	case !k.Reusable && k.Uses > 0 && !reuse(k):
		return nil, refuse("auth key %s is single-use and was already used", k.ID)
	}
	return k, nil
}

// uniqueName returns base if it is free, else base-N for the first free N
// after the last suffix handed out for base (kept in a counter, so that many
// nodes with one hostname cost O(1) each). The caller stores the returned
// counter value after its PutNode.
func uniqueName(tx store.Tx, base string) (name string, counter uint64, err error) {
	free := func(name string) (bool, error) {
		_, err := tx.NodeIDBy(store.IndexName, name)
		if errors.Is(err, store.ErrNotFound) {
			return true, nil
		}
		return false, err
	}
	if ok, err := free(base); ok || err != nil {
		return base, 0, err
	}
	last, err := tx.Counter(nameCounter(base))
	if err != nil {
		return "", 0, err
	}
	for i := max(last, 1) + 1; i < last+100000; i++ {
		suffix := "-" + strconv.FormatUint(i, 10)
		name := strings.TrimRight(base[:min(len(base), api.MaxHostnameLen-len(suffix))], "-") + suffix
		ok, err := free(name)
		if err != nil {
			return "", 0, err
		}
		if ok {
			return name, i, nil
		}
	}
	return "", 0, conflict(api.CodeConflict, "too many nodes named %q", base)
}

func nameCounter(base string) string { return "name/" + base }

func nodeKeyInUse() error {
	return conflict(api.CodeConflict, "the node key is in use by another node; generate a new key")
}

// putNode stores n and turns an index conflict into a refusal.
func putNode(tx store.Tx, n *store.Node) error {
	err := tx.PutNode(n)
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		if ce.Field == store.IndexNodeKey {
			return nodeKeyInUse()
		}
		// Name the field, not the node that holds the value.
		return conflict(api.CodeConflict, "the %s is already held by another node", strings.ReplaceAll(ce.Field, "_", " "))
	}
	return err
}

func (s *Server) netmap(w http.ResponseWriter, r *http.Request, self *store.Node, cred credential) error {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("since=%q: want the revision of the last netmap received, a non-negative integer", truncate(v, 30))
		}
		since = n
	}
	wait := min(api.DefaultWait, s.maxWait)
	if v := q.Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > s.maxWait {
			return badRequest("wait=%q: want whole seconds from 0 to %d", truncate(v, 30), int(s.maxWait/time.Second))
		}
		wait = time.Duration(n) * time.Second
	}

	now := s.now()
	if err := take(s.limiter.buckets(self.ID, now).polls, now, "netmap polls"); err != nil {
		s.metrics.limited.WithLabelValues("polls").Inc()
		return err
	}
	if !s.pollOpened(self.ID) {
		s.metrics.limited.WithLabelValues("open_polls").Inc()
		return rateLimited(time.Second, fmt.Sprintf("open netmap polls (at most %d at once)", s.limits.PollsPerNode))
	}
	parked := false
	defer func() {
		if !parked { // a parked poll is closed when it is answered
			s.pollClosed(self.ID)
		}
	}()
	start := time.Now()
	// The server's read timeout bounds reading a request; a long-poll
	// has no body, and holds its connection for as long as it waits.
	http.NewResponseController(w).SetReadDeadline(start.Add(wait + pollGrace))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	waited := false
	if s.replicated != nil && since > 0 {
		// The node saw since on another replica: a moment to catch up
		// gets it a delta rather than a full netmap.
		if cur, _ := s.st.revision(); since > cur {
			ctx, cancel := context.WithTimeout(r.Context(), catchUp)
			s.st.waitRev(ctx, since)
			cancel()
		}
	}
	for {
		resp, wake, changedAt, err := s.st.netmap(self.ID, cred.hash, since, clientVersion(r))
		if errors.Is(err, errNodeGone) {
			return unauthorized("node %s was removed, logged out or re-registered; register again", self.ID)
		}
		if err != nil {
			return err
		}
		if clientVersion(r) < pqSince {
			resp = withoutPQ(resp)
		}
		if resp.Full || resp.Self != nil || len(resp.PeersChanged) > 0 || len(resp.PeersRemoved) > 0 || wait == 0 {
			return s.writeNetmap(w, resp, waited, changedAt)
		}
		since = resp.Revision
		if !waited {
			// Nothing to send yet: wait without this goroutine or
			// net/http's buffers (park.go), when the connection allows.
			pp := &parkedPoll{id: self.ID, cred: cred.hash, since: since, v: clientVersion(r), wake: wake, start: start}
			if s.park.park(w, r, pp, start.Add(wait)) {
				parked = true
				return nil
			}
		}
		select {
		case <-wake:
			waited = true
		case <-timer.C:
			return s.writeNetmap(w, resp, false, time.Time{})
		case <-s.shutdown:
			return s.writeNetmap(w, resp, false, time.Time{})
		case <-r.Context().Done():
			return nil
		}
	}
}

func (s *Server) writeNetmap(w http.ResponseWriter, resp *api.MapResponse, pushed bool, changedAt time.Time) error {
	if resp.Full {
		s.metrics.fullNetmaps.Inc()
	} else {
		s.metrics.deltaNetmaps.Inc()
	}
	resp.Controllers = s.Replicas()
	err := writeJSON(w, http.StatusOK, resp)
	if pushed && !changedAt.IsZero() {
		s.metrics.pushLatency.Observe(s.now().Sub(changedAt).Seconds())
	}
	return err
}

// pollGrace is how long past its wait a long-poll's connection may stay
// unread.
const pollGrace = 30 * time.Second

// pollOpened counts an open long-poll of node id, unless the node holds
// as many as it may.
func (s *Server) pollOpened(id api.NodeID) bool {
	s.pollMu.Lock()
	if s.limits.PollsPerNode >= 0 && s.polls[id] >= s.limits.PollsPerNode {
		s.pollMu.Unlock()
		return false
	}
	s.polls[id]++
	s.pollMu.Unlock()
	s.metrics.polls.Inc()
	return true
}

func (s *Server) pollClosed(id api.NodeID) {
	s.pollMu.Lock()
	if s.polls[id]--; s.polls[id] <= 0 {
		delete(s.polls, id)
	}
	s.pollMu.Unlock()
	s.metrics.polls.Dec()
}

func (s *Server) online(id api.NodeID) bool {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	return s.polls[id] > 0
}

// updateSelf applies change to a copy of the caller's node and stores it,
// unless change reports that nothing changed.
func (s *Server) updateSelf(r *http.Request, cred credential, change func(n *store.Node) bool) (*store.Node, error) {
	res, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		old, err := tx.Node(cred.id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !hashEqual(old.CredentialHash, cred.hash)) {
			return effect{}, nil, unauthorized("node %s was removed, logged out or re-registered; register again", cred.id)
		}
		if err != nil {
			return effect{}, nil, err
		}
		n := old.Clone()
		if !change(n) {
			return effect{}, old, nil
		}
		n.UpdatedAt = s.now().UTC()
		if err := putNode(tx, n); err != nil {
			return effect{}, nil, err
		}
		return effect{nodes: []nodeUpdate{{n.ID, n}}}, n, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*store.Node), nil
}

// pqSince is the capability version from which nodes announce their
// post-quantum schemes and netmaps carry them.
const pqSince = 4

// pqOf is the post-quantum schemes a request announces: none from a
// client older than pqSince, so that a node restarted on such a build is
// no longer taken to run them.
func pqOf(r *http.Request, schemes []string) []string {
	if clientVersion(r) < pqSince || len(schemes) == 0 {
		return nil
	}
	return schemes
}

func (s *Server) endpoints(w http.ResponseWriter, r *http.Request, self *store.Node, cred credential) error {
	req, err := decode[api.EndpointsRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := s.checkEndpoints(req.Endpoints); err != nil {
		return err
	}
	observed := s.observedEndpoint(r, req.ListenPort)
	pq := pqOf(r, req.PQ)
	if slices.Equal(self.Endpoints, req.Endpoints) && self.ListenPort == req.ListenPort && self.Observed == observed && slices.Equal(self.PQ, pq) {
		// Nothing changed: nothing to store, no one to wake.
		return writeJSON(w, http.StatusOK, nodeView(s.st.policyNow(), self))
	}
	now := s.now()
	if err := take(s.limiter.buckets(self.ID, now).writes, now, "endpoint reports and key rotations"); err != nil {
		s.metrics.limited.WithLabelValues("writes").Inc()
		return err
	}
	n, err := s.coalescer.submit(&endpointReport{cred: cred, eps: req.Endpoints, port: req.ListenPort, observed: observed, pq: pq,
		done: make(chan endpointResult, 1)})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nodeView(s.st.policyNow(), n))
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, self *store.Node, cred credential) error {
	req, err := decode[api.RotateKeyRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	if [api.KeyLen]byte(req.NodeKey) == [api.KeyLen]byte(self.MachineKey) {
		return badRequest("node_key must differ from the machine key")
	}
	if req.NodeKey == self.NodeKey && (req.BackendKeys == nil || maps.Equal(self.BackendKeys, req.BackendKeys)) {
		// A retry of a rotation that was stored: confirm it again.
		return writeJSON(w, http.StatusOK, nodeView(s.st.policyNow(), self))
	}
	now := s.now()
	if err := take(s.limiter.buckets(self.ID, now).writes, now, "endpoint reports and key rotations"); err != nil {
		s.metrics.limited.WithLabelValues("writes").Inc()
		return err
	}
	n, err := s.updateSelf(r, cred, func(n *store.Node) bool {
		if n.NodeKey == req.NodeKey && (req.BackendKeys == nil || maps.Equal(n.BackendKeys, req.BackendKeys)) {
			return false
		}
		n.NodeKey = req.NodeKey
		if req.BackendKeys != nil {
			n.BackendKeys = req.BackendKeys
		}
		return true
	})
	if err != nil {
		return err
	}
	s.log.Info("node key rotated", "node", n.ID, "node_key", n.NodeKey.String())
	return writeJSON(w, http.StatusOK, nodeView(s.st.policyNow(), n))
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, self *store.Node, cred credential) error {
	// The body may be empty or an empty JSON object.
	if _, err := decode[emptyRequest](r.Body, api.MaxBodyBytes); err != nil {
		if e, ok := err.(*api.Error); !ok || !strings.HasPrefix(e.Message, "request body is empty") {
			return err
		}
	}
	_, err := s.mutate(r.Context(), func(tx store.Tx) (effect, any, error) {
		old, err := tx.Node(cred.id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !hashEqual(old.CredentialHash, cred.hash)) {
			return effect{}, nil, unauthorized("node %s was already removed or re-registered", cred.id)
		}
		if err != nil {
			return effect{}, nil, err
		}
		if err := tx.DeleteNode(cred.id); err != nil {
			return effect{}, nil, err
		}
		return effect{nodes: []nodeUpdate{{cred.id, nil}}}, nil, nil
	})
	if err != nil {
		return err
	}
	s.log.Info("node logged out", "node", cred.id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type emptyRequest struct{}

func (*emptyRequest) Validate() error { return nil }
