package controller

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// forwardingServer is a controller that hands its registrations to
// writer, a replica announced before it, and an intent for a new node.
func forwardingServer(t *testing.T, writer *httptest.Server, writerURL string) (*Server, *registerIntent) {
	t.Helper()
	s, key, _ := testServer(t, prometheus.NewRegistry())
	var tr *http.Transport
	if writer != nil {
		tr = writer.Client().Transport.(*http.Transport)
		writerURL = writer.URL
	} else {
		tr = &http.Transport{}
	}
	s.ForwardWrites("https://zz-self.invalid", tr.TLSClientConfig, nil)
	urls := []string{writerURL, "https://zz-self.invalid"}
	s.replicas.Store(&urls)
	keyID, keySecret, _ := splitToken(key, api.AuthKeyPrefix)
	in := &registerIntent{
		MachineKey: randomKeyOf[api.MachinePublic](), NodeKey: randomKeyOf[api.NodePublic](), Hostname: "fwd",
		AuthKeyID: keyID, AuthKeyHash: store.Hash(sha256.Sum256([]byte(keySecret))),
		Proven: true, NewID: api.NodeID("n" + randomHex(8)),
	}
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
	return s, in
}

func randomKeyOf[K api.NodePublic | api.MachinePublic]() K {
	var k K
	copy(k[:], randomBytes(len(k)))
	return k
}

// TestForwardUnreachableWriterCommitsHere: a writer that cannot be
// reached never got the write; the replica commits it itself, and for a
// while does not try that writer again.
func TestForwardUnreachableWriterCommitsHere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	s, in := forwardingServer(t, nil, dead)
	n, _, err := s.commitRegister(context.Background(), in, true)
	if err != nil {
		t.Fatalf("register with the writer unreachable: %v", err)
	}
	if n.ID != in.NewID {
		t.Errorf("registered %s, want %s", n.ID, in.NewID)
	}
	if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("committed_here")); got != 1 {
		t.Errorf("forwarded{committed_here} = %v, want 1", got)
	}
	if w := s.writer(); w != "" {
		t.Errorf("right after failing to reach %s the replica still hands writes to %s", dead, w)
	}
}

// TestForwardRefusalPassesOn: the writer's refusal is the node's answer.
func TestForwardRefusalPassesOn(t *testing.T) {
	writer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeError(w, &api.Error{Status: http.StatusUnauthorized, Code: api.CodeInvalidAuthKey, Message: "auth key k was revoked"})
	}))
	defer writer.Close()
	s, in := forwardingServer(t, writer, "")
	_, _, err := s.commitRegister(context.Background(), in, true)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Message != "auth key k was revoked" {
		t.Fatalf("the writer's refusal came back as %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("refused")); got != 1 {
		t.Errorf("forwarded{refused} = %v, want 1", got)
	}
}

// TestForwardDeclinedCommitsHere: a writer that declines the write itself
// (another version without the route, another CA) committed nothing: the
// replica commits it, and stops handing it writes for a while.
func TestForwardDeclinedCommitsHere(t *testing.T) {
	for _, e := range []*api.Error{
		{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "no route /v1/replica/commit"},
		{Status: http.StatusForbidden, Code: codeNotReplica, Message: "only another replica"},
	} {
		writer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			writeError(w, e)
		}))
		s, in := forwardingServer(t, writer, "")
		n, _, err := s.commitRegister(context.Background(), in, true)
		writer.Close()
		if err != nil || n.ID != in.NewID {
			t.Fatalf("writer answering %d %s: %v, want the registration committed here", e.Status, e.Code, err)
		}
		if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("committed_here")); got != 1 {
			t.Errorf("forwarded{committed_here} = %v, want 1", got)
		}
		if w := s.writer(); w != "" {
			t.Errorf("the replica still hands writes to a writer that declined them")
		}
	}
}

// TestForwardLostAnswer: a writer that took a write and never answered
// may have committed it. A registration is committed here too (its intent
// is idempotent: applied twice, it is one registration); an endpoint
// report, which could land after a newer one, is answered 503, retry.
func TestForwardLostAnswer(t *testing.T) {
	var got atomic.Int32
	writer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		panic(http.ErrAbortHandler) // the stream or connection drops with no answer
	}))
	writer.EnableHTTP2 = true
	writer.StartTLS()
	defer writer.Close()
	s, in := forwardingServer(t, writer, "")
	n, _, err := s.commitRegister(context.Background(), in, true)
	if err != nil || n.ID != in.NewID {
		t.Fatalf("a registration whose answer was lost: %v, want it committed here", err)
	}
	if got.Load() != 1 || testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("unanswered")) != 1 {
		t.Errorf("writer took %d requests, forwarded{unanswered} = %v; want 1 and 1", got.Load(), testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("unanswered")))
	}

	// The writer had committed it as well: the second application is the
	// same registration (even unproven, with a single-use key spent).
	in.Proven = false
	n2, _, err := s.commitRegister(context.Background(), in, false)
	if err != nil || n2.ID != n.ID || n2.CredentialHash != in.NewCredentialHash {
		t.Fatalf("the same intent applied again: %v, %+v", err, n2)
	}

	// An endpoint report: 503 with Retry-After, through the router.
	s.fwd.avoidFor("", 0) // the writer is tried again
	cred := in.NewCredentialHash
	outs, _, err := s.commitEndpoints(context.Background(), []endpointsIntent{{Node: n.ID, CredentialHash: cred,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.9:41641")}}}, true)
	if err != nil || len(outs) != 1 {
		t.Fatalf("endpoint report: %v, %d outcomes", err, len(outs))
	}
	var fu *forwardedUnavailable
	if !errors.As(outs[0].err, &fu) || !errors.Is(outs[0].err, store.ErrUnknownOutcome) || fu.e.Status != http.StatusServiceUnavailable || fu.retryAfter == "" {
		t.Errorf("an endpoint report whose answer was lost: %#v, want a 503 with Retry-After", outs[0].err)
	}
	if strings.Contains(fu.e.Message, writer.URL) || strings.Contains(fu.e.Message, strings.TrimPrefix(writer.URL, "https://")) {
		t.Errorf("the node is told the writer's address: %s", fu.e.Message)
	}
}

// TestHandOverBatches: registrations that queue while the hand-overs in
// flight wait for the writer go to it together, and each gets its own
// outcome from the writer's answer, a refusal included.
func TestHandOverBatches(t *testing.T) {
	release := make(chan struct{})
	var requests, held atomic.Int32
	var mu sync.Mutex
	var sizes []int
	writer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req replicaCommitRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, badRequest("%v", err))
			return
		}
		requests.Add(1)
		mu.Lock()
		sizes = append(sizes, len(req.Registers))
		mu.Unlock()
		if held.Add(1) <= handOverSenders {
			<-release // every sender has one in flight
		}
		resp := replicaCommitResponse{Registers: make([]wireOutcome, len(req.Registers))}
		for i, in := range req.Registers {
			if in.Hostname == "refused" {
				resp.Registers[i].Error = &wireError{Status: http.StatusConflict, Code: api.CodeConflict, Message: "no"}
				continue
			}
			resp.Registers[i].Node = &store.Node{ID: in.NewID, MachineKey: in.MachineKey, NodeKey: in.NodeKey, Name: in.Hostname}
		}
		writeJSON(w, http.StatusOK, resp)
	}))
	writer.EnableHTTP2 = true
	writer.StartTLS()
	defer writer.Close()
	s, _ := forwardingServer(t, writer, "")

	const n = 12
	type result struct {
		host string
		node *store.Node
		err  error
	}
	results := make(chan result, n+handOverSenders)
	register := func(host string) {
		in := &registerIntent{MachineKey: randomKeyOf[api.MachinePublic](), NodeKey: randomKeyOf[api.NodePublic](), Hostname: host,
			AuthKeyID: "k", NewID: api.NodeID("n" + randomHex(8))}
		n, _, err := s.commitRegister(context.Background(), in, true)
		results <- result{host, n, err}
	}
	for i := range handOverSenders {
		go register(fmt.Sprintf("first-%d", i))
		for held.Load() <= int32(i) { // one at a time: each its own sender
			time.Sleep(time.Millisecond)
		}
	}
	for i := range n {
		host := fmt.Sprintf("queued-%d", i)
		if i == 5 {
			host = "refused"
		}
		go register(host)
	}
	for len(s.fwd.regs) < n {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range n + handOverSenders {
		r := <-results
		switch {
		case r.host == "refused":
			var apiErr *api.Error
			if !errors.As(r.err, &apiErr) || apiErr.Status != http.StatusConflict {
				t.Errorf("the registration the writer refused: %v, want its 409", r.err)
			}
		case r.err != nil || r.node == nil || r.node.Name != r.host:
			t.Errorf("registration %s: %+v, %v", r.host, r.node, r.err)
		}
	}
	if got := requests.Load(); got > 2*handOverSenders {
		t.Errorf("%d registrations took %d hand-overs (%v); the %d queued should go in at most %d", n+handOverSenders, got, sizes, n, handOverSenders)
	}
	if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("ok")); got != n+handOverSenders-1 {
		t.Errorf("forwarded{ok} = %v, want %d", got, n+handOverSenders-1)
	}
	if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("refused")); got != 1 {
		t.Errorf("forwarded{refused} = %v, want 1", got)
	}
}

// TestReplicaCommitNeedsReplica: a node (no replica certificate) cannot
// hand writes to a replica.
func TestReplicaCommitNeedsReplica(t *testing.T) {
	s, _, _ := testServer(t, prometheus.NewRegistry())
	s.isReplica = func(*tls.ConnectionState) bool { return false }
	req := httptest.NewRequest(http.MethodPost, "https://controller"+PathReplicaCommit, nil)
	req.Header.Set(api.HeaderCapabilityVersion, "3")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a node handing a write over: %d %s, want 403", rec.Code, rec.Body)
	}
}
