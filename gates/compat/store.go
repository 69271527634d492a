package compat

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
	"github.com/rustynet/rustynet/internal/ports"
)

// StoreUpgrade is what opening an earlier release's real data dir with the
// new controller showed.
type StoreUpgrade struct {
	From       string `json:"from"`
	Capability int    `json:"capability"`
	// Nodes the earlier release registered; Kept those the new controller
	// lists with the same ID, name and addresses.
	Nodes int `json:"nodes"`
	Kept  int `json:"kept"`
	// Credentials of the earlier release's nodes the new controller
	// accepts (a netmap long-poll answered 200 at their capability
	// version), and the peers each such netmap carried.
	Credentials int `json:"credentials_accepted"`
	Peers       int `json:"peers_in_first_netmap"`
	// Start is how long the new controller took to serve on the upgraded
	// data dir.
	Start time.Duration `json:"start_ns"`
	// TooOld is how the new controller answered a client older than the
	// oldest capability version it serves (one of the nodes, at
	// MinSupportedCapabilityVersion-1): 426 with a message that says
	// what to upgrade to.
	TooOld TooOld `json:"too_old_client"`
	// Renamed is how many of the earlier release's nodes the store's
	// migrations renamed as the new schema requires (names of the form
	// of a node ID get store.IDShapedNamePrefix).
	Renamed int `json:"renamed"`
	// Downgrade is how the earlier release's controller answered when
	// started again on the upgraded data dir.
	Downgrade Downgrade `json:"downgrade"`
	Problems  []string  `json:"problems,omitempty"`
}

// Downgrade is an earlier release's controller started again on a data
// dir this tree's controller has upgraded. If the upgrade raised the
// schema version, it must refuse, naming the data dir's schema version and
// its own; if not, it must serve the data dir as before (a downgrade
// within one schema version works).
type Downgrade struct {
	// SchemaBefore is the data dir's schema version as the earlier
	// release left it; SchemaAfter, as this tree's controller left it.
	SchemaBefore uint64 `json:"schema_before"`
	SchemaAfter  uint64 `json:"schema_after"`
	// Refused: the earlier release's controller exited without serving
	// (Message is its last line); Served: it served the data dir.
	Refused bool   `json:"refused"`
	Served  bool   `json:"served"`
	Message string `json:"message"`
}

// upgradeNodes is how many nodes the earlier release registers.
const upgradeNodes = 3

// CheckStoreUpgrade runs rel's controller on a fresh data dir under work,
// registers nodes through its API as nodes of its capability version do,
// stops it, and starts newController on the same data dir: every node must
// be there, unchanged but for what the migrations must change, and its
// credential still good. One node's hostname has the form of a node ID,
// which releases before capability version 3 took as its name and schema 2
// renames. Then rel's controller is started again on the upgraded data dir,
// and must refuse it. The data dir is the earlier release's own, never
// written by hand. An error means the check could not run; what it found
// wrong is in Problems.
func CheckStoreUpgrade(ctx context.Context, rel Built, newController, work string, log io.Writer) (*StoreUpgrade, error) {
	res := &StoreUpgrade{From: rel.Release, Capability: rel.Capability}
	dir, err := os.MkdirTemp(work, "store-"+rel.Release+"-")
	if err != nil {
		return nil, err
	}
	old, err := startController(ctx, rel.Controller, dir, log)
	if err != nil {
		return nil, fmt.Errorf("%s's controller: %w", rel.Release, err)
	}
	var regs []registered
	err = func() error {
		defer old.stop()
		out, err := exec.CommandContext(ctx, rel.Controller, "authkey", "create", "--data-dir", dir, "--reusable").Output()
		if err != nil {
			return fmt.Errorf("%s's authkey create: %w", rel.Release, err)
		}
		key := strings.TrimSpace(string(out))
		for i := range upgradeNodes {
			name := fmt.Sprintf("%s-node-%d", strings.ReplaceAll(rel.Release, ".", "-"), i)
			if i == 0 {
				name = idShapedHostname()
			}
			req, err := registration(ctx, old, rel.Capability, key, name)
			if err != nil {
				return fmt.Errorf("%s: %w", rel.Release, err)
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			var rr struct {
				Node struct {
					ID        string   `json:"id"`
					Name      string   `json:"name"`
					Addresses []string `json:"addresses"`
				} `json:"node"`
				Credential string `json:"credential"`
			}
			status, raw, err := old.do(ctx, http.MethodPost, api.PathRegister, rel.Capability, "", body)
			if err != nil {
				return err
			}
			if status != http.StatusOK || json.Unmarshal(raw, &rr) != nil || rr.Credential == "" {
				return fmt.Errorf("%s refused a registration of its own capability version %d: %d %s", rel.Release, rel.Capability, status, truncate(raw))
			}
			regs = append(regs, registered{ID: rr.Node.ID, Name: rr.Node.Name, Credential: rr.Credential, Addresses: rr.Node.Addresses})
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	res.Nodes = len(regs)
	if res.Downgrade.SchemaBefore, err = bolt.ReadSchemaVersion(filepath.Join(dir, bolt.FileName)); err != nil {
		return nil, fmt.Errorf("%s's data dir's schema version: %w", rel.Release, err)
	}

	start := time.Now()
	cur, err := startController(ctx, newController, dir, log)
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("the new controller does not start on %s's data dir: %v", rel.Release, err))
		return res, nil
	}
	res.Start = time.Since(start)
	if err := checkUpgraded(ctx, res, rel, cur, newController, dir, regs); err != nil {
		cur.stop()
		return nil, err
	}
	cur.stop()
	if res.Downgrade.SchemaAfter, err = bolt.ReadSchemaVersion(filepath.Join(dir, bolt.FileName)); err != nil {
		return nil, fmt.Errorf("the upgraded data dir's schema version: %w", err)
	}
	if res.Downgrade.SchemaAfter > res.Downgrade.SchemaBefore {
		res.Downgrade.Refused, res.Downgrade.Message = tryDowngrade(ctx, rel, dir, log)
	} else {
		old, err := startController(ctx, rel.Controller, dir, log)
		if err == nil {
			res.Downgrade.Served = true
			old.stop()
		} else {
			res.Downgrade.Message = err.Error()
		}
	}
	return res, nil
}

// registered is a node an earlier release registered.
type registered struct {
	ID, Name, Credential string
	Addresses            []string
}

// checkUpgraded checks, on the new controller serving the upgraded data
// dir, that every node rel registered is there with its credential good,
// and how it answers a client older than it serves.
func checkUpgraded(ctx context.Context, res *StoreUpgrade, rel Built, cur *controller, newController, dir string, regs []registered) error {
	out, err := exec.CommandContext(ctx, newController, "node", "list", "--json", "--data-dir", dir).Output()
	if err != nil {
		return fmt.Errorf("node list on the upgraded data dir: %w", err)
	}
	var listed []api.AdminNode
	if err := json.Unmarshal(out, &listed); err != nil {
		return fmt.Errorf("node list --json: %w", err)
	}
	for _, r := range regs {
		i := slices.IndexFunc(listed, func(n api.AdminNode) bool { return string(n.ID) == r.ID })
		if i < 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("node %s (%s), registered by %s, is missing after the upgrade", r.ID, r.Name, rel.Release))
			continue
		}
		var addrs []string
		for _, a := range listed[i].Addresses {
			addrs = append(addrs, a.String())
		}
		want := r.Name
		if api.ValidNodeID(r.Name) {
			// Schema 2: no name has the form of a node ID.
			want = store.IDShapedNamePrefix + r.Name
		}
		if listed[i].Name != want || !slices.Equal(addrs, r.Addresses) {
			res.Problems = append(res.Problems, fmt.Sprintf("node %s after the upgrade: %s %v, want %s %v (was %s)", r.ID, listed[i].Name, addrs, want, r.Addresses, r.Name))
			continue
		}
		if want != r.Name {
			res.Renamed++
		}
		res.Kept++
	}
	for _, r := range regs {
		status, raw, err := cur.do(ctx, http.MethodGet, api.PathNetmap+"?since=0&wait=0", rel.Capability, r.Credential, nil)
		if err != nil {
			return err
		}
		var m struct {
			Peers []json.RawMessage `json:"peers"`
		}
		if status != http.StatusOK || json.Unmarshal(raw, &m) != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("node %s's credential from %s, at capability version %d: %d %s", r.ID, rel.Release, rel.Capability, status, truncate(raw)))
			continue
		}
		res.Credentials++
		res.Peers = len(m.Peers)
	}
	if len(regs) > 0 {
		res.TooOld.Version = int(api.MinSupportedCapabilityVersion) - 1
		status, raw, err := cur.do(ctx, http.MethodGet, api.PathNetmap+"?since=0&wait=0", res.TooOld.Version, regs[0].Credential, nil)
		if err != nil {
			return err
		}
		var e struct {
			Error api.Error `json:"error"`
		}
		json.Unmarshal(raw, &e)
		res.TooOld.Status, res.TooOld.Message = status, e.Error.Message
		if res.TooOld.Message == "" {
			res.TooOld.Message = truncate(raw)
		}
	}
	return nil
}

// TooOld is a controller's answer to a client older than it serves.
type TooOld struct {
	Version int    `json:"capability"`
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// proofSince is the capability version from which a registration proves
// the machine key (GET /v1/register/challenge, then challenge and
// machine_proof), as nodes of that version do.
const proofSince = 3

// registration is the body a node of capability version v sends to
// register as hostname with key: fresh node and machine keys, and from
// proofSince the challenge's answer with the machine key's proof.
func registration(ctx context.Context, c *controller, v int, key, hostname string) (map[string]string, error) {
	mpriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var nk, mk api.NodePublic
	rand.Read(nk[:])
	copy(mk[:], mpriv.PublicKey().Bytes())
	req := map[string]string{"auth_key": key, "node_key": nk.String(), "machine_key": mk.String(), "hostname": hostname}
	if v < proofSince {
		return req, nil
	}
	status, raw, err := c.do(ctx, http.MethodGet, api.PathRegisterChallenge, v, "", nil)
	if err != nil {
		return nil, err
	}
	var ch api.RegisterChallenge
	if status != http.StatusOK || json.Unmarshal(raw, &ch) != nil {
		return nil, fmt.Errorf("register challenge: %d %s", status, truncate(raw))
	}
	peer, err := ecdh.X25519().NewPublicKey(ch.Key[:])
	if err != nil {
		return nil, fmt.Errorf("register challenge key: %w", err)
	}
	shared, err := mpriv.ECDH(peer)
	if err != nil {
		return nil, err
	}
	req["challenge"] = ch.Challenge
	req["machine_proof"] = api.EncodeProof(api.MachineProof([32]byte(shared), ch.Challenge, api.MachinePublic(mk), nk))
	return req, nil
}

// idShapedHostname is a hostname of the form of a node ID.
func idShapedHostname() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "n" + hex.EncodeToString(b)
}

// tryDowngrade starts rel's controller on dir, which a newer controller
// has upgraded to a newer schema, and reports whether it refused (exited
// within 30 s without serving) and its last line, which must say which
// schema version it found and which it knows.
func tryDowngrade(ctx context.Context, rel Built, dir string, log io.Writer) (bool, string) {
	var addrs []string
	for range 2 {
		port, release, err := ports.Reserve()
		if err != nil {
			return false, err.Error()
		}
		// Free for it: a controller that refuses never listens.
		release()
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, rel.Controller, "serve", "--data-dir", dir, "--listen", addrs[0], "--metrics-listen", addrs[1])
	fmt.Fprintf(log, "$ %s\n", strings.Join(cmd.Args, " "))
	out, err := cmd.CombinedOutput()
	log.Write(out)
	// Its last line, with the data dir's path (whose digits are not
	// versions) taken out.
	msg := strings.TrimSpace(string(out))
	if i := strings.LastIndex(msg, "\n"); i >= 0 {
		msg = msg[i+1:]
	}
	msg = strings.ReplaceAll(msg, dir, "DATA_DIR")
	var exit *exec.ExitError
	return errors.As(err, &exit) && cctx.Err() == nil, truncate([]byte(msg))
}

// controller is a controller process serving on loopback.
type controller struct {
	*proc
	url string
	hc  *http.Client
}

// startController runs `bin serve` on dir at a reserved loopback port and
// waits, up to 30 s, until it answers /healthz over TLS with its CA. It
// reads no ready file: earlier releases did not write one.
func startController(ctx context.Context, bin, dir string, log io.Writer) (*controller, error) {
	// Held until the controller serves on them (or gives up).
	port, release, err := ports.Reserve()
	if err != nil {
		return nil, err
	}
	defer release()
	mport, mrelease, err := ports.Reserve()
	if err != nil {
		return nil, err
	}
	defer mrelease()
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--listen", listen, "--metrics-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(mport)))
	fmt.Fprintf(log, "$ %s\n", strings.Join(cmd.Args, " "))
	p, err := start(cmd, log)
	if err != nil {
		return nil, err
	}
	c := &controller{proc: p, url: "https://" + listen}
	if c.hc, err = healthyClient(ctx, nil, c.url, filepath.Join(dir, "tls", "ca.pem"), c.exited); err != nil {
		c.stop()
		if errors.Is(err, ctx.Err()) {
			return nil, err
		}
		if c.err != nil {
			return nil, fmt.Errorf("%s: %w (%v)", bin, err, c.err)
		}
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	return c, nil
}

// do sends one API request as a client of capability version v.
func (c *controller) do(ctx context.Context, method, path string, v int, cred string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	req.Header.Set(api.HeaderCapabilityVersion, strconv.Itoa(v))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, err
}

// stop ends the controller with SIGTERM (SIGKILL after 10 s) and waits.
func (c *controller) stop() {
	if c.hc != nil {
		c.hc.CloseIdleConnections()
	}
	c.proc.stop()
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
