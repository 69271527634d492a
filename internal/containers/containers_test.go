package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"go.uber.org/goleak"

	"github.com/rustynet/rustynet/internal/require"
	"github.com/rustynet/rustynet/node/localapi"
)

// TestMain fails the run if a goroutine outlives the tests: the package
// must not leave Docker connections or waiters behind. Run with
// sweepChildEnv set, the binary is TestSweep's child instead.
func TestMain(m *testing.M) {
	if os.Getenv(sweepChildEnv) != "" {
		sweepChild()
	}
	goleak.VerifyTestMain(m)
}

func TestControllerServesHealthz(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	c := StartController(ctx, t, NewNetwork(ctx, t))

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		t.Fatalf("CAPEM holds no certificate:\n%s", c.CAPEM)
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
	resp, err := hc.Get(c.HostURL + "/healthz")
	if err != nil {
		t.Fatalf("GET %s/healthz: %v", c.HostURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/healthz = %s, want 200", c.HostURL, resp.Status)
	}

	// Without the CA the certificate must not verify.
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, err = plain.Get(c.HostURL + "/healthz")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("GET %s/healthz with the system roots: err = %v, want x509.UnknownAuthorityError", c.HostURL, err)
	}

	// Ports are published on loopback only.
	info, err := c.Container.Inspect(ctx)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if len(info.NetworkSettings.Ports) != 2 {
		t.Errorf("published ports = %v, want 8443/tcp and 9469/tcp", info.NetworkSettings.Ports)
	}
	for port, bindings := range info.NetworkSettings.Ports {
		for _, b := range bindings {
			if b.HostIP.String() != "127.0.0.1" {
				t.Errorf("port %s published on %s:%s, want 127.0.0.1 only", port, b.HostIP, b.HostPort)
			}
		}
	}

	resp, err = hc.Get(c.MetricsHostURL)
	if err != nil {
		t.Fatalf("GET %s: %v", c.MetricsHostURL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "rustynet_controller_nodes") {
		t.Errorf("GET %s = %s, want 200 with rustynet_controller_nodes", c.MetricsHostURL, resp.Status)
	}
}

func TestControllerRegistersNode(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	c := StartController(ctx, t, NewNetwork(ctx, t))

	key := c.AuthKey(ctx, t, false, "tag:web")
	if !strings.HasPrefix(key, "rnk_") {
		t.Fatalf("AuthKey(false, tag:web) = %q, want a key starting with rnk_", key)
	}
	id := register(t, c, key, "laptop")
	if got := listNodes(t, c); !slices.Contains(got, id+" laptop") {
		t.Errorf("node list = %q, want it to hold %q", got, id+" laptop")
	}

	// A single-use key is spent.
	if code, out := registerStatus(t, c, key, "desktop"); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("register with a used key = %d %s, want 401 or 403", code, out)
	}

	code, out, err := c.Admin(ctx, "node", "list", "--data-dir", "/nonexistent")
	if err != nil || code == 0 {
		t.Errorf("Admin(node list --data-dir /nonexistent) = %d, %q, %v; want a non-zero exit code", code, out, err)
	}
}

func TestControllerKeepsStateAcrossRestarts(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	c := StartController(ctx, t, NewNetwork(ctx, t))
	ca := c.CAPEM
	id := register(t, c, c.AuthKey(ctx, t, true), "survivor") + " survivor"

	if err := c.Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if st, err := c.Container.State(ctx); err != nil || st.Running {
		t.Fatalf("after Kill: State() = %+v, %v; want not running", st, err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start after Kill: %v", err)
	}
	if got := listNodes(t, c); !slices.Contains(got, id) {
		t.Errorf("after Kill and Start: node list = %q, want it to hold %q", got, id)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if got := listNodes(t, c); !slices.Contains(got, id) {
		t.Errorf("after Stop and Start: node list = %q, want it to hold %q", got, id)
	}
	if !bytes.Equal(c.CAPEM, ca) {
		t.Errorf("CAPEM changed across restarts")
	}
	// The reusable key still registers after the restarts.
	register(t, c, c.AuthKey(ctx, t, false), "newcomer")
}

func TestCleanupLeavesNothing(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	t.Run("start", func(t *testing.T) {
		n := NewNetwork(ctx, t)
		c := StartController(ctx, t, n)
		left, err := Remaining(ctx)
		if err != nil {
			t.Fatalf("Remaining: %v", err)
		}
		id := c.Container.GetContainerID()[:12]
		if !slices.ContainsFunc(left, func(s string) bool { return strings.Contains(s, id) }) ||
			!slices.ContainsFunc(left, func(s string) bool { return strings.Contains(s, n.Name) }) {
			t.Errorf("Remaining() while running = %q, want container %s and network %s", left, id, n.Name)
		}
	})
	left, err := Remaining(ctx)
	if err != nil {
		t.Fatalf("Remaining: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("Remaining() after cleanup = %q, want nothing", left)
	}
}

func TestImageIsCachedByContent(t *testing.T) {
	require.Docker(t)
	bin := Binary(t, ControllerPackage)
	if again := Binary(t, ControllerPackage); again != bin {
		t.Errorf("Binary(%q) = %q, then %q; want the same path", ControllerPackage, bin, again)
	}
	a := Image(t, "controller", map[string]string{controllerBin: bin})
	b := Image(t, "controller", map[string]string{controllerBin: bin})
	if a != b || !strings.HasPrefix(a, ImageRepoPrefix+"controller:") {
		t.Errorf("Image(controller) = %q, then %q; want the same rustynet-test/controller:HASH", a, b)
	}
	other := Image(t, "controller-elsewhere", map[string]string{"/bin/rustynet-controller": bin})
	t.Cleanup(func() {
		images.Delete(other)
		defer provider.Close()
		if _, err := provider.Client().ImageRemove(context.Background(), other, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
			t.Errorf("remove image %s: %v", other, err)
		}
	})
	if other == a || !strings.HasPrefix(other, ImageRepoPrefix+"controller-elsewhere:") ||
		strings.TrimPrefix(other, ImageRepoPrefix+"controller-elsewhere:") == strings.TrimPrefix(a, ImageRepoPrefix+"controller:") {
		t.Errorf("Image(controller-elsewhere) with the binary elsewhere = %q, want a hash other than %q's", other, a)
	}
}

func TestWaitReadyReportsExit(t *testing.T) {
	require.Docker(t)
	ctx := t.Context()
	img := Image(t, "controller", map[string]string{controllerBin: Binary(t, ControllerPackage)})
	ctr := startContainer(ctx, t, "version", testcontainers.ContainerRequest{
		Image:      img,
		Entrypoint: []string{controllerBin},
		Cmd:        []string{"version"},
		Labels:     labels(t),
	})
	err := waitReady(ctx, ctr, "version", func(context.Context) error { return errors.New("never ready") })
	if err == nil || !strings.Contains(err.Error(), "exited (status 0)") || !strings.Contains(err.Error(), "rustynet-controller dev") {
		t.Errorf("waitReady(a container that exits) = %v, want an error saying it exited, with its log", err)
	}
}

func TestBuildContext(t *testing.T) {
	archive, err := buildContext([]imageFile{
		{path: "/a", mode: 0o755, data: []byte("A")},
		{path: "/usr/bin/b", mode: 0o644, data: []byte("BB")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+strings.TrimLeft(h.FileInfo().Mode().String(), "-"))
	}
	want := []string{
		"Dockerfile rw-r--r--",
		"rootfs/ drwxr-xr-x",
		"rootfs/data/ drwx------",
		"rootfs/tmp/ dtrwxrwxrwx",
		"rootfs/usr/ drwxr-xr-x",
		"rootfs/usr/bin/ drwxr-xr-x",
		"rootfs/a rwxr-xr-x",
		"rootfs/usr/bin/b rw-r--r--",
	}
	if !slices.Equal(got, want) {
		t.Errorf("buildContext() entries = %q, want %q", got, want)
	}
}

// register registers a node with fresh keys through HostURL, as curl
// would, and returns its ID.
func register(t *testing.T, c *Controller, authKey, hostname string) string {
	t.Helper()
	code, body := registerStatus(t, c, authKey, hostname)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/register = %d %s, want 200", code, body)
	}
	var r struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
		Credential string `json:"credential"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Node.ID == "" || !strings.HasPrefix(r.Credential, "rnc_") {
		t.Fatalf("POST /v1/register answered %s (%v), want a node ID and an rnc_ credential", body, err)
	}
	return r.Node.ID
}

func registerStatus(t *testing.T, c *Controller, authKey, hostname string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{
		"auth_key":    authKey,
		"node_key":    randomKey(),
		"machine_key": randomKey(),
		"hostname":    hostname,
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.HostURL+"/v1/register", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Rustynet-Capability-Version", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s/v1/register: %v", c.HostURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func randomKey() string {
	var k [32]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// listNodes returns "ID NAME" for each node `node list --json` lists.
func listNodes(t *testing.T, c *Controller) []string {
	t.Helper()
	args := []string{"node", "list", "--json", "--data-dir", "/data"}
	code, out, err := c.Admin(t.Context(), args...)
	if err != nil || code != 0 {
		t.Fatalf("Admin(%q) = %d, %q, %v; want exit code 0", args, code, out, err)
	}
	var nodes []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("Admin(%q) printed %q: %v", args, out, err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.ID+" "+n.Name)
	}
	return got
}

// TestTwoNodesReachEachOther starts a controller and two netstack nodes in
// containers: both register, each pings the other through the tunnel, and
// the status of each shows the other with a completed handshake. A node
// killed and started again comes back from its state and still reaches
// its peer.
func TestTwoNodesReachEachOther(t *testing.T) {
	require.Docker(t)
	ctx := context.Background()
	n := NewNetwork(ctx, t)
	c := StartController(ctx, t, n)
	key := c.AuthKey(ctx, t, true)
	a := StartNode(ctx, t, n, c, key, "alpha")
	b := StartNode(ctx, t, n, c, key, "bravo")
	if a.IPv4 == b.IPv4 {
		t.Fatalf("both nodes got %s", a.IPv4)
	}
	for _, p := range [][2]*Node{{a, b}, {b, a}} {
		code, out, err := p[0].CLI(ctx, "ping", p[1].Name, "-c", "3")
		if err != nil || code != 0 || strings.Count(out, "reply from "+p[1].Name) != 3 {
			t.Errorf("%s: rustynet ping %s = exit %d, %v:\n%s", p[0].Name, p[1].Name, code, err, out)
		}
	}
	code, out, err := a.CLI(ctx, "status", "--json")
	if err != nil || code != 0 {
		t.Fatalf("status: exit %d, %v: %s", code, err, out)
	}
	var st localapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	if st.State != "running" || len(st.Peers) != 1 || st.Peers[0].Name != b.Name || st.Peers[0].LastHandshake == nil {
		t.Errorf("alpha's status = %+v, want running with bravo handshaken", st)
	}

	if err := a.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, err = b.CLI(ctx, "ping", a.Name, "-c", "1")
	if err != nil || code != 0 {
		t.Errorf("after alpha was killed and restarted, bravo: rustynet ping alpha = exit %d, %v:\n%s", code, err, out)
	}
}
