// Package control is the node's client of the controller's API v1.
package control

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Client talks to a controller, which may run as several replicas: each
// serves the whole node API over one store, with the same CA and the same
// netmap revisions. Its methods may be called concurrently.
//
// The client sends every request to one replica, the current one. When a
// replica fails a request (no connection, a TLS failure, a timeout, a 503,
// or another 5xx that is not a refusal with an API error body), the client
// moves on to the next replica, logs the switch and tells Config.OnSwitch.
// A refusal (4xx, or a 5xx with an API error body) is the controller's
// answer, which another replica would give too: the client stays. The
// replicas are tried in order: those the controller last announced
// (MapResponse.Controllers), then those the client was made with, which
// stay the fallback.
//
// A failed request is sent again, at once, to the next replica, each
// replica at most once per call, when that cannot apply it twice: it is
// idempotent (a netmap poll that does not wait, an endpoints report, a
// registration challenge), or the failure came before its headers were
// written (no replica saw it). A long-poll is not sent again: its caller
// polls again, with the revision it has, on the replica the client moved
// to. A registration goes to the replica that issued its challenge (a
// challenge holds at the process that issued it only), and neither a
// registration nor a key rotation nor a logout that a replica may have
// received is sent to another: the caller's own protocol settles them
// (Register and RotateKey document how).
//
// When the controller answers a request 429 with Retry-After, the client
// holds back that request (its path, whatever the query) until the time
// has passed, whichever replica it would go to: it refuses it at once with
// the same kind of error, which RetryAfter reads, without sending it. A
// 429 does not move the client to another replica.
type Client struct {
	hc       *http.Client
	log      *slog.Logger
	onSwitch func(from, to, reason string)
	started  []string // the URLs the client was made with: the fallback

	mu        sync.Mutex
	cred      string
	notBefore map[string]time.Time // path -> when it may be sent again
	announced []string             // the replicas the controller last announced
	heard     []string             // the last announcement, as it came
	cur       string               // the replica requests go to
	challenge struct{ value, from string }
	// deprecation is what the controller's last answer said of this
	// client's capability version (zero: nothing).
	deprecation Deprecation
	deprecated  bool
	// peer is the capability version the controller's last answer
	// carried (0: none yet, or unreadable).
	peer api.CapabilityVersion
}

// Config configures a Client.
type Config struct {
	// URLs are the controller's replicas the client starts with, each
	// https://HOST:PORT (see CanonicalURL), at least one and no two
	// alike. The first is the current one at first. They stay the
	// fallback once the controller announces its replicas.
	URLs []string
	// CAFile is the PEM file of the controller's CA, one for every
	// replica; the client trusts it and nothing else.
	CAFile string
	// Logger logs the switches between replicas (info) and announced
	// URLs that are not usable (warn); nil discards.
	Logger *slog.Logger
	// OnSwitch, if set, is called after the client moved from one replica
	// to another, with the reason (one of Reasons). It must not call the
	// client.
	OnSwitch func(from, to, reason string)
	// PingAfter and PingTimeout set the connections' health check (zero:
	// PingAfter and PingTimeout below; tests shorten them).
	PingAfter, PingTimeout time.Duration
}

// Why the client moved from one replica to another.
const (
	// ReasonNetwork: no connection to the replica, or the connection
	// broke before the whole answer arrived.
	ReasonNetwork = "network"
	// ReasonTLS: the TLS handshake failed (a certificate not signed by
	// the controller's CA, or for another name, or a TLS alert).
	ReasonTLS = "tls"
	// ReasonTimeout: no answer within the request's timeout.
	ReasonTimeout = "timeout"
	// ReasonUnavailable: the replica answered 503.
	ReasonUnavailable = "unavailable"
	// ReasonServerError: the replica answered another 5xx without an API
	// error body (a proxy's or load balancer's answer, not the
	// controller's refusal).
	ReasonServerError = "server_error"
)

// Reasons lists every reason for a switch.
var Reasons = []string{ReasonNetwork, ReasonTLS, ReasonTimeout, ReasonUnavailable, ReasonServerError}

// dialTimeout bounds connecting to a replica, so that one that drops
// packets (a host gone, a partition) holds a request for seconds, not for
// the kernel's minutes, before the client moves on.
const dialTimeout = 5 * time.Second

// A replica that dies without closing its connections (a host lost, a
// partition, a container killed) answers nothing, not even a reset: a
// long-poll on it would wait its whole wait (up to api.MaxWait) plus
// requestTimeout before the client moved on, and the node would not know
// its netmap had gone stale. The client sends an HTTP/2 ping on a
// connection that has been silent for PingAfter and closes it when no
// answer comes within PingTimeout: a long-poll learns of a silent replica
// within their sum (15 s) and the client moves on. A live replica answers
// at once, whatever it is doing; 10,000 nodes cost it 1,000 pings a
// second at most, and only while their connections are idle.
const (
	PingAfter   = 10 * time.Second
	PingTimeout = 5 * time.Second
)

// sessionCacheSize is how many TLS sessions a client keeps: one per
// controller replica it talks to, and replicas are few.
const sessionCacheSize = 16

// New returns a client for the controller at url (https://HOST:PORT) that
// trusts the CA certificate in caFile (PEM) and nothing else.
func New(url, caFile string) (*Client, error) {
	return NewReplicated(Config{URLs: []string{url}, CAFile: caFile})
}

// NewReplicated returns a client for the controller replicas of cfg.
func NewReplicated(cfg Config) (*Client, error) {
	urls, err := checkURLs(cfg.URLs)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("controller CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("controller CA %s holds no PEM certificate", cfg.CAFile)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ping := &http.HTTP2Config{SendPingTimeout: cmp.Or(cfg.PingAfter, PingAfter), PingTimeout: cmp.Or(cfg.PingTimeout, PingTimeout)}
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	// The session cache lets a connection after the first (after a
	// challenge, a controller restart, a network change or a switch
	// between replicas) resume its TLS session: a fresh key exchange
	// still, without the certificate's signature and its verification.
	// It is this node's own.
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	return &Client{
		hc: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConf,
			ForceAttemptHTTP2:   true,
			HTTP2:               ping,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     api.MaxWait + time.Minute,
		}},
		log:       log,
		onSwitch:  cfg.OnSwitch,
		started:   urls,
		cur:       urls[0],
		notBefore: map[string]time.Time{},
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

// Deprecation is the controller's announcement that this client's
// capability version is to be removed: since when it is deprecated
// (RFC 9745's Deprecation header) and the date from which the controller
// may stop serving it (RFC 8594's Sunset). Either time is zero when the
// controller did not send it or sent it in a form this client cannot read.
type Deprecation struct {
	Since  time.Time
	Sunset time.Time
}

// Deprecation returns what the controller's last answer announced of this
// client's capability version; ok is false when it announced nothing.
func (c *Client) Deprecation() (d Deprecation, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deprecation, c.deprecated
}

// noteDeprecation records the Deprecation and Sunset headers of an answer
// (a refusal's too: they are about the client, not the request). An
// answer without them clears them: the controller answering is the one
// that counts, and a newer one may have withdrawn the removal.
func (c *Client) noteDeprecation(h http.Header) {
	var d Deprecation
	if v, ok := strings.CutPrefix(h.Get(api.HeaderDeprecation), "@"); ok {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 && secs < 1<<40 {
			d.Since = time.Unix(secs, 0).UTC()
		}
	}
	if v := h.Get(api.HeaderSunset); v != "" {
		if t, err := http.ParseTime(v); err == nil {
			d.Sunset = t.UTC()
		}
	}
	peer, err := api.ParseCapabilityVersion(h.Get(api.HeaderCapabilityVersion))
	if err != nil {
		peer = 0
	}
	c.mu.Lock()
	c.deprecation, c.deprecated = d, h.Get(api.HeaderDeprecation) != "" || h.Get(api.HeaderSunset) != ""
	if peer > 0 {
		c.peer = peer
	}
	c.mu.Unlock()
}

// ControllerVersion returns the capability version the controller's last
// answer carried, or 0 before any. It comes over the TLS connection to a
// controller the client verified with its CA: a third party cannot lower
// it.
func (c *Client) ControllerVersion() api.CapabilityVersion {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peer
}

// Current returns the URL of the replica requests go to now.
func (c *Client) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Replicas returns the replicas in the order the client tries them: those
// the controller announced, then those it was made with.
func (c *Client) Replicas() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicasLocked()
}

func (c *Client) replicasLocked() []string {
	out := slices.Clone(c.announced)
	for _, u := range c.started {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// Announced returns the replicas the controller last announced, as the
// client keeps them (canonical, the unusable ones left out), or nil.
func (c *Client) Announced() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.announced)
}

// Announce sets the replicas the controller announces (Netmap does it
// with every answer that names them; a node also sets those it saved).
// Entries that are not controller URLs, and repeats, are left out and
// logged; a list with no usable entry changes nothing. The current
// replica stays current while it answers, announced or not. Announce
// reports whether the announced replicas changed.
func (c *Client) Announce(urls []string) bool {
	if len(urls) == 0 {
		return false
	}
	valid := make([]string, 0, len(urls))
	var bad []string
	for _, raw := range urls {
		u, err := CanonicalURL(strings.TrimSpace(raw))
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case !slices.Contains(valid, u):
			valid = append(valid, u)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(bad) > 0 && !slices.Equal(urls, c.heard) {
		c.log.Warn("the controller announced replica URLs that are not usable; left out", "errs", bad)
	}
	c.heard = slices.Clone(urls)
	if len(valid) == 0 || slices.Equal(valid, c.announced) {
		return false
	}
	c.announced = valid
	return true
}

// request is one API call.
type request struct {
	method, path string
	timeout      time.Duration
	in, out      any
	retry        retry
	// to, if set, is the only replica it may go to.
	to string
}

// retry says when a request that a replica failed goes to the next one.
type retry int

const (
	// retryUnsent: only if no replica can have received it (the failure
	// came before its headers were written).
	retryUnsent retry = iota
	// retryAlways: it is idempotent; sending it twice does what sending
	// it once does.
	retryAlways
	// retryNever: the caller sends it again itself (a long-poll).
	retryNever
)

// do sends a request, to the next replica as the Client's comment says
// when one fails, and returns the replica that answered. A refusal comes
// back as an *api.Error with Status set; a network failure as the
// transport's error.
func (c *Client) do(ctx context.Context, r request) (string, error) {
	var body []byte
	if r.in != nil {
		b, err := json.Marshal(r.in)
		if err != nil {
			return "", err
		}
		body = b
	}
	route, _, _ := strings.Cut(r.path, "?")
	if wait := c.RetryIn(route); wait > 0 {
		return "", &RateLimitedError{Err: &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited,
			Message: fmt.Sprintf("not sent: the controller asked this node to wait %v more before the next %s %s", wait.Round(time.Millisecond), r.method, route)},
			until: time.Now().Add(wait), NotSent: true}
	}
	var tried []string
	for {
		base := r.to
		if base == "" {
			base = c.Current()
		}
		tried = append(tried, base)
		sent, reason, err := c.send(ctx, base, route, r, body)
		if reason == "" {
			return base, err
		}
		next := c.failed(base, reason, err)
		if r.to != "" || r.retry == retryNever || (sent && r.retry != retryAlways) || slices.Contains(tried, next) || ctx.Err() != nil {
			return base, err
		}
	}
}

// send sends r to the replica at base. It reports whether the request's
// headers were written (a replica may have received it), and, when the
// replica failed it, why (one of Reasons; "" for an answer, refusals
// included).
func (c *Client) send(ctx context.Context, base, route string, r request, body []byte) (sent bool, reason string, err error) {
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var wrote atomic.Bool
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, r.method, base+r.path, rd)
	if err != nil {
		return false, "", err
	}
	req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	if body != nil {
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
		return wrote.Load(), failure(ctx, err), err
	}
	defer resp.Body.Close()
	c.noteDeprecation(resp.Header)
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		stable := json.Unmarshal(raw, &eb) == nil && eb.Error != nil && eb.Error.Code != ""
		if !stable {
			eb.Error = &api.Error{Code: "http", Message: fmt.Sprintf("%s %s: %s", r.method, r.path, resp.Status)}
		}
		eb.Error.Status = resp.StatusCode
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			until := time.Now().Add(retryAfter(resp.Header.Get("Retry-After")))
			c.mu.Lock()
			c.notBefore[route] = until
			c.mu.Unlock()
			return true, "", &RateLimitedError{Err: eb.Error, until: until}
		case resp.StatusCode == http.StatusServiceUnavailable:
			return true, ReasonUnavailable, eb.Error
		case resp.StatusCode >= 500 && !stable:
			return true, ReasonServerError, eb.Error
		}
		return true, "", eb.Error
	}
	if r.out == nil {
		return true, "", nil
	}
	if err := json.NewDecoder(resp.Body).Decode(r.out); err != nil {
		err = fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
		return true, failure(ctx, err), err
	}
	return true, "", nil
}

// failure says why a request failed without an answer, or "" if the
// caller gave up on it (ctx is done): that says nothing of the replica.
func failure(ctx context.Context, err error) string {
	var (
		verr  *tls.CertificateVerificationError
		alert tls.AlertError
		rec   tls.RecordHeaderError
		ua    x509.UnknownAuthorityError
		he    x509.HostnameError
		ci    x509.CertificateInvalidError
	)
	switch {
	case ctx.Err() != nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.As(err, &verr), errors.As(err, &alert), errors.As(err, &rec), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return ReasonTLS
	}
	return ReasonNetwork
}

// failed records that the replica at base failed a request for reason:
// if it is still the current one, the next replica becomes current. It
// returns the current replica.
func (c *Client) failed(base, reason string, err error) string {
	c.mu.Lock()
	if c.cur != base {
		// Another request moved on already.
		cur := c.cur
		c.mu.Unlock()
		return cur
	}
	list := c.replicasLocked()
	next := list[(slices.Index(list, base)+1)%len(list)] // Index is -1 for a replica no longer listed: the first
	if next == base {
		c.mu.Unlock()
		return base
	}
	c.cur = next
	c.mu.Unlock()
	c.log.Info("controller replica switch", "from", base, "to", next, "reason", reason, "err", err)
	if c.onSwitch != nil {
		c.onSwitch(base, next, reason)
	}
	return next
}

const requestTimeout = 30 * time.Second

// Challenge asks for a registration challenge (capability version 3).
// Register sends the registration that carries it to the replica that
// issued it.
func (c *Client) Challenge(ctx context.Context) (*api.RegisterChallenge, error) {
	var out api.RegisterChallenge
	from, err := c.do(ctx, request{method: http.MethodGet, path: api.PathRegisterChallenge, timeout: requestTimeout, out: &out, retry: retryAlways})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.challenge.value, c.challenge.from = out.Challenge, from
	c.mu.Unlock()
	return &out, nil
}

// Register registers the node. A registration with the last challenge
// goes to the replica that issued it, and only there: another replica
// would refuse the challenge. It is never sent to a second replica: if the
// first one failed, it may have registered the node; the caller asks for
// a new challenge and registers again, proving its machine key, which gets
// it the same node back.
func (c *Client) Register(ctx context.Context, req *api.RegisterRequest) (*api.RegisterResponse, error) {
	var out api.RegisterResponse
	c.mu.Lock()
	to := ""
	if req.Challenge != "" && req.Challenge == c.challenge.value {
		to = c.challenge.from
	}
	c.mu.Unlock()
	if _, err := c.do(ctx, request{method: http.MethodPost, path: api.PathRegister, timeout: requestTimeout, in: req, out: &out, to: to}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Netmap polls for the netmap after revision since, waiting up to wait. A
// poll that does not wait is sent to the next replica when one fails; a
// long-poll is not: the caller polls again, with the revision it has, and
// a replica that holds that revision answers with what changed since. The
// replicas an answer names (MapResponse.Controllers) replace those the
// controller announced before (see Announce).
func (c *Client) Netmap(ctx context.Context, since uint64, wait time.Duration) (*api.MapResponse, error) {
	var out api.MapResponse
	path := fmt.Sprintf("%s?since=%d&wait=%d", api.PathNetmap, since, int(wait/time.Second))
	r := request{method: http.MethodGet, path: path, timeout: wait + requestTimeout, out: &out, retry: retryAlways}
	if wait > 0 {
		r.retry = retryNever
	}
	if _, err := c.do(ctx, r); err != nil {
		return nil, err
	}
	if c.Announce(out.Controllers) {
		c.log.Info("the controller announced its replicas", "replicas", c.Replicas(), "current", c.Current())
	}
	return &out, nil
}

// ReportEndpoints reports the node's local endpoints and listen port. The
// report sets them, so it is sent to the next replica when one fails.
func (c *Client) ReportEndpoints(ctx context.Context, req *api.EndpointsRequest) (*api.Node, error) {
	var out api.Node
	if _, err := c.do(ctx, request{method: http.MethodPost, path: api.PathEndpoints, timeout: requestTimeout, in: req, out: &out, retry: retryAlways}); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateKey replaces the node key at the controller. It goes to a second
// replica only when the first failed before it could receive it: one that
// received it may have stored the key. The caller keeps the key pending
// and sends it again later (the controller answers at once for a key it
// holds), on the replica the client moved to.
func (c *Client) RotateKey(ctx context.Context, k api.NodePublic, backendKeys map[string]string) (*api.Node, error) {
	var out api.Node
	if _, err := c.do(ctx, request{method: http.MethodPost, path: api.PathRotateKey, timeout: requestTimeout,
		in: api.RotateKeyRequest{NodeKey: k, BackendKeys: backendKeys}, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Logout removes the node from the controller. Like RotateKey, it goes to
// a second replica only when the first could not have received it.
func (c *Client) Logout(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: api.PathLogout, timeout: requestTimeout})
	return err
}

// RetryIn returns how long the controller asked the node to wait before
// it sends a request to path again (0 if it may send it now).
func (c *Client) RetryIn(path string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.notBefore[path]
	if !ok {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		delete(c.notBefore, path)
		return 0
	}
	return d
}

// MinRetryAfter is the wait a 429 without a usable Retry-After stands for.
const MinRetryAfter = time.Second

// retryAfter parses a Retry-After value: whole seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return max(time.Duration(secs)*time.Second, MinRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), MinRetryAfter)
	}
	return MinRetryAfter
}

// RateLimitedError is the controller's 429 (rate_limited), or the
// client's own refusal to send a request that the controller asked it to
// hold back (NotSent). It unwraps to the *api.Error.
type RateLimitedError struct {
	Err     *api.Error
	NotSent bool
	until   time.Time
}

func (e *RateLimitedError) Error() string { return e.Err.Error() }
func (e *RateLimitedError) Unwrap() error { return e.Err }

// RetryAfter reports how long from now the controller asked the node to
// wait before it sends the refused request again, and whether err is such
// a refusal.
func RetryAfter(err error) (time.Duration, bool) {
	var e *RateLimitedError
	if !errors.As(err, &e) {
		return 0, false
	}
	return max(time.Until(e.until), 0), true
}

// IsStatus reports whether err is a refusal with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status == status
}
