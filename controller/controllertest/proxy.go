package controllertest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Proxy is an HTTPS reverse proxy in front of a controller, for tests of
// what a client does when the network loses a request or its answer. It
// terminates TLS with its own certificate (CAFile) and forwards to the
// controller's URL; by default it forwards everything unchanged. Rules set
// per path make it drop a request, drop an answer or answer 429 itself.
// It speaks HTTP/2 and HTTP/1.1, as the controller does.
type Proxy struct {
	URL    string // https://127.0.0.1:PORT
	CAFile string // PEM of the proxy's certificate, for a client's trust

	srv *httptest.Server
	tr  *http.Transport
	rp  *httputil.ReverseProxy

	mu    sync.Mutex
	rules map[string][]rule
	log   []Exchange
}

// Action is what the proxy did with a request.
type Action string

const (
	// Forwarded: the request went to the controller and its answer to the
	// client.
	Forwarded Action = "forwarded"
	// DroppedAnswer: the request went to the controller, which answered;
	// the proxy then cut the client's stream (an HTTP/2 reset, or the
	// connection for HTTP/1.1), so the answer never reached the client.
	DroppedAnswer Action = "dropped-answer"
	// DroppedRequest: the proxy cut the client's stream without
	// forwarding the request.
	DroppedRequest Action = "dropped-request"
	// RateLimited: the proxy answered 429 rate_limited with Retry-After
	// itself, as the controller does, without forwarding the request.
	RateLimited Action = "rate-limited"
)

// Exchange is one request the proxy saw.
type Exchange struct {
	Method string
	Path   string
	At     time.Time // when the request arrived
	Action Action
	// Status and Body are the controller's answer to a dropped answer
	// (the client never saw them); Status is also set for Forwarded.
	Status int
	Body   []byte
}

type rule struct {
	action     Action
	retryAfter time.Duration
	forever    bool
}

// NewProxy starts a proxy in front of c, stopped when the test ends. The
// controller may be restarted behind it: its URL stays the same.
func NewProxy(t testing.TB, c *Controller) *Proxy {
	t.Helper()
	target, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", c.CAFile)
	}
	p := &Proxy{rules: map[string][]rule{}}
	p.tr = &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		ForceAttemptHTTP2: true,
	}
	quiet := log.New(io.Discard, "", 0)
	p.rp = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: p.tr,
		ErrorLog:  quiet,
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.EnableHTTP2 = true
	p.srv.Config.ErrorLog = quiet
	p.srv.StartTLS()
	p.URL = p.srv.URL
	p.CAFile = filepath.Join(t.TempDir(), "proxy-ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.CAFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close cuts every client connection, which ends the requests in flight
// (and their requests to the controller), and stops the proxy.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

func (p *Proxy) add(path string, n int, r rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 {
		r.forever = true
		n = 1
	}
	for range n {
		p.rules[path] = append(p.rules[path], r)
	}
}

// DropAnswers forwards the next n requests to path (n < 0: every one,
// until Reset) and cuts each answer before it reaches the client.
func (p *Proxy) DropAnswers(path string, n int) { p.add(path, n, rule{action: DroppedAnswer}) }

// DropRequests cuts the next n requests to path (n < 0: every one, until
// Reset) without forwarding them.
func (p *Proxy) DropRequests(path string, n int) { p.add(path, n, rule{action: DroppedRequest}) }

// RateLimit answers the next n requests to path (n < 0: every one, until
// Reset) with 429 rate_limited and Retry-After: retryAfter (whole seconds,
// at least 1), as the controller does, without forwarding them.
func (p *Proxy) RateLimit(path string, n int, retryAfter time.Duration) {
	p.add(path, n, rule{action: RateLimited, retryAfter: retryAfter})
}

// Reset removes the rules for path: its requests are forwarded again.
func (p *Proxy) Reset(path string) {
	p.mu.Lock()
	delete(p.rules, path)
	p.mu.Unlock()
}

// Exchanges returns the requests to path seen so far, in order of arrival.
func (p *Proxy) Exchanges(path string) []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Exchange
	for _, e := range p.log {
		if e.Path == path {
			out = append(out, e)
		}
	}
	return out
}

// next takes the action for a request to path and logs the exchange; the
// caller fills in the answer through the returned index.
func (p *Proxy) next(r *http.Request) (rule, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ru := rule{action: Forwarded}
	if rs := p.rules[r.URL.Path]; len(rs) > 0 {
		ru = rs[0]
		if !ru.forever {
			p.rules[r.URL.Path] = rs[1:]
		}
	}
	p.log = append(p.log, Exchange{Method: r.Method, Path: r.URL.Path, At: time.Now(), Action: ru.action})
	return ru, len(p.log) - 1
}

func (p *Proxy) answered(i, status int, body []byte) {
	p.mu.Lock()
	p.log[i].Status, p.log[i].Body = status, body
	p.mu.Unlock()
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	ru, i := p.next(r)
	switch ru.action {
	case DroppedRequest:
		panic(http.ErrAbortHandler)
	case DroppedAnswer:
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		p.answered(i, rec.Code, rec.Body.Bytes())
		// The server recovers ErrAbortHandler silently and resets the
		// stream (or closes the connection): the answer is lost.
		panic(http.ErrAbortHandler)
	case RateLimited:
		secs := max(int(ru.retryAfter/time.Second), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: api.CodeRateLimited,
			Message: "too many requests from this node (test proxy); retry in " + strconv.Itoa(secs) + " s"}})
		p.answered(i, http.StatusTooManyRequests, nil)
	default:
		sw := &statusWriter{ResponseWriter: w}
		p.rp.ServeHTTP(sw, r)
		p.answered(i, sw.status, nil)
	}
}

// statusWriter records the status of a forwarded answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
