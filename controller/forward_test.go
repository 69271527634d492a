package controller

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

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
