package pq

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/node/key"
)

// pair returns two node keys, the initiator's first.
func pair() (key.NodePrivate, key.NodePrivate) {
	a, b := key.NewNode(), key.NewNode()
	if !Initiates(a.Public(), b.Public()) {
		a, b = b, a
	}
	return a, b
}

// run runs one exchange over a pipe and returns both sides' results.
func run(t *testing.T, i, r key.NodePrivate, epoch uint64, refuse func() string) (*Result, *Result, error, error) {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	type out struct {
		res *Result
		err error
	}
	served := make(chan out, 1)
	go func() {
		res, err := Serve(context.Background(), c2, r, i.Public(), refuse)
		c2.Close()
		served <- out{res, err}
	}()
	ires, ierr := Initiate(context.Background(), c1, i, r.Public(), epoch)
	c1.Close()
	s := <-served
	return ires, s.res, ierr, s.err
}

func noRefusal() string { return "" }

// TestExchange: both sides derive the same non-zero PSK; a new exchange
// derives another.
func TestExchange(t *testing.T) {
	a, b := pair()
	ia, rb, ierr, rerr := run(t, a, b, 7, noRefusal)
	if ierr != nil || rerr != nil {
		t.Fatalf("exchange: initiator %v, responder %v", ierr, rerr)
	}
	if ia.PSK.IsZero() || ia.PSK != rb.PSK {
		t.Fatalf("PSKs differ or are zero: %s vs %s", ia.PSK.Fingerprint(), rb.PSK.Fingerprint())
	}
	if ia.Epoch != 7 || rb.Epoch != 7 {
		t.Errorf("epochs %d, %d; want 7", ia.Epoch, rb.Epoch)
	}
	if want := 2*headerLen + initLen + confirmLen; ia.Sent != want || rb.Received != want {
		t.Errorf("initiator sent %d, responder received %d; want %d", ia.Sent, rb.Received, want)
	}
	if want := headerLen + respLen; ia.Received != want || rb.Sent != want {
		t.Errorf("initiator received %d, responder sent %d; want %d", ia.Received, rb.Sent, want)
	}
	again, _, err, _ := run(t, a, b, 8, noRefusal)
	if err != nil {
		t.Fatal(err)
	}
	if again.PSK == ia.PSK {
		t.Error("a second exchange derived the same PSK")
	}
}

// TestRefusal: a responder that runs no PQ with the initiator says why,
// and the initiator reports it.
func TestRefusal(t *testing.T) {
	a, b := pair()
	_, _, ierr, rerr := run(t, a, b, 1, func() string { return "pq is off on this node" })
	var refused *RefusedError
	if !errors.As(ierr, &refused) || refused.Reason != "pq is off on this node" {
		t.Errorf("initiator: %v, want the refusal with its reason", ierr)
	}
	if !errors.As(rerr, &refused) {
		t.Errorf("responder: %v, want its refusal", rerr)
	}
}

// TestWrongSource: an Init that names an initiator other than the node
// whose mesh address it came from is refused, saying so.
func TestWrongSource(t *testing.T) {
	a, b := pair()
	c := key.NewNode()
	_, init, err := NewInitiator(a, b.Public(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Respond(b, c.Public(), init); err == nil || !strings.Contains(err.Error(), "came from the mesh address of") {
		t.Errorf("Respond from another node's address: %v", err)
	}
	if _, _, err := Respond(c, a.Public(), init); err == nil || !strings.Contains(err.Error(), "not this node") {
		t.Errorf("Respond by a node the init is not for: %v", err)
	}
}

// TestNoMiddle: whoever alters any part of the exchange in flight, or
// answers in the responder's place without its node key, is found out by
// the confirmation tags: no side installs a PSK.
func TestNoMiddle(t *testing.T) {
	a, b := pair()
	flip := func(msg []byte, at int) []byte {
		m := bytes.Clone(msg)
		m[at] ^= 1
		return m
	}
	for _, c := range []struct {
		name             string
		init, resp, conf func([]byte) []byte
		initiatorRefuses bool
		responderRefuses bool
	}{
		{name: "encapsulation key altered", init: func(m []byte) []byte { return flip(m, headerLen+8+64+100) }, initiatorRefuses: true},
		{name: "ciphertext altered", resp: func(m []byte) []byte { return flip(m, headerLen+8+10) }, initiatorRefuses: true},
		{name: "responder's tag altered", resp: func(m []byte) []byte { return flip(m, len(m)-1) }, initiatorRefuses: true},
		{name: "initiator's tag altered", conf: func(m []byte) []byte { return flip(m, len(m)-1) }, responderRefuses: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := func(m []byte) []byte { return m }
			for _, f := range []*func([]byte) []byte{&c.init, &c.resp, &c.conf} {
				if *f == nil {
					*f = id
				}
			}
			i, init, err := NewInitiator(a, b.Public(), 3)
			if err != nil {
				t.Fatal(err)
			}
			r, resp, err := Respond(b, a.Public(), c.init(init))
			if err != nil {
				if c.initiatorRefuses {
					return // the altered key is not even a valid one: refused at once
				}
				t.Fatalf("Respond: %v", err)
			}
			_, conf, err := i.Finish(c.resp(resp))
			if c.initiatorRefuses {
				if err == nil || !strings.Contains(err.Error(), "does not match") {
					t.Errorf("initiator accepted: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Finish(c.conf(conf)); c.responderRefuses && (err == nil || !strings.Contains(err.Error(), "does not match")) {
				t.Errorf("responder accepted: %v", err)
			}
		})
	}

	// An impostor (say, a relay or the controller) answers in the
	// responder's place with its own key: it can run ML-KEM with the
	// initiator, but not the X25519 of the two node keys.
	impostor := key.NewNode()
	i, init, err := NewInitiator(a, b.Public(), 4)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(init)
	pub := impostor.Public()
	copy(forged[headerLen+8+api.KeyLen:], pub[:])
	_, resp, err := Respond(impostor, a.Public(), forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := i.Finish(resp); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("the initiator accepted an impostor's answer: %v", err)
	}
}

// TestPSKRedacted: a PSK never prints; its fingerprint is not the key.
func TestPSKRedacted(t *testing.T) {
	var p PSK
	for i := range p {
		p[i] = byte(i + 1)
	}
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %s", p, p), p.Fingerprint()} {
		if strings.Contains(s, hex.EncodeToString(p[:4])) {
			t.Errorf("%q shows the key", s)
		}
	}
}

// TestParseRefusals: every malformed message is refused with why.
func TestParseRefusals(t *testing.T) {
	good := Refusal("x")
	for _, c := range []struct {
		msg  []byte
		want string
	}{
		{[]byte("RNP"), "shorter than its header"},
		{append([]byte("XXXX"), good[4:]...), "bad magic"},
		{append([]byte("RNPQ\x02"), good[5:]...), "version 2"},
		{[]byte("RNPQ\x01\x09\x00\x00"), "unknown message type 9"},
		{[]byte("RNPQ\x01\x03\x00\x05abc"), "says 5 bytes of body, the message has 3"},
		{[]byte("RNPQ\x01\x03\x00\x03abc"), "has 3 bytes of body, want 40"},
		{append([]byte("RNPQ\x01\x04\x00\xc9"), make([]byte, 201)...), "a refusal of 201 bytes"},
	} {
		if _, _, err := Parse(c.msg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.msg, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	a, b := pair()
	_, init, _ := NewInitiator(a, b.Public(), 1)
	_, resp, _ := Respond(b, a.Public(), init)
	f.Add(init)
	f.Add(resp)
	f.Add(Refusal("no"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		typ, body, err := Parse(msg)
		if err != nil {
			return
		}
		if typ < TypeInit || typ > TypeRefuse || len(body) != len(msg)-headerLen {
			t.Fatalf("accepted type %d with %d bytes of body from %d", typ, len(body), len(msg))
		}
		// What parses reads back whole from a stream, and Respond and
		// Finish refuse, never panic.
		if back, err := ReadMessage(bytes.NewReader(msg)); err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("ReadMessage of a parsed message: %v", err)
		}
		Respond(b, a.Public(), msg)
		i, _, _ := NewInitiator(a, b.Public(), 1)
		i.Finish(msg)
	})
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte("RNPQ\x01\x03\x00\x28" + strings.Repeat("a", 40)))
	f.Add([]byte("RNPQ\x01\x01\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ReadMessage(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(msg) > headerLen+initLen || !bytes.HasPrefix(data, msg) {
			t.Fatalf("read %d bytes that are not the stream's first", len(msg))
		}
	})
}
