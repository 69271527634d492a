// Package drload is the DR drills' load client: it writes through every
// controller replica in turn, at a paced rate, as nodes do (registrations
// with a machine proof, then endpoint reports of the nodes it registered,
// each a netmap change for every peer), and logs every write with its
// outcome, one JSON line each (Record). A write goes to one replica and
// is not retried: the log shows, replica by replica, when writes stopped
// and started being acknowledged.
package drload

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rustynet/rustynet/controller/api"
)

// Config is a load.
type Config struct {
	// Controllers are the replicas' URLs, written to in turn.
	Controllers []string
	CAPEM       []byte
	AuthKey     string // reusable
	// Prefix starts every hostname the load registers.
	Prefix   string
	Duration time.Duration
	// Rates, per minute; a zero rate makes no writes of its kind.
	RegistrationsPerMinute, EndpointReportsPerMinute float64
	// Timeout bounds one write (default 2 s).
	Timeout time.Duration
}

// Ops of a Record.
const (
	OpRegister  = "register"
	OpEndpoints = "endpoints"
	// OpPolicy is a policy change: an admin write, which the DR drills'
	// runner makes on a replica's admin socket and logs beside the load
	// client's writes (this client makes none).
	OpPolicy = "policy"
)

// Record is one write: sent At to Replica, answered (or failed) at Done.
// OK means acknowledged (2xx); Node is the node written (for a
// registration, the one created); Endpoints are what an endpoint report
// set; Hostname what a registration named; Revision the netmap revision
// the answer carried, when it did.
type Record struct {
	At        time.Time        `json:"at"`
	Done      time.Time        `json:"done"`
	Op        string           `json:"op"`
	Replica   string           `json:"replica"`
	OK        bool             `json:"ok"`
	Status    int              `json:"status,omitempty"`
	Error     string           `json:"error,omitempty"`
	Node      api.NodeID       `json:"node,omitempty"`
	Hostname  string           `json:"hostname,omitempty"`
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Policy is the text a policy change set.
	Policy string `json:"policy,omitempty"`
}

type node struct {
	id       api.NodeID
	cred     string
	reported time.Time // last endpoint report sent
	// sending is set while a report of the node waits for its answer: a
	// second one could land first, and the earlier overwrite it.
	sending bool
}

// NodeReportEvery is the least time between two endpoint reports of one
// node the load sends.
const NodeReportEvery = 1500 * time.Millisecond

// Run writes until ctx ends or Duration passes, one Record per write to
// out (lines written whole, in the order the writes ended).
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if len(cfg.Controllers) == 0 {
		return errors.New("drload: no controllers")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CAPEM) {
		return errors.New("drload: the CA file holds no certificate")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		// A connection to a dead replica must not outlive the write.
		DisableKeepAlives: true,
	}}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	l := &load{cfg: cfg, hc: hc, out: out, slots: make(chan struct{}, MaxInFlight)}
	var wg sync.WaitGroup
	if cfg.RegistrationsPerMinute > 0 {
		wg.Go(func() { l.paced(ctx, cfg.RegistrationsPerMinute, l.register) })
	}
	if cfg.EndpointReportsPerMinute > 0 {
		wg.Go(func() { l.paced(ctx, cfg.EndpointReportsPerMinute, l.report) })
	}
	wg.Wait()
	l.writes.Wait() // every write logged, or ended with the run
	return l.werr
}

// MaxInFlight bounds the writes waiting for an answer at once; at the
// drills' rates and Timeout a handful are.
const MaxInFlight = 64

type load struct {
	cfg    Config
	hc     *http.Client
	slots  chan struct{}  // MaxInFlight
	writes sync.WaitGroup // the writes in flight

	mu       sync.Mutex
	out      io.Writer
	werr     error
	next     int // replica of the next write
	nextNode int // node of the next endpoint report
	seq      int // registrations sent
	nodes    []node
}

// paced starts op every minute/perMinute until ctx ends, whether or not
// the writes it started earlier have been answered: a replica that holds
// a write until its Timeout (one that is dead, or cut off) must not delay
// the writes to the others, or the drill would time the load client, not
// the control plane. At most MaxInFlight wait at once.
func (l *load) paced(ctx context.Context, perMinute float64, op func(context.Context)) {
	t := time.NewTicker(time.Duration(float64(time.Minute) / perMinute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			return
		case l.slots <- struct{}{}:
		}
		l.writes.Go(func() {
			defer func() { <-l.slots }()
			op(ctx)
		})
	}
}

func (l *load) replica() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.cfg.Controllers[l.next%len(l.cfg.Controllers)]
	l.next++
	return r
}

func (l *load) log(r Record) {
	r.Done = time.Now().UTC()
	b, err := json.Marshal(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		_, err = l.out.Write(append(b, '\n'))
	}
	if err != nil && l.werr == nil {
		l.werr = fmt.Errorf("drload: writing the log: %w", err)
	}
}

func (l *load) register(parent context.Context) {
	base := l.replica()
	l.mu.Lock()
	l.seq++
	host := fmt.Sprintf("%s%d", l.cfg.Prefix, l.seq)
	l.mu.Unlock()
	r := Record{At: time.Now().UTC(), Op: OpRegister, Replica: base, Hostname: host}
	ctx, cancel := context.WithTimeout(parent, l.cfg.Timeout)
	defer cancel()
	var resp api.RegisterResponse
	r.Status, r.Error = l.registerOn(ctx, base, host, &resp)
	if r.Error == "" {
		r.OK, r.Node = true, resp.Node.ID
		l.mu.Lock()
		l.nodes = append(l.nodes, node{id: resp.Node.ID, cred: resp.Credential})
		l.mu.Unlock()
	}
	l.logUnlessEnded(parent, r)
}

func (l *load) registerOn(ctx context.Context, base, host string, out *api.RegisterResponse) (int, string) {
	mpriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return 0, err.Error()
	}
	var nk api.NodePublic
	rand.Read(nk[:])
	req := api.RegisterRequest{AuthKey: l.cfg.AuthKey, NodeKey: nk, Hostname: host, Backends: []string{"wireguard"}}
	copy(req.MachineKey[:], mpriv.PublicKey().Bytes())
	var ch api.RegisterChallenge
	if st, err := l.call(ctx, http.MethodGet, base+api.PathRegisterChallenge, "", nil, &ch); err != nil {
		return st, "challenge: " + err.Error()
	}
	peer, err := ecdh.X25519().NewPublicKey(ch.Key[:])
	if err != nil {
		return 0, "challenge key: " + err.Error()
	}
	shared, err := mpriv.ECDH(peer)
	if err != nil {
		return 0, err.Error()
	}
	req.Challenge = ch.Challenge
	req.MachineProof = api.EncodeProof(api.MachineProof([32]byte(shared), ch.Challenge, req.MachineKey, req.NodeKey))
	st, err := l.call(ctx, http.MethodPost, base+api.PathRegister, "", req, out)
	if err != nil {
		return st, err.Error()
	}
	return st, ""
}

func (l *load) report(parent context.Context) {
	// The nodes in turn, none more than once a NodeReportEvery: the
	// controller allows a node about one endpoint report a second (429
	// beyond), and a node keeps to that.
	l.mu.Lock()
	if len(l.nodes) == 0 {
		l.mu.Unlock()
		return
	}
	i := l.nextNode % len(l.nodes)
	n := l.nodes[i]
	if n.sending || !n.reported.IsZero() && time.Since(n.reported) < NodeReportEvery {
		l.mu.Unlock()
		return // the node's last report is recent, or unanswered: skip this tick
	}
	l.nextNode++
	l.nodes[i].reported, l.nodes[i].sending = time.Now(), true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.nodes[i].sending = false
		l.mu.Unlock()
	}()
	base := l.replica()
	// An address of the benchmarking block (RFC 2544) and a port that
	// changes with every report, so that each is a change.
	ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, 1}), uint16(1024+time.Now().UnixNano()%60000))
	r := Record{At: time.Now().UTC(), Op: OpEndpoints, Replica: base, Node: n.id, Endpoints: []netip.AddrPort{ep}}
	ctx, cancel := context.WithTimeout(parent, l.cfg.Timeout)
	defer cancel()
	var out api.Node
	st, err := l.call(ctx, http.MethodPost, base+api.PathEndpoints, n.cred, api.EndpointsRequest{Endpoints: r.Endpoints}, &out)
	r.Status = st
	if err != nil {
		r.Error = err.Error()
	} else {
		r.OK = true
	}
	l.logUnlessEnded(parent, r)
}

// logUnlessEnded logs r, unless the write failed because the run ended
// (parent done): that is no outcome of the replica's.
func (l *load) logUnlessEnded(parent context.Context, r Record) {
	if !r.OK && parent.Err() != nil {
		return
	}
	l.log(r)
}

// call sends one request as a client of the current capability version
// and decodes a 2xx answer into out.
func (l *load) call(ctx context.Context, method, url, cred string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("answer: %w", err)
	}
	return resp.StatusCode, nil
}
