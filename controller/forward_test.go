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

// TestForwardLostAnswerIsUnknown: a writer that took the write and never
// answered may have committed it: the replica neither commits it again
// nor claims it failed.
func TestForwardLostAnswerIsUnknown(t *testing.T) {
	writer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		panic(http.ErrAbortHandler) // the connection drops with no answer
	}))
	defer writer.Close()
	s, in := forwardingServer(t, writer, "")
	_, _, err := s.commitRegister(context.Background(), in, true)
	if !errors.Is(err, store.ErrUnknownOutcome) {
		t.Fatalf("a lost answer came back as %v, want ErrUnknownOutcome", err)
	}
	var fu *forwardedUnavailable
	if !errors.As(err, &fu) || fu.e.Status != http.StatusServiceUnavailable || fu.retryAfter == "" {
		t.Errorf("the node would not get a 503 with Retry-After: %#v", err)
	}
	if got := testutil.ToFloat64(s.metrics.forwarded.WithLabelValues("committed_here")); got != 0 {
		t.Error("the replica committed a write the writer may have committed")
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
