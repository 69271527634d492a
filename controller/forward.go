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
// not yet lapsed, or it declines: another version, another CA) commits it
// itself. One that handed a registration over and got no answer commits
// it itself too: a registration's intent is idempotent (it carries the
// hash of the credential it gives, and a node that already holds that
// credential is the intent applied), so whichever of the two commits
// lands first, the other changes nothing. An endpoint report whose answer
// was lost is answered 503, retry: committed here, it could land after a
// newer report and undo it.
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

// The hand-over connection's timeouts (see ForwardWrites).
const (
	forwardDial        = time.Second
	forwardPingIdle    = 500 * time.Millisecond
	forwardPingTimeout = time.Second
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

// maxReplicaAnswer bounds the writer's answer: a node per endpoint report;
// maxReplicaRequest a handed-over write, which re-encodes what a node sent
// within api.MaxBodyBytes, or up to endpointsChunk reports.
const (
	maxReplicaAnswer  = 4 << 20
	maxReplicaRequest = 1 << 20
)

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
		// A writer that is gone without a word (its host down, its
		// region cut off) must not hold a write long: past the dial and
		// handshake timeouts this replica commits it itself, and a
		// connection quiet for forwardPingIdle is pinged and dropped if
		// the ping is not answered within forwardPingTimeout, so that a
		// write in flight to a writer cut off is given up within 1.5 s
		// (the region-loss RTO is 3 s). Pings cost one frame each way per
		// idle half second on one connection per pair of replicas.
		DialContext:         (&net.Dialer{Timeout: forwardDial, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
		TLSHandshakeTimeout: 2 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: forwardPingIdle, PingTimeout: forwardPingTimeout},
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

// errNotSent says the writer did not commit a write (it never got it, or
// declined it): commit it here.
var errNotSent = errors.New("not sent")

// forwardBudget bounds a hand-over: the writer's etcd transaction has 5 s,
// and it answers a handed-over write once that is durable.
const forwardBudget = 8 * time.Second

// forward hands req to the writer and returns its answer. errNotSent
// means the writer did not commit it; an error wrapping
// store.ErrUnknownOutcome that it may have.
func (s *Server) forward(ctx context.Context, writer string, req *replicaCommitRequest) (*replicaCommitResponse, error) {
	f := s.fwd
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, forwardBudget)
	defer cancel()
	var sent atomic.Bool // set by the transport's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { sent.Store(true) },
	})
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, writer+PathReplicaCommit, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	resp, err := f.client.Do(hr)
	if err != nil {
		if parent.Err() != nil {
			return nil, parent.Err() // the node gave up, not the writer
		}
		var cve *tls.CertificateVerificationError
		switch {
		case errors.As(err, &cve):
			// Another CA: the writer cannot take writes from here.
			f.avoidFor(writer, forwardAvoidDeclined)
			s.log.Warn("the writer replica's certificate is not from this replica's CA; committing here, and not handing it writes for a while", "writer", writer, "err", err, "for", forwardAvoidDeclined)
			return nil, errNotSent
		case !sent.Load():
			f.avoidFor(writer, forwardAvoid)
			s.log.Warn("the writer replica cannot be reached; committing here", "writer", writer, "err", err)
			return nil, errNotSent
		}
		f.avoidFor(writer, forwardAvoid)
		return nil, s.lostAnswer(writer, err)
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxReplicaAnswer))
		resp.Body.Close()
	}()
	lr := io.LimitReader(resp.Body, maxReplicaAnswer)
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if err := json.NewDecoder(lr).Decode(&eb); err != nil || eb.Error == nil {
			return nil, s.lostAnswer(writer, fmt.Errorf("it answered %s without an error", resp.Status))
		}
		eb.Error.Status = resp.StatusCode
		switch declined(eb.Error) {
		case declinedAll:
			// Nothing was committed: the writer does not take writes
			// from this replica (another version, another CA).
			f.avoidFor(writer, forwardAvoidDeclined)
			s.log.Warn("the writer replica declined a write; committing here, and not handing it writes for a while", "writer", writer, "answer", eb.Error.Error(), "for", forwardAvoidDeclined)
			return nil, errNotSent
		case declinedThis:
			s.log.Warn("the writer replica could not read a write; committing it here", "writer", writer, "answer", eb.Error.Error())
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
		return nil, s.lostAnswer(writer, fmt.Errorf("its answer: %v", err))
	}
	return &out, nil
}

// forwardEndpoints hands endpoint reports to the writer and returns their
// outcomes and the revision they committed as.
func (s *Server) forwardEndpoints(ctx context.Context, writer string, ins []endpointsIntent) ([]endpointsOutcome, uint64, error) {
	resp, err := s.forward(ctx, writer, &replicaCommitRequest{Endpoints: ins})
	if err != nil {
		s.countForward(err, len(ins))
		return nil, 0, err
	}
	outs := make([]endpointsOutcome, len(resp.Endpoints))
	for i, o := range resp.Endpoints {
		switch {
		case o.Error != nil:
			outs[i].err = &api.Error{Status: o.Error.Status, Code: o.Error.Code, Message: o.Error.Message}
		case o.Node != nil:
			outs[i].node = o.Node
		default:
			err := s.lostAnswer(writer, fmt.Errorf("endpoint report %d has neither a node nor an error", i))
			s.countForward(err, len(ins))
			return nil, 0, err
		}
	}
	s.metrics.forwarded.WithLabelValues("ok").Add(float64(len(ins)))
	return outs, resp.Revision, nil
}

// countForward counts n writes whose hand-over did not succeed.
func (s *Server) countForward(err error, n int) {
	var apiErr *api.Error
	result := "error"
	switch {
	case errors.Is(err, errNotSent):
		result = "committed_here"
	case errors.Is(err, store.ErrUnknownOutcome):
		result = "unanswered"
	case errors.As(err, &apiErr):
		result = "refused"
	}
	s.metrics.forwarded.WithLabelValues(result).Add(float64(n))
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

// How the writer declined a handed-over write, before committing anything.
const (
	notDeclined  = iota
	declinedThis // it could not read this one (too large, malformed)
	declinedAll  // it takes no writes from this replica (not a replica to it, another version)
)

// declined tells the writer's refusals of a handed-over write as a write
// from its refusals of the write's content (an unknown auth key, a name
// conflict), which the node is told.
func declined(e *api.Error) int {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return declinedThis
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType, http.StatusUpgradeRequired:
		return declinedAll
	case http.StatusForbidden:
		if e.Code == codeNotReplica {
			return declinedAll
		}
	}
	return notDeclined
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

// lostAnswer is a write the writer may have committed: logged with its
// cause, and answered to the node without the replicas' addresses.
func (s *Server) lostAnswer(writer string, err error) error {
	s.log.Warn("the writer replica took a write and did not answer; its outcome is unknown", "writer", writer, "err", err)
	return &forwardedUnavailable{
		e: &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: "the controller replica that commits writes did not answer, and this one cannot tell whether the change took effect; retry (a retry is safe)"},
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
	req, err := decode[replicaCommitRequest](r.Body, maxReplicaRequest)
	if err != nil {
		return err
	}
	if req.Register != nil {
		if err := s.checkEndpoints(req.Register.Endpoints); err != nil {
			return err
		}
		n, rev, err := s.commitRegisterEarly(r.Context(), req.Register)
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
	outs, rev, err := s.commitEndpointsHere(r.Context(), req.Endpoints, true)
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
	s.metrics.forWriters.Add(float64(len(outs)))
	return writeJSON(w, http.StatusOK, resp)
}
