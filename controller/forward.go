package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// Writes through one replica. Over etcd every replica can commit, but
// commits from several replicas at once conflict on the store's revision:
// the losers read again and retry, and each replica's batches stay small.
// So a replica hands the registrations and endpoint reports it takes (the
// writes nodes make all the time; admin writes, key rotations and logouts
// stay where they are made) to one replica, the writer, which commits them
// in its batches with its own: the first of the
// announced replica URLs in sorted order, which every replica knows from
// the announcements and which moves when that replica's announcement
// lapses.
//
// Correctness does not rest on it. The writer commits with the same
// optimistic transaction as any replica, so two replicas that disagree on
// the writer for a moment cost a conflict, nothing else. A replica that
// cannot hand a write over (the writer is unreachable, its announcement
// not yet lapsed) commits it itself; one that handed it over and got no
// answer cannot tell whether it committed and says so (503, retry: a
// registration's retry is safe).
//
// Replicas authenticate each other with client certificates from their
// shared CA (certs.Manager.IsReplica); the receiving replica checks
// nothing else the node sent. The forwarding replica has checked the auth
// key's form, the machine proof (its challenges are its own) and the
// endpoints, and it sends what the transaction needs: the auth key's ID
// and hash, never its secret, and the hash of the new credential, never
// the credential.

// PathReplicaCommit is where a replica hands a write to the writer.
const PathReplicaCommit = "/v1/replica/commit"

// forwardAvoid is how long a replica commits its writes itself after it
// failed to reach the writer; forwardAvoidDeclined, after the writer
// declined a write (it runs another version, or has another CA).
const (
	forwardAvoid         = 2 * time.Second
	forwardAvoidDeclined = time.Minute
)

// replicaCommitRequest is one write handed to the writer: a registration,
// or a batch of endpoint reports.
type replicaCommitRequest struct {
	Register  *registerIntent   `json:"register,omitempty"`
	Endpoints []endpointsIntent `json:"endpoints,omitempty"`
}

// replicaCommitResponse is the writer's answer: the revision the write
// committed as, and its result: the registered node, or each endpoint
// report's node or refusal, in order.
type replicaCommitResponse struct {
	Revision  uint64        `json:"revision"`
	Node      *store.Node   `json:"node,omitempty"`
	Endpoints []wireOutcome `json:"endpoints,omitempty"`
}

// wireOutcome is an endpointsOutcome on the wire.
type wireOutcome struct {
	Node  *store.Node `json:"node,omitempty"`
	Error *wireError  `json:"error,omitempty"`
}

// wireError is an api.Error with its status, which api.Error leaves out
// of its JSON.
type wireError struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// maxReplicaAnswer bounds the writer's answer: a node per endpoint report.
const maxReplicaAnswer = 4 << 20

// forwarder hands writes to the writer replica.
type forwarder struct {
	self   string // this replica's URL
	client *http.Client

	mu        sync.Mutex
	avoid     string // a writer not reached lately
	avoidTill time.Time
}

// ForwardWrites makes this replica, announced at self, hand its
// registrations and endpoint reports to the writer replica, reached with tlsConf (the replica
// client configuration of certs.Manager); isReplica tells another
// replica's requests from a node's. Without it (a single controller, or
// replicas with an operator's certificate and no shared CA) every replica
// commits its own writes.
func (s *Server) ForwardWrites(self string, tlsConf *tls.Config, isReplica func(*tls.ConnectionState) bool) {
	tr := &http.Transport{
		// A writer that is gone without a word (its host down) must not
		// hold a registration long: past the dial timeout this replica
		// commits it itself.
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	s.fwd = &forwarder{self: self, client: &http.Client{Transport: tr}}
	s.isReplica = isReplica
}

// writer returns the URL of the replica to hand writes to, or "" when
// this one commits them.
func (s *Server) writer() string {
	f := s.fwd
	if f == nil {
		return ""
	}
	urls := s.replicas.Load()
	if urls == nil || len(*urls) == 0 || (*urls)[0] == f.self {
		return ""
	}
	w := (*urls)[0]
	f.mu.Lock()
	defer f.mu.Unlock()
	if w == f.avoid && time.Now().Before(f.avoidTill) {
		return ""
	}
	return w
}

// errNotSent says a write never reached the writer: commit it here.
var errNotSent = errors.New("not sent")

// forward hands req to the writer and returns its answer. errNotSent
// means the writer never got the request; store.ErrUnknownOutcome that it
// may have committed it.
func (s *Server) forward(ctx context.Context, writer string, req *replicaCommitRequest) (*replicaCommitResponse, error) {
	f := s.fwd
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, feedWait)
	defer cancel()
	var sent atomic.Bool // set by the transport's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	})
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, writer+PathReplicaCommit, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	resp, err := f.client.Do(hr)
	if err != nil {
		if !sent.Load() {
			if ctx.Err() != nil && context.Cause(ctx) != context.DeadlineExceeded {
				return nil, ctx.Err() // the node gave up, not the writer
			}
			f.avoidFor(writer, forwardAvoid)
			s.log.Warn("the writer replica cannot be reached; committing here", "writer", writer, "err", err)
			return nil, errNotSent
		}
		return nil, lostAnswer(writer, err)
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, maxReplicaAnswer)
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if err := json.NewDecoder(lr).Decode(&eb); err != nil || eb.Error == nil {
			return nil, lostAnswer(writer, fmt.Errorf("it answered %s without an error", resp.Status))
		}
		eb.Error.Status = resp.StatusCode
		if writerDeclined(eb.Error) {
			// Nothing was committed: the writer does not take writes
			// from this replica (another version, another CA).
			f.avoidFor(writer, forwardAvoidDeclined)
			s.log.Warn("the writer replica declined a write; committing here, and not handing it writes for a while", "writer", writer, "answer", eb.Error.Error(), "for", forwardAvoidDeclined)
			return nil, errNotSent
		}
		if resp.StatusCode >= 500 {
			// The writer's store, not the request: its message says
			// whether anything was changed.
			return nil, &forwardedUnavailable{e: eb.Error, retryAfter: resp.Header.Get("Retry-After")}
		}
		return nil, eb.Error
	}
	var out replicaCommitResponse
	err = json.NewDecoder(lr).Decode(&out)
	switch {
	case err != nil:
	case req.Register != nil && out.Node == nil:
		err = errors.New("no node in it")
	case req.Endpoints != nil && len(out.Endpoints) != len(req.Endpoints):
		err = fmt.Errorf("%d outcomes for %d endpoint reports", len(out.Endpoints), len(req.Endpoints))
	}
	if err != nil {
		return nil, lostAnswer(writer, fmt.Errorf("its answer: %v", err))
	}
	return &out, nil
}

// forwardEndpoints hands endpoint reports to the writer, and returns their
// outcomes once this replica's state has them.
func (s *Server) forwardEndpoints(ctx context.Context, writer string, ins []endpointsIntent) ([]endpointsOutcome, uint64, error) {
	resp, err := s.forward(ctx, writer, &replicaCommitRequest{Endpoints: ins})
	if err != nil {
		s.countForward(err)
		return nil, 0, err
	}
	s.metrics.forwarded.WithLabelValues("ok").Inc()
	s.waitWriter(ctx, resp.Revision)
	outs := make([]endpointsOutcome, len(resp.Endpoints))
	for i, o := range resp.Endpoints {
		switch {
		case o.Error != nil:
			outs[i].err = &api.Error{Status: o.Error.Status, Code: o.Error.Code, Message: o.Error.Message}
		case o.Node != nil:
			outs[i].node = o.Node
		default:
			return nil, 0, lostAnswer(writer, fmt.Errorf("endpoint report %d has neither a node nor an error", i))
		}
	}
	return outs, resp.Revision, nil
}

// countForward counts a hand-over that did not succeed.
func (s *Server) countForward(err error) {
	var apiErr *api.Error
	switch {
	case errors.Is(err, errNotSent):
		s.metrics.forwarded.WithLabelValues("committed_here").Inc()
	case errors.As(err, &apiErr):
		s.metrics.forwarded.WithLabelValues("refused").Inc()
	default:
		s.metrics.forwarded.WithLabelValues("error").Inc()
	}
}

// waitWriter waits until this replica's state has what the writer
// committed at rev: the node's next request may come here.
func (s *Server) waitWriter(ctx context.Context, rev uint64) {
	wctx, cancel := context.WithTimeout(ctx, feedWait)
	defer cancel()
	if !s.st.waitRev(wctx, rev) {
		s.log.Warn("the store's change feed has not delivered a commit the writer replica made; answering anyway", "revision", rev, "waited", feedWait)
	}
}

func (f *forwarder) avoidFor(writer string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.avoid, f.avoidTill = writer, time.Now().Add(d)
}

// codeNotReplica is the writer's refusal of a request without a replica
// certificate.
const codeNotReplica = "not_replica"

// writerDeclined reports whether the writer refused a handed-over write
// as a write, before committing anything (not a replica, no such route,
// a request it cannot read or a version it does not serve), rather than
// refusing the registration itself, which the node is told.
func writerDeclined(e *api.Error) bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUpgradeRequired:
		return true
	case http.StatusForbidden:
		return e.Code == codeNotReplica
	}
	return false
}

// forwardedUnavailable is a 503 for the node: the writer's own, or a
// write whose answer from the writer was lost (cause
// store.ErrUnknownOutcome).
type forwardedUnavailable struct {
	e          *api.Error
	retryAfter string
	cause      error
}

func (f *forwardedUnavailable) Error() string { return f.e.Error() }
func (f *forwardedUnavailable) Unwrap() error { return f.cause }

func lostAnswer(writer string, err error) error {
	return &forwardedUnavailable{
		e: &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: fmt.Sprintf("this replica handed the write to the writer replica %s and got no answer (%v): it cannot tell whether it took effect; retry (a retry is safe)", writer, err)},
		retryAfter: "1",
		cause:      store.ErrUnknownOutcome,
	}
}

// replicaCommit is the writer's side: a write another replica handed over.
func (s *Server) replicaCommit(w http.ResponseWriter, r *http.Request) error {
	if s.isReplica == nil || !s.isReplica(r.TLS) {
		return &api.Error{Status: http.StatusForbidden, Code: codeNotReplica,
			Message: "only another replica of this controller, with a client certificate from its CA, may hand it writes"}
	}
	req, err := decode[replicaCommitRequest](r.Body, api.MaxBodyBytes)
	if err != nil {
		return err
	}
	if req.Register != nil {
		if err := s.checkEndpoints(req.Register.Endpoints); err != nil {
			return err
		}
		n, rev, err := s.commitRegister(r.Context(), req.Register, false)
		if err != nil {
			return err
		}
		s.metrics.forWriters.Inc()
		return writeJSON(w, http.StatusOK, replicaCommitResponse{Revision: rev, Node: n})
	}
	for _, in := range req.Endpoints {
		if err := s.checkEndpoints(in.Endpoints); err != nil {
			return err
		}
	}
	outs, rev, err := s.commitEndpoints(r.Context(), req.Endpoints, false)
	if err != nil {
		return err
	}
	resp := replicaCommitResponse{Revision: rev, Endpoints: make([]wireOutcome, len(outs))}
	for i, o := range outs {
		var apiErr *api.Error
		switch {
		case o.err == nil:
			resp.Endpoints[i].Node = o.node
		case errors.As(o.err, &apiErr):
			resp.Endpoints[i].Error = &wireError{Status: apiErr.Status, Code: apiErr.Code, Message: apiErr.Message}
		default:
			return o.err
		}
	}
	s.metrics.forWriters.Inc()
	return writeJSON(w, http.StatusOK, resp)
}
