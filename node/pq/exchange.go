package pq

import (
	"context"
	"net"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/key"
)

// Timeout bounds one exchange on its connection.
const Timeout = 10 * time.Second

// Result is one completed exchange.
type Result struct {
	PSK   PSK
	Epoch uint64
	// Sent and Received count the exchange's messages' bytes (TCP and IP
	// headers not included).
	Sent, Received int
	Took           time.Duration
}

// Initiate runs the initiator's side of an exchange of epoch with peer on
// conn (a connection to the peer's Port, over the tunnel), within Timeout.
func Initiate(ctx context.Context, conn net.Conn, self key.NodePrivate, peer api.NodePublic, epoch uint64) (*Result, error) {
	start := time.Now()
	stop := deadline(ctx, conn)
	defer stop()
	i, init, err := NewInitiator(self, peer, epoch)
	if err != nil {
		return nil, err
	}
	res := &Result{Epoch: epoch}
	if _, err := conn.Write(init); err != nil {
		return nil, err
	}
	res.Sent += len(init)
	resp, err := ReadMessage(conn)
	if err != nil {
		return nil, err
	}
	res.Received += len(resp)
	psk, confirm, err := i.Finish(resp)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(confirm); err != nil {
		return nil, err
	}
	res.Sent += len(confirm)
	res.PSK, res.Took = psk, time.Since(start)
	return res, nil
}

// Serve runs the responder's side of one exchange on conn, which came
// from the mesh address of the node whose key is from. refuse, when it
// returns a reason, makes Serve refuse the exchange with it (this node
// runs no PQ with that peer).
func Serve(ctx context.Context, conn net.Conn, self key.NodePrivate, from api.NodePublic, refuse func() string) (*Result, error) {
	start := time.Now()
	stop := deadline(ctx, conn)
	defer stop()
	init, err := ReadMessage(conn)
	if err != nil {
		return nil, err
	}
	res := &Result{Received: len(init)}
	if why := refuse(); why != "" {
		conn.Write(Refusal(why))
		return nil, &RefusedError{Reason: why}
	}
	r, resp, err := Respond(self, from, init)
	if err != nil {
		conn.Write(Refusal(err.Error()))
		return nil, err
	}
	if _, err := conn.Write(resp); err != nil {
		return nil, err
	}
	res.Sent += len(resp)
	confirm, err := ReadMessage(conn)
	if err != nil {
		return nil, err
	}
	res.Received += len(confirm)
	psk, err := r.Finish(confirm)
	if err != nil {
		return nil, err
	}
	res.PSK, res.Epoch, res.Took = psk, r.Epoch(), time.Since(start)
	return res, nil
}

// deadline bounds conn by Timeout and by ctx; stop releases the watch.
func deadline(ctx context.Context, conn net.Conn) (stop func()) {
	conn.SetDeadline(time.Now().Add(Timeout))
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			conn.SetDeadline(time.Unix(1, 0)) // in the past: unblock reads and writes
		case <-done:
		}
	}()
	return func() { close(done) }
}
