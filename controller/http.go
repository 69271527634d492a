package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// unreadBodyGrace is how long the rest of a refused request's body is
// read (and dropped) before its connection is closed.
const unreadBodyGrace = time.Second

// handlerFunc answers a request. It writes a success response itself and
// returns an error otherwise: an *api.Error is written as is; anything else
// is logged and answered 500.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// router matches exact paths and paths ending in one "{id}" segment, and
// answers unknown routes and methods with JSON errors (which
// http.ServeMux does not).
type router struct {
	s      *Server
	routes map[string]map[string]route // pattern -> method -> route
	// versioned routes require HeaderCapabilityVersion.
	versioned bool
}

type route struct {
	h handlerFunc
	// bodyLimit bounds the request body; on the node API a
	// Content-Length over it is refused 413 before any of the body is read.
	bodyLimit int64
}

func newRouter(s *Server, versioned bool) *router {
	return &router{s: s, routes: make(map[string]map[string]route), versioned: versioned}
}

// handle routes method and pattern to h, with bodies of at most
// api.MaxBodyBytes.
func (rt *router) handle(method, pattern string, h handlerFunc) {
	rt.handleLimit(method, pattern, api.MaxBodyBytes, h)
}

func (rt *router) handleLimit(method, pattern string, bodyLimit int64, h handlerFunc) {
	if rt.routes[pattern] == nil {
		rt.routes[pattern] = make(map[string]route)
	}
	rt.routes[pattern][method] = route{h: h, bodyLimit: bodyLimit}
}

// match returns the pattern for path and the value of its {id} segment.
func (rt *router) match(path string) (pattern, id string) {
	if _, ok := rt.routes[path]; ok {
		return path, ""
	}
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || i == len(path)-1 {
		return "", ""
	}
	p := path[:i] + "/{id}"
	if _, ok := rt.routes[p]; ok {
		return p, path[i+1:]
	}
	return "", ""
}

type idKey struct{}

type versionKey struct{}

// clientVersion returns the capability version the request carried.
func clientVersion(r *http.Request) api.CapabilityVersion {
	v, _ := r.Context().Value(versionKey{}).(api.CapabilityVersion)
	return v
}

// pathID returns the {id} segment of the request's route.
func pathID(r *http.Request) string {
	id, _ := r.Context().Value(idKey{}).(string)
	return id
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	pattern, id := rt.match(r.URL.Path)
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			rt.s.log.Error("handler panic", "route", route, "panic", fmt.Sprint(p))
			if sw.code == 0 {
				writeError(sw, &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error"})
			}
		}
		if sw.hijacked {
			return // a parked long-poll: counted when it is answered (park.go)
		}
		rt.s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status())).Inc()
		rt.s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}()
	h := sw.Header()
	h.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	h.Set(api.HeaderMinCapabilityVersion, api.MinSupportedCapabilityVersion.String())
	h.Set("Cache-Control", "no-store")

	// On the node API, a refusal of a request whose body was not read to
	// its end closes an HTTP/1 connection soon after the answer, rather
	// than wait for the rest of a body that will not be used (and that may
	// never come). An HTTP/2 stream ends on its own; its connection
	// carries other streams. (The admin socket serves only its owner.)
	body := &eofBody{ReadCloser: r.Body}
	r.Body = body
	closeUnread := func() {
		if rt.versioned && r.ProtoMajor == 1 && r.ContentLength != 0 && !body.eof {
			h.Set("Connection", "close")
			http.NewResponseController(sw).SetReadDeadline(time.Now().Add(unreadBodyGrace))
		}
	}
	refuse := func(e *api.Error) {
		closeUnread()
		writeError(sw, e)
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.ContentLength != 0 {
		refuse(badRequest("a %s request has no body", r.Method))
		return
	}
	if pattern == "" {
		refuse(&api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound,
			Message: fmt.Sprintf("no route %s", truncate(r.URL.Path, 100))})
		return
	}
	rte, ok := rt.routes[pattern][r.Method]
	if !ok {
		methods := make([]string, 0, 2)
		for m := range rt.routes[pattern] {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		h.Set("Allow", strings.Join(methods, ", "))
		refuse(&api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethodNotAllowed,
			Message: fmt.Sprintf("%s does not accept %s; use %s", pattern, truncate(r.Method, 20), strings.Join(methods, " or "))})
		return
	}
	if rt.versioned && r.ContentLength > rte.bodyLimit {
		refuse(tooLarge(rte.bodyLimit))
		return
	}
	if rt.versioned && pattern != api.PathHealthz {
		v, err := api.ParseCapabilityVersion(r.Header.Get(api.HeaderCapabilityVersion))
		if err != nil {
			refuse(&api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest,
				Message: err.Error() + fmt.Sprintf("; send \"%s: %d\"", api.HeaderCapabilityVersion, api.CurrentCapabilityVersion)})
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), versionKey{}, v))
		rt.s.metrics.capability.WithLabelValues(capabilityLabel(v)).Inc()
		if dep, sunset, ok := api.DeprecationHeaders(v, rt.s.now()); ok {
			h.Set(api.HeaderDeprecation, dep)
			h.Set(api.HeaderSunset, sunset)
		}
		if v < api.MinSupportedCapabilityVersion {
			// No Upgrade header: HTTP/2 forbids it, and the
			// Rustynet-Min-Capability-Version header says the same.
			refuse(&api.Error{Status: http.StatusUpgradeRequired, Code: api.CodeUpgradeRequired, Message: api.UpgradeMessage(v)})
			return
		}
	}
	if id != "" {
		r = r.WithContext(context.WithValue(r.Context(), idKey{}, id))
	}
	if err := rte.h(sw, r); err != nil {
		var apiErr *api.Error
		var fu *forwardedUnavailable
		switch {
		case errors.As(err, &fu):
			// The writer replica's 503, or its lost answer.
			apiErr = fu.e
			if fu.retryAfter != "" {
				sw.Header().Set("Retry-After", fu.retryAfter)
			}
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			// The client went away; nobody reads the answer.
			apiErr = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "the request was canceled"}
		case !errors.As(err, &apiErr):
			rt.s.log.Error("request failed", "route", route, "err", err)
			apiErr = &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error; the controller log has details"}
			switch {
			case errors.Is(err, ErrClosed):
				apiErr = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "controller is shutting down; retry"}
			case errors.Is(err, store.ErrUnavailable):
				apiErr = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
					Message: "the controller's store (etcd) cannot be reached or has no quorum; nothing was changed; retry"}
				sw.Header().Set("Retry-After", "2")
			case errors.Is(err, store.ErrUnknownOutcome):
				apiErr = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
					Message: "the controller lost contact with its store (etcd) while committing and cannot tell whether the change took effect; retry (a retry is safe)"}
				sw.Header().Set("Retry-After", "2")
			case errors.Is(err, store.ErrNoSpace):
				apiErr = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
					Message: "the controller's store is out of space; nothing was changed; an operator must free space"}
				sw.Header().Set("Retry-After", "30")
			}
		}
		if sw.code == 0 {
			setRetryAfter(sw, err)
			refuse(apiErr)
		}
	}
}

// eofBody records whether a request body was read to its end.
type eofBody struct {
	io.ReadCloser
	eof bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

type statusWriter struct {
	http.ResponseWriter
	code int
	// hijacked: the handler parked the connection (park.go); the
	// response is written, and counted, when the poll is answered.
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

func writeError(w http.ResponseWriter, e *api.Error) {
	writeJSON(w, e.Status, api.ErrorBody{Error: e})
}

func badRequest(format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// validator is a request type that checks itself after decoding.
type validator interface{ Validate() error }

// decode reads one JSON object of type T from body (at most limit bytes,
// api.MaxBodyBytes unless the route has its own), refusing unknown fields,
// trailing data and values that fail T's Validate, each with a message that
// says why.
func decode[T any, PT interface {
	*T
	validator
}](body io.Reader, limit int64) (*T, error) {
	lr := &limitedReader{r: body, n: limit, limit: limit}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	v := PT(new(T))
	if err := dec.Decode(v); err != nil {
		return nil, decodeError(err, lr)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if lr.exceeded {
			return nil, tooLarge(lr.limit)
		}
		return nil, badRequest("unexpected data after the JSON object")
	}
	if err := v.Validate(); err != nil {
		return nil, badRequest("%s", err)
	}
	return (*T)(v), nil
}

func tooLarge(limit int64) *api.Error {
	return &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeBodyTooLarge,
		Message: fmt.Sprintf("request body is larger than %d bytes", limit)}
}

func decodeError(err error, lr *limitedReader) *api.Error {
	if lr.exceeded {
		return tooLarge(lr.limit)
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body ends in the middle of a JSON value")
	case errors.As(err, &syn):
		return badRequest("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field != "" {
			return badRequest("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return badRequest("want a JSON object, got %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// limitedReader is io.LimitedReader that remembers whether the limit was
// passed, so an oversized body is answered 413 rather than as bad JSON.
type limitedReader struct {
	r        io.Reader
	n        int64 // bytes left
	limit    int64 // bytes allowed in all
	exceeded bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Probe for one more byte to tell "exactly at the limit" from "over".
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.exceeded = true
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var errTooLarge = errors.New("request body too large")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// capabilityLabel is a client's capability version as a metric label,
// bounded: the versions up to this build's, and "newer" past it.
func capabilityLabel(v api.CapabilityVersion) string {
	if v > api.CurrentCapabilityVersion {
		return "newer"
	}
	return v.String()
}
