package containers

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// The controller in its container.
const (
	// ControllerAlias is the controller's name on the network.
	ControllerAlias = "controller"
	// DataDir is the controller's data directory and the node's state
	// directory in their containers: part of the container's own
	// filesystem, so it survives Stop, Kill and Start.
	DataDir = "/data"

	controllerBin  = "/rustynet-controller"
	apiPort        = "8443/tcp"
	metricsPort    = "9469/tcp"
	caPath         = DataDir + "/tls/ca.pem"
	caKeyPath      = DataDir + "/tls/ca.key"
	requestTimeout = 10 * time.Second
	// clientTimeout bounds a request of Controller.Client, long enough for
	// the longest netmap long-poll (120 s).
	clientTimeout = 150 * time.Second
)

// Controller is rustynet-controller in a container on a Network, with the
// network alias "controller", serving
//
//	rustynet-controller serve --data-dir /data --listen :8443 --metrics-listen :9469 --tls-san controller --tls-san 127.0.0.1
//
// Its certificate covers every local address of the container, "controller"
// and 127.0.0.1, so it verifies both for other containers (URL) and for the
// test process (HostURL).
//
// Start updates the fields; do not call it concurrently with other methods.
type Controller struct {
	Container testcontainers.Container
	// URL is the API's address for other containers on the network:
	// https://controller:8443.
	URL string
	// HostURL is the API's address for the test process:
	// https://127.0.0.1:PORT, PORT mapped on loopback. Docker maps a new
	// port each time the container starts; Start updates HostURL.
	HostURL string
	// MetricsHostURL is http://127.0.0.1:PORT/metrics, updated like HostURL.
	MetricsHostURL string
	// CAPEM is the controller's CA certificate (DATA/tls/ca.pem), copied
	// out of the container once it served the first time. The CA must not
	// change across restarts: Start verifies the controller with it.
	CAPEM []byte
}

// StartController builds the controller image (once), starts the controller
// on n and waits until it answers GET /healthz through HostURL with a
// certificate that verifies against its CA. The container is removed when
// the test ends.
func StartController(ctx context.Context, t T, n *Network) *Controller {
	t.Helper()
	return startController(ctx, t, ControllerAlias, Binary(t, ControllerPackage), []*Network{n}, nil, nil)
}

// Replica is how StartReplica runs a controller replica on etcd.
type Replica struct {
	// Name is its network alias on every network it joins, and its
	// replica ID; it advertises https://NAME:8443.
	Name     string
	Networks []*Network
	// Bin is the rustynet-controller binary (empty: Binary builds it).
	Bin           string
	EtcdEndpoints []string
	// CAPEM and CAKey are the replicas' shared CA (DATA/tls/ca.pem and
	// ca.key of the first replica; see Controller.CA), copied into DATA/tls
	// before the replica first starts (the key with mode 0600). Nil for
	// the first replica, which creates the CA.
	CAPEM, CAKey []byte
	// Args are more flags for serve.
	Args []string
}

// StartReplica starts a controller replica over etcd as the README's
// "Several controllers on etcd" says to, and waits until it serves as
// StartController does. The container is removed when t ends.
func StartReplica(ctx context.Context, t T, r Replica) *Controller {
	t.Helper()
	bin := r.Bin
	if bin == "" {
		bin = Binary(t, ControllerPackage)
	}
	args := append([]string{"--store", "etcd", "--etcd-endpoints", strings.Join(r.EtcdEndpoints, ","),
		"--advertise-url", "https://" + r.Name + ":8443", "--replica-id", r.Name}, r.Args...)
	var files []testcontainers.ContainerFile
	if r.CAPEM != nil {
		files = []testcontainers.ContainerFile{
			{Reader: bytes.NewReader(r.CAPEM), ContainerFilePath: caPath, FileMode: 0o644},
			{Reader: bytes.NewReader(r.CAKey), ContainerFilePath: caKeyPath, FileMode: 0o600},
		}
	}
	return startController(ctx, t, r.Name, bin, r.Networks, args, files)
}

func startController(ctx context.Context, t T, name, bin string, networks []*Network, args []string, files []testcontainers.ContainerFile) *Controller {
	t.Helper()
	img := Image(t, "controller", map[string]string{controllerBin: bin})
	var nets []string
	aliases := map[string][]string{}
	for _, n := range networks {
		nets = append(nets, n.Name)
		aliases[n.Name] = []string{name}
	}
	ctr := startContainer(ctx, t, "controller "+name, testcontainers.ContainerRequest{
		Image:      img,
		Entrypoint: []string{controllerBin},
		Cmd: append([]string{"serve", "--data-dir", DataDir, "--listen", ":8443", "--metrics-listen", ":9469",
			"--tls-san", name, "--tls-san", "127.0.0.1"}, args...),
		ExposedPorts:       []string{apiPort, metricsPort},
		HostConfigModifier: loopbackPorts(apiPort, metricsPort),
		Networks:           nets,
		NetworkAliases:     aliases,
		Labels:             labels(t),
		Files:              files,
	})
	c := &Controller{Container: ctr, URL: "https://" + name + ":8443"}
	if err := c.waitServing(ctx); err != nil {
		t.Fatalf("containers: controller %s: %v", name, err)
	}
	return c
}

// CA returns the controller's CA certificate and key (DATA/tls/ca.pem and
// ca.key), for the replicas that join it.
func (c *Controller) CA(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	key, err := copyFrom(ctx, c.Container, caKeyPath)
	if err != nil {
		return nil, nil, err
	}
	return c.CAPEM, key, nil
}

// Client returns an HTTP client that trusts only the controller's CA and
// keeps no idle connections. Its requests time out after 150 s, longer than
// the longest netmap long-poll; pass a context to bound them tighter.
func (c *Controller) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	return &http.Client{
		Timeout: clientTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
			DisableKeepAlives: true,
		},
	}
}

// AuthKey creates a pre-auth key with `rustynet-controller authkey create
// --data-dir /data [--reusable] [--tags TAG,...]` in the container and
// returns it. The test fails if the command does.
func (c *Controller) AuthKey(ctx context.Context, t T, reusable bool, tags ...string) string {
	t.Helper()
	args := []string{"authkey", "create", "--data-dir", DataDir}
	if reusable {
		args = append(args, "--reusable")
	}
	if len(tags) > 0 {
		args = append(args, "--tags", strings.Join(tags, ","))
	}
	r, err := Exec(ctx, c.Container, append([]string{controllerBin}, args...)...)
	if err != nil {
		t.Fatalf("controller %s: %v", strings.Join(args, " "), err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("controller %s: exit status %d\n%s", strings.Join(args, " "), r.ExitCode, r.Output())
	}
	return strings.TrimSpace(r.Stdout)
}

// Admin runs `rustynet-controller ARGS...` in the container (args include
// --data-dir /data where the command needs it) and returns its exit code
// and its output: stdout, then stderr. err is set only when the command
// could not be run.
func (c *Controller) Admin(ctx context.Context, args ...string) (exitCode int, output string, err error) {
	r, err := Exec(ctx, c.Container, append([]string{controllerBin}, args...)...)
	return r.ExitCode, r.Output(), err
}

// Stop sends SIGTERM and waits for the controller to exit, at most
// StopTimeout before Docker kills it. It returns an error unless the
// controller exited cleanly (status 0). The container and its /data stay.
func (c *Controller) Stop(ctx context.Context) error {
	code, err := stop(ctx, c.Container)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if code != 0 {
		return fmt.Errorf("controller: exit status %d after SIGTERM%s", code, withLog(c.Container))
	}
	return nil
}

// Kill sends SIGKILL, as a crash would, and waits until the container has
// stopped. The container and its /data stay. (Container.IsRunning, the
// bookkeeping of testcontainers-go, does not see a kill; Container.State
// does.)
func (c *Controller) Kill(ctx context.Context) error {
	if err := kill(ctx, c.Container); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// Start starts the stopped (or killed) container again, with the data it
// had, and waits until the controller serves as StartController does.
// HostURL and MetricsHostURL are updated to the new mapped ports.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.Container.Start(ctx); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	c.HostURL, c.MetricsHostURL = "", ""
	return c.waitServing(ctx)
}

// waitServing waits until the controller answers /healthz through HostURL,
// reading the mapped ports and the CA first.
func (c *Controller) waitServing(ctx context.Context) error {
	return waitReady(ctx, c.Container, "controller", func(ctx context.Context) error {
		if c.HostURL == "" {
			api, err := hostAddr(ctx, c.Container, apiPort)
			if err != nil {
				return err
			}
			metrics, err := hostAddr(ctx, c.Container, metricsPort)
			if err != nil {
				return err
			}
			c.HostURL, c.MetricsHostURL = "https://"+api, "http://"+metrics+"/metrics"
		}
		if c.CAPEM == nil {
			ca, err := copyFrom(ctx, c.Container, caPath)
			if err != nil {
				return err
			}
			if b, _ := pem.Decode(ca); b == nil || b.Type != "CERTIFICATE" {
				return fmt.Errorf("%s holds no certificate yet", caPath)
			}
			c.CAPEM = ca
		}
		return c.healthz(ctx)
	})
}

func (c *Controller) healthz(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HostURL+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Client().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("GET /healthz: " + resp.Status)
	}
	return nil
}
