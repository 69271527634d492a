package controllertest

import (
	"io"
	"net"
	"sync"
	"time"
)

// A relay forwards every TCP connection it accepts to the controller's API
// port, one upstream connection per client connection, bytes unchanged
// (TLS passes through it). It stands in front of an in-process controller
// so that Kill can cut every client connection at once, which Run, owning
// its listeners, cannot be made to do.
type relay struct {
	ln     net.Listener
	target string // the controller's API address

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both ends of every open pipe
	closed bool
	wg     sync.WaitGroup // serve and every pipe
}

// listenRelay listens on listen and forwards to target until close.
func listenRelay(listen, target string) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

// track records c as open, or closes it and returns false if the relay is
// closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
}

// pipe copies both ways between front (a client) and a new connection to
// the controller. An end of file is passed on as a half-close, so that a
// response written just before the controller closes is delivered whole.
func (r *relay) pipe(front net.Conn) {
	defer r.wg.Done()
	if !r.track(front) {
		return
	}
	back, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		// The controller is gone: the client sees its connection closed.
		r.untrack(front)
		return
	}
	if !r.track(back) {
		r.untrack(front)
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(back, front)
		back.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(front, back)
	front.(*net.TCPConn).CloseWrite()
	<-done
	r.untrack(front, back)
}

// closeListener stops accepting: a client's new connections are refused
// from then on, as by a controller that has closed its listener.
func (r *relay) closeListener() { r.ln.Close() }

// close closes the listener and every open connection, both the clients'
// and the controller's ends, and waits for the relay's goroutines. Closing
// a socket is what the kernel does to a dead process's: a client sees its
// connection end (FIN, or RST if it had unread data) mid-request or
// mid-long-poll, with no HTTP response.
func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
