package controller

// Parked long-polls.
//
// A netmap long-poll over HTTP/1.1 that has nothing to return yet does
// not keep a goroutine, net/http's connection buffers or its response
// writer while it waits: its handler takes the connection from net/http
// (http.Hijacker), parks it here with a timer for its wait, and returns.
// When the netmap changes, the wait ends or the controller shuts down, a
// bounded pool of workers computes the answer, writes the HTTP/1.1
// response by hand (the headers and JSON body the handler would have
// written) and gives the connection back to net/http, to a server of
// ours (a resumer) that serves its next keep-alive request with the same
// handler and limits as the server it came from. A parked connection
// costs its TLS state and a few hundred bytes here.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
)

// parkWriteTimeout bounds writing a parked poll's answer. The connection
// had nothing in flight while parked, so an answer that fits the socket's
// send buffer is written at once; a client that does not take it within
// this is gone.
const parkWriteTimeout = 10 * time.Second

// parkInlineWrite is the largest answer a worker writes itself; a larger
// one (a full netmap of a large mesh) is written by a goroutine of its
// own, so that a client slow to read it holds up no other answer.
const parkInlineWrite = 16 << 10

type parkReason uint8

const (
	parkChanged   parkReason = iota // the netmap may have changed
	parkTimeout                     // the poll's wait ended
	parkShutdown                    // the controller shuts down
	parkPipelined                   // the client sent another request behind the poll
)

// parkedPoll is one long-poll waiting without a goroutine.
type parkedPoll struct {
	conn  net.Conn
	home  *resumer // where the connection goes back to
	id    api.NodeID
	cred  store.Hash
	since uint64
	v     api.CapabilityVersion
	wake  <-chan struct{}
	timer *time.Timer
	start time.Time // the request's arrival, for its duration

	// Guarded by parker.mu.
	parked  bool // in parker.polls
	expired bool // the wait ended while a worker held the poll
}

type parkJob struct {
	p   *parkedPoll
	why parkReason
}

// parker holds a Server's parked long-polls.
type parker struct {
	s          *Server
	maxWorkers int

	mu       sync.Mutex
	polls    map[*parkedPoll]struct{}
	queue    []parkJob
	pending  []*parkedPoll // answered, given back once queue is empty
	workers  int
	closed   bool
	open     int           // polls parked and not yet answered
	drained  chan struct{} // closed when open reaches 0 after closed
	resumers map[*http.Server]*resumer
	stopping sync.WaitGroup // resumers shutting down
}

func newParker(s *Server) *parker {
	return &parker{
		s:          s,
		maxWorkers: max(4, 2*runtime.GOMAXPROCS(0)),
		polls:      make(map[*parkedPoll]struct{}),
		resumers:   make(map[*http.Server]*resumer),
	}
}

// parkable reports whether r's connection may be parked: HTTP/1.1 that
// the client keeps alive, served by an http.Server.
func parkable(r *http.Request) (*http.Server, bool) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Close {
		return nil, false
	}
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	return srv, ok && srv != nil
}

// park takes r's connection from net/http and parks the poll until wake
// closes or deadline passes. It returns false, having taken nothing, when
// the connection cannot be parked; the caller then waits as before.
func (p *parker) park(w http.ResponseWriter, r *http.Request, pp *parkedPoll, deadline time.Time) bool {
	srv, ok := parkable(r)
	if !ok {
		return false
	}
	home := p.resumerFor(srv)
	if home == nil {
		return false // shutting down: the caller answers at once
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.hijacked = true
	}
	pp.conn, pp.home = conn, home
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	if brw != nil && brw.Reader.Buffered() > 0 {
		// A request pipelined behind the poll: answer the poll now and
		// close, which refuses the request behind it (the client sends
		// it again on a new connection).
		p.run(parkJob{pp, parkPipelined})
		return true
	}
	// What a parked poll still costs is mostly its TLS state: the
	// session's ciphers, and the input buffers crypto/tls grew for the
	// handshake (about 3.5 KiB, sized by the ClientHello's post-quantum key
	// share) and keeps for the connection's life. Only crypto/tls can
	// release those; this code does not reach into it.
	conn.SetDeadline(time.Time{})
	p.mu.Lock()
	pp.timer = time.AfterFunc(time.Until(deadline), func() { p.expire(pp) })
	p.mu.Unlock()
	p.repark(pp)
	return true
}

// repark puts pp (held by the caller) back among the parked polls, or
// queues its answer when its wait ended or the controller shuts down.
func (p *parker) repark(pp *parkedPoll) {
	p.mu.Lock()
	switch {
	case p.closed:
		p.enqueueLocked(parkJob{pp, parkShutdown})
	case pp.expired:
		p.enqueueLocked(parkJob{pp, parkTimeout})
	default:
		pp.parked = true
		p.polls[pp] = struct{}{}
	}
	p.mu.Unlock()
	select {
	case <-pp.wake:
		p.claim(pp, parkChanged)
	default:
	}
}

// claim queues pp's answer for why if it is parked.
func (p *parker) claim(pp *parkedPoll, why parkReason) {
	p.mu.Lock()
	if pp.parked {
		pp.parked = false
		delete(p.polls, pp)
		p.enqueueLocked(parkJob{pp, why})
	}
	p.mu.Unlock()
}

// expire is pp's timer: its wait ended.
func (p *parker) expire(pp *parkedPoll) {
	p.mu.Lock()
	if pp.parked {
		pp.parked = false
		delete(p.polls, pp)
		p.enqueueLocked(parkJob{pp, parkTimeout})
	} else {
		pp.expired = true
	}
	p.mu.Unlock()
}

// changed is called by the state after each change it applies: every poll
// whose netmap may have changed is looked at again.
func (p *parker) changed() {
	p.mu.Lock()
	for pp := range p.polls {
		select {
		case <-pp.wake:
			pp.parked = false
			delete(p.polls, pp)
			p.enqueueLocked(parkJob{pp, parkChanged})
		default:
		}
	}
	p.mu.Unlock()
}

func (p *parker) enqueueLocked(j parkJob) {
	p.queue = append(p.queue, j)
	if p.workers < p.maxWorkers {
		p.workers++
		go p.work()
	}
}

func (p *parker) work() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			if pending := p.pending; len(pending) > 0 {
				p.pending = nil
				p.mu.Unlock()
				p.giveBack(pending)
				continue
			}
			p.workers--
			p.queue = nil // let a long queue's array go
			p.mu.Unlock()
			return
		}
		j := p.queue[0]
		p.queue[0] = parkJob{}
		p.queue = p.queue[1:]
		p.mu.Unlock()
		p.run(j)
	}
}

// run answers j's poll, or parks it again when a change left its netmap
// unchanged.
func (p *parker) run(j parkJob) {
	pp, s := j.p, p.s
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("parked long-poll panic", "node", pp.id, "panic", fmt.Sprint(v))
			pp.conn.Close()
			p.finish(pp)
		}
	}()
	resp, wake, changedAt, err := s.st.netmap(pp.id, pp.cred, pp.since, pp.v)
	if err != nil {
		e := &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error; the controller log has details"}
		if errors.Is(err, errNodeGone) {
			e = unauthorized("node %s was removed, logged out or re-registered; register again", pp.id)
		} else {
			s.log.Error("request failed", "route", api.PathNetmap, "err", err)
		}
		p.answer(pp, j.why, e.Status, api.ErrorBody{Error: e}, nil, time.Time{})
		return
	}
	if pp.v < pqSince {
		resp = withoutPQ(resp)
	}
	news := resp.Full || resp.Self != nil || len(resp.PeersChanged) > 0 || len(resp.PeersRemoved) > 0
	if !news && j.why == parkChanged {
		pp.since, pp.wake = resp.Revision, wake
		p.repark(pp)
		return
	}
	if !news || j.why != parkChanged {
		changedAt = time.Time{} // not pushed: as the handler's timer and shutdown answers
	}
	p.answer(pp, j.why, http.StatusOK, nil, resp, changedAt)
}

// answer writes pp's response by hand, then gives the connection back to
// net/http, or closes it when the controller shuts down.
func (p *parker) answer(pp *parkedPoll, why parkReason, status int, errBody any, resp *api.MapResponse, changedAt time.Time) {
	s := p.s
	if pp.timer != nil {
		pp.timer.Stop()
	}
	var (
		body []byte
		err  error
	)
	if resp != nil {
		if resp.Full {
			s.metrics.fullNetmaps.Inc()
		} else {
			s.metrics.deltaNetmaps.Inc()
		}
		resp.Controllers = s.Replicas()
		body, err = json.Marshal(resp)
	} else {
		body, err = json.Marshal(errBody)
	}
	if err != nil {
		s.log.Error("request failed", "route", api.PathNetmap, "err", err)
		pp.conn.Close()
		p.finish(pp)
		return
	}
	body = append(body, '\n')
	closing := why == parkShutdown || why == parkPipelined
	h := http.Header{}
	h.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	h.Set(api.HeaderMinCapabilityVersion, api.MinSupportedCapabilityVersion.String())
	h.Set("Cache-Control", "no-store")
	if dep, sunset, ok := api.DeprecationHeaders(pp.v, s.now()); ok {
		h.Set(api.HeaderDeprecation, dep)
		h.Set(api.HeaderSunset, sunset)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if closing {
		h.Set("Connection", "close")
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 512)
	fmt.Fprintf(&buf, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	h.Write(&buf)
	buf.WriteString("\r\n")
	buf.Write(body)
	write := func() {
		pp.conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
		_, werr := pp.conn.Write(buf.Bytes())
		if werr == nil && !changedAt.IsZero() {
			s.metrics.pushLatency.Observe(s.now().Sub(changedAt).Seconds())
		}
		s.metrics.requests.WithLabelValues(api.PathNetmap, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(api.PathNetmap).Observe(time.Since(pp.start).Seconds())
		p.s.pollClosed(pp.id)
		if werr != nil {
			pp.conn.Close()
			p.done()
			return
		}
		if closing {
			go func() {
				lingerClose(pp.conn)
				p.done()
			}()
			return
		}
		p.handBack(pp)
	}
	if buf.Len() > parkInlineWrite {
		go write()
		return
	}
	write()
}

// handBack gives pp's connection back to net/http for its next request:
// at once when no other answer is waiting to be written, else once none is
// (work). A client sends its next poll as soon as it has its answer;
// serving those first would hold up the answers still queued, and a
// change would reach the last of many nodes only after the other nodes'
// next polls were served.
func (p *parker) handBack(pp *parkedPoll) {
	pp.conn.SetDeadline(time.Time{})
	p.mu.Lock()
	if len(p.queue) > 0 {
		p.pending = append(p.pending, pp)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pp.home.give(pp.conn)
	p.done()
}

// giveBack gives back the connections handBack held.
func (p *parker) giveBack(pending []*parkedPoll) {
	for _, pp := range pending {
		pp.home.give(pp.conn)
		p.done()
	}
}

// rstAvoidanceDelay is how long a connection answered with "Connection:
// close" stays open after its answer, as net/http's own do: closed at once
// with the client's next bytes unread, the kernel would reset it, and a
// reset may take the answer the client has not read yet with it.
const rstAvoidanceDelay = 500 * time.Millisecond

// lingerClose ends c's writing side (TLS close_notify), reads until the
// client closes its side or rstAvoidanceDelay passes, and closes c.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(rstAvoidanceDelay))
	io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	c.Close()
}

// finish counts pp answered and its connection closed.
func (p *parker) finish(pp *parkedPoll) {
	p.s.pollClosed(pp.id)
	p.done()
}

// done counts a parked poll's connection given back or closed.
func (p *parker) done() {
	p.mu.Lock()
	if p.open--; p.open == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	p.mu.Unlock()
}

// shutdown answers every parked poll (and closes its connection), and
// starts shutting down the resumers.
func (p *parker) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for pp := range p.polls {
		pp.parked = false
		delete(p.polls, pp)
		p.enqueueLocked(parkJob{pp, parkShutdown})
	}
	seen := make(map[*resumer]bool)
	for _, r := range p.resumers {
		if seen[r] {
			continue
		}
		seen[r] = true
		p.stopping.Add(1)
		go func() {
			defer p.stopping.Done()
			r.shutdown(shutdownGrace)
		}()
	}
}

// close waits, up to grace, for the parked polls' answers and the
// resumers' shutdown.
func (p *parker) close(grace time.Duration) {
	p.shutdown()
	t := time.NewTimer(grace)
	defer t.Stop()
	p.mu.Lock()
	var drained chan struct{}
	if p.open > 0 {
		if p.drained == nil {
			p.drained = make(chan struct{})
		}
		drained = p.drained
	}
	p.mu.Unlock()
	if drained != nil {
		select {
		case <-drained:
		case <-t.C:
			p.s.log.Warn("parked long-polls still being answered at shutdown")
		}
	}
	p.stopping.Wait() // bounded by each resumer's grace
}

// resumerFor returns the resumer of connections parked from srv (srv's
// own when srv is a resumer's server), or nil once shut down.
func (p *parker) resumerFor(srv *http.Server) *resumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if r := p.resumers[srv]; r != nil {
		return r
	}
	r := newResumer(srv)
	p.resumers[srv], p.resumers[r.srv] = r, r
	return r
}

// resumer serves the connections given back after a parked answer: an
// http.Server with the limits and handler of the one they came from,
// whose listener accepts only those.
type resumer struct {
	srv  *http.Server
	ln   *handbackListener
	done chan struct{} // Serve returned
}

func newResumer(base *http.Server) *resumer {
	r := &resumer{
		srv: &http.Server{
			Handler:           base.Handler,
			ReadHeaderTimeout: base.ReadHeaderTimeout,
			ReadTimeout:       base.ReadTimeout,
			WriteTimeout:      base.WriteTimeout,
			IdleTimeout:       base.IdleTimeout,
			MaxHeaderBytes:    base.MaxHeaderBytes,
			ConnState:         base.ConnState,
			ConnContext:       base.ConnContext,
			ErrorLog:          base.ErrorLog,
		},
		ln:   &handbackListener{conns: make(chan net.Conn), closed: make(chan struct{})},
		done: make(chan struct{}),
	}
	go func() {
		defer close(r.done)
		r.srv.Serve(r.ln)
	}()
	return r
}

// give hands c to the resumer's server, or closes it once that is shut
// down.
func (r *resumer) give(c net.Conn) { r.ln.give(c) }

func (r *resumer) shutdown(grace time.Duration) {
	r.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		r.srv.Close()
	}
	<-r.done
}

// handbackListener "accepts" the connections given to it.
type handbackListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *handbackListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handbackListener) give(c net.Conn) {
	select {
	case <-l.closed:
		c.Close()
		return
	default:
	}
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *handbackListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handbackListener) Addr() net.Addr { return handbackAddr{} }

type handbackAddr struct{}

func (handbackAddr) Network() string { return "handback" }
func (handbackAddr) String() string  { return "handback" }
