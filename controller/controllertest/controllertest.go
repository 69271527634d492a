// Package controllertest runs a real controller (HTTPS with its own CA, the
// admin socket, a bolt store in a temporary data dir) inside a test process,
// for tests of the controller and of everything that talks to it.
package controllertest

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller"
	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/ports"
	"github.com/rustynet/rustynet/internal/promtext"
)

// Controller is a running controller. Its clients reach it through a relay
// on URL's port, which stays the same across restarts; the relay lets Kill
// cut every connection at once.
type Controller struct {
	DataDir    string
	URL        string // https://127.0.0.1:PORT, the relay's
	MetricsURL string // http://127.0.0.1:PORT/metrics
	// APIAddr is the controller's own listener, behind the relay: the
	// controller sees connections to it from their own source address
	// (through URL, every client comes from the relay's 127.0.0.1).
	APIAddr string
	CAFile  string
	Admin   *controller.AdminClient
	// Client trusts the controller's CA and speaks HTTP/1.1, one
	// connection per request in flight, as a node does.
	Client *http.Client

	t         testing.TB
	configure func(*controller.RunConfig)
	listen    string // the relay's address
	cancel    context.CancelFunc
	done      chan error
	relay     *relay
	mu        sync.Mutex
}

// Start starts a controller in a new temporary data dir and stops it when
// the test ends. It accepts loopback endpoints: its nodes share this host.
func Start(t testing.TB) *Controller {
	t.Helper()
	return StartWith(t, func(cfg *controller.RunConfig) { cfg.AllowLoopbackEndpoints = true })
}

// StartWith is Start with a configuration that configure changes from the
// production defaults (DataDir, Listen, MetricsListen and Ready are set
// by the harness).
func StartWith(t testing.TB, configure func(*controller.RunConfig)) *Controller {
	t.Helper()
	c := &Controller{t: t, DataDir: t.TempDir(), listen: "127.0.0.1:0", configure: configure}
	c.start()
	t.Cleanup(c.Stop)
	return c
}

func (c *Controller) start() {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	var cfg controller.RunConfig
	if c.configure != nil {
		c.configure(&cfg)
	}
	cfg.DataDir, cfg.Listen, cfg.MetricsListen = c.DataDir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.Ready = func(a, m net.Addr) { ready <- [2]net.Addr{a, m} }
	go func() { done <- controller.Run(ctx, cfg) }()
	select {
	case addrs := <-ready:
		r, err := listenRelay(c.listen, addrs[0].String())
		if err != nil {
			cancel()
			<-done
			t.Fatalf("relay to the controller: %v", err)
		}
		c.mu.Lock()
		c.cancel, c.done, c.relay = cancel, done, r
		c.URL = "https://" + r.ln.Addr().String()
		c.MetricsURL = "http://" + addrs[1].String() + "/metrics"
		c.APIAddr = addrs[0].String()
		// Restart on the same port, so nodes find the controller again.
		c.listen = r.ln.Addr().String()
		c.mu.Unlock()
	case err := <-done:
		cancel()
		t.Fatalf("controller did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("controller did not start within 30s")
	}
	c.CAFile = filepath.Join(c.DataDir, controller.TLSDir, "ca.pem")
	c.Admin = controller.NewAdminClient(c.DataDir)
	c.Client = NewClient(t, c.CAFile)
}

// NewClient returns an HTTP/1.1 client that trusts the CA in caFile. It
// holds at most clientConns connections to one controller, opening,
// in use and idle together, and never closes one for want of idle room:
// all of a test's requests come from one address, which the controller
// allows controller.DefaultMaxConnsPerIP connections. An unbounded
// client under a burst dials a new connection for every request it cannot
// serve at once and keeps or closes the spares (a closed one counts until
// the controller sees it close): 200 concurrent registrations, two
// requests each, went past the cap now and then, and the refused ones
// failed with EOF.
func NewClient(t testing.TB, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxConnsPerHost:     clientConns,
		MaxIdleConnsPerHost: clientConns,
	}}
}

// clientConns is half the controller's per-address cap.
const clientConns = controller.DefaultMaxConnsPerIP / 2

// Stop shuts the controller down cleanly and waits for it: new
// connections are refused, open long-polls are answered and requests in
// flight finish. Stopping a stopped controller does nothing.
func (c *Controller) Stop() {
	cancel, done, r := c.take()
	if cancel == nil {
		return
	}
	// Close the client's idle connections first: the server's Shutdown
	// waits 5s for connections that never carried a request.
	if tr, ok := c.Client.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
	r.closeListener()
	cancel()
	if err := <-done; err != nil {
		c.t.Errorf("controller stopped with an error: %v", err)
	}
	r.close()
}

// Kill is the closest an in-process controller comes to SIGKILL: it closes
// the relay's listener and every connection through it at once, so clients
// see new connections refused and open long-polls and requests cut off with
// no HTTP response, as when the process dies. Only then is the controller
// itself shut down, to free its data dir for Restart; that shutdown is
// clean (the committer finishes the mutations in hand and the store is
// closed), which a real kill would not give it, so a test of what a crash
// loses from the store needs the controller as a process (Process). Killing
// a stopped controller does nothing.
func (c *Controller) Kill() {
	cancel, done, r := c.take()
	if cancel == nil {
		return
	}
	r.close()
	cancel()
	if err := <-done; err != nil {
		c.t.Errorf("controller stopped with an error after the kill: %v", err)
	}
}

// take hands the running controller to Stop or Kill, or returns nils if
// it is stopped.
func (c *Controller) take() (context.CancelFunc, chan error, *relay) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cancel, done, r := c.cancel, c.done, c.relay
	c.cancel, c.done, c.relay = nil, nil, nil
	return cancel, done, r
}

// Restart stops the controller (if Kill has not) and starts it again on
// the same data dir and port.
func (c *Controller) Restart() {
	c.t.Helper()
	c.Stop()
	c.start()
}

// WaitPolls waits until the controller holds at least n netmap long-polls
// open (its rustynet_controller_netmap_polls_open gauge), so that a test
// makes its change once the polls that must see it have arrived.
func (c *Controller) WaitPolls(n int) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.pollsOpen()
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d long-polls open after 10s, want %d (%v)", got, n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *Controller) pollsOpen() (int, error) {
	v, err := Scrape(c.MetricsURL, "rustynet_controller_netmap_polls_open")
	return int(v), err
}

// Scrape reads one sample from a Prometheus text exposition at url,
// named as the exposition writes it, labels included
// (`name{label="value"}`).
func Scrape(url, series string) (float64, error) {
	return promtext.One(context.Background(), nil, url, series)
}

// NamedAuthKey creates a single-use pre-auth key, valid for an hour, that
// binds the name of the node it registers.
func (c *Controller) NamedAuthKey(name string, tags ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.CreateAuthKey(ctx, api.CreateAuthKeyRequest{TTLSeconds: 3600, Tags: tags, Name: name})
	if err != nil {
		c.t.Fatalf("create auth key for %s: %v", name, err)
	}
	return resp.Key
}

// AuthKey creates a pre-auth key valid for an hour.
func (c *Controller) AuthKey(reusable bool, tags ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.CreateAuthKey(ctx, api.CreateAuthKeyRequest{Reusable: reusable, TTLSeconds: 3600, Tags: tags})
	if err != nil {
		c.t.Fatalf("create auth key: %v", err)
	}
	return resp.Key
}

// Key returns a random public key of either kind. A machine key is a real
// X25519 key whose private half this package keeps, so that Do can prove
// it in a registration, as a node does.
func Key[K api.NodePublic | api.MachinePublic]() K {
	var k K
	if _, ok := any(&k).(*api.MachinePublic); ok {
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		copy(k[:], priv.PublicKey().Bytes())
		machines.Store([32]byte(k), priv)
		return k
	}
	rand.Read(k[:])
	return k
}

// machines holds the private halves of the machine keys Key made.
var machines sync.Map // [32]byte -> *ecdh.PrivateKey

// Prove fills in req's challenge and machine proof with a challenge from
// the controller at baseURL (over hc), for a machine key that Key made. It
// is what a node of capability version 3 does before it registers.
func Prove(ctx context.Context, hc *http.Client, baseURL string, req *api.RegisterRequest) error {
	v, ok := machines.Load([32]byte(req.MachineKey))
	if !ok {
		return fmt.Errorf("machine key %s was not made by controllertest.Key: no private key to prove it with", req.MachineKey)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+api.PathRegisterChallenge, nil)
	if err != nil {
		return err
	}
	hreq.Header.Set(api.HeaderCapabilityVersion, api.CurrentCapabilityVersion.String())
	resp, err := hc.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ch api.RegisterChallenge
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", api.PathRegisterChallenge, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil {
		return err
	}
	peer, err := ecdh.X25519().NewPublicKey(ch.Key[:])
	if err != nil {
		return err
	}
	shared, err := v.(*ecdh.PrivateKey).ECDH(peer)
	if err != nil {
		return err
	}
	req.Challenge = ch.Challenge
	req.MachineProof = api.EncodeProof(api.MachineProof([32]byte(shared), ch.Challenge, req.MachineKey, req.NodeKey))
	return nil
}

// Register registers a node with fresh random keys and fails the test
// unless it succeeds.
func (c *Controller) Register(authKey, hostname string, backends ...string) *api.RegisterResponse {
	c.t.Helper()
	req := api.RegisterRequest{AuthKey: authKey, NodeKey: Key[api.NodePublic](), MachineKey: Key[api.MachinePublic](),
		Hostname: hostname, Backends: backends}
	var out api.RegisterResponse
	if status, body := c.Do(http.MethodPost, api.PathRegister, "", req, &out); status != http.StatusOK {
		c.t.Fatalf("register %s: %d %s", hostname, status, body)
	}
	return &out
}

// Do is DoAs with the current capability version.
func (c *Controller) Do(method, path, cred string, in, out any) (int, []byte) {
	c.t.Helper()
	return c.DoAs(api.CurrentCapabilityVersion, method, path, cred, in, out)
}

// DoAs sends a request as a client of capability version version and, if cred is
// set, the credential; it decodes a 2xx JSON answer into out (if not nil)
// and returns the status and raw body. in may be a []byte, sent as is. An
// api.RegisterRequest without a challenge, for a machine key made by Key,
// is proved first (see Prove) when version is 3 or later, as a node does.
func (c *Controller) DoAs(version api.CapabilityVersion, method, path, cred string, in, out any) (int, []byte) {
	c.t.Helper()
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	case api.RegisterRequest:
		if _, known := machines.Load([32]byte(v.MachineKey)); known && v.Challenge == "" && version >= 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := Prove(ctx, c.Client, c.URL, &v); err != nil {
				c.t.Fatalf("prove the machine key: %v", err)
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set(api.HeaderCapabilityVersion, version.String())
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// StartReplica starts one controller replica over the etcd cluster at
// etcdCfg, in a new data dir, announcing its relay's URL to the nodes.
// caFrom is the data dir of a running replica whose CA this one takes (as
// the README tells an operator to: its tls/ca.pem and tls/ca.key copied
// into this data dir's tls/ before the first start), or "" for the first
// replica, which creates the CA.
func StartReplica(t testing.TB, etcdCfg controller.EtcdConfig, caFrom string) *Controller {
	t.Helper()
	dir := t.TempDir()
	if caFrom != "" {
		if err := os.MkdirAll(filepath.Join(dir, controller.TLSDir), 0o700); err != nil {
			t.Fatal(err)
		}
		for name, mode := range map[string]os.FileMode{"ca.pem": 0o644, "ca.key": 0o600} {
			b, err := os.ReadFile(filepath.Join(caFrom, controller.TLSDir, name))
			if err != nil {
				t.Fatalf("copy the CA from %s: %v", caFrom, err)
			}
			if err := os.WriteFile(filepath.Join(dir, controller.TLSDir, name), b, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The relay's port is chosen now, so that the replica can announce it.
	listen := ports.Addr(t)
	c := &Controller{t: t, DataDir: dir, listen: listen, configure: func(cfg *controller.RunConfig) {
		cfg.AllowLoopbackEndpoints = true
		cfg.Etcd = etcdCfg
		cfg.AdvertiseURL = "https://" + listen
	}}
	c.start()
	t.Cleanup(c.Stop)
	return c
}
