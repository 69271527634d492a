package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

const (
	etcdBin        = "/etcd"
	etcdClientPort = "2379/tcp"
)

// EtcdMember is one member of an etcd cluster in a container, its data in
// the container's /data (so it survives Kill and Start), serving clients
// on http://NAME:2379 and peers on http://NAME:2380, NAME being its
// network alias on every network it joins. etcd is this module's test
// server build (internal/etcdproc.Build), with fsync on.
type EtcdMember struct {
	Container testcontainers.Container
	Name      string
	// ClientURL is the address other containers reach it at.
	ClientURL string
	// HostURL is http://127.0.0.1:PORT, for the caller; Start updates it.
	HostURL string
}

// EtcdCluster names the members of a new cluster: Initial is etcd's
// --initial-cluster (NAME=http://NAME:2380,...), Token its cluster token.
type EtcdCluster struct {
	Initial string
	Token   string
}

// NewEtcdCluster returns the --initial-cluster of members named names.
func NewEtcdCluster(token string, names ...string) EtcdCluster {
	var parts []string
	for _, n := range names {
		parts = append(parts, n+"=http://"+n+":2380")
	}
	return EtcdCluster{Initial: strings.Join(parts, ","), Token: token}
}

// StartEtcdMember starts the member name of cluster c from the etcd
// server binary bin, on the networks given (its alias is name on each),
// with extra etcd flags (timing, say). It does not wait for a quorum: a
// member of a new cluster serves only once a majority has started. Use
// WaitHealthy. The container is removed when t ends.
func StartEtcdMember(ctx context.Context, t T, bin, name string, c EtcdCluster, networks []*Network, extra ...string) *EtcdMember {
	t.Helper()
	img := Image(t, "etcd", map[string]string{etcdBin: bin})
	var nets []string
	aliases := map[string][]string{}
	for _, n := range networks {
		nets = append(nets, n.Name)
		aliases[n.Name] = []string{name}
	}
	args := append([]string{
		"--name", name, "--data-dir", DataDir + "/etcd",
		"--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://" + name + ":2379",
		"--listen-peer-urls", "http://0.0.0.0:2380", "--initial-advertise-peer-urls", "http://" + name + ":2380",
		"--initial-cluster", c.Initial, "--initial-cluster-token", c.Token, "--initial-cluster-state", "new",
		"--log-level", "warn",
	}, extra...)
	ctr := startContainer(ctx, t, "etcd "+name, testcontainers.ContainerRequest{
		Image:              img,
		Entrypoint:         []string{etcdBin},
		Cmd:                args,
		ExposedPorts:       []string{etcdClientPort},
		HostConfigModifier: loopbackPorts(etcdClientPort),
		Networks:           nets,
		NetworkAliases:     aliases,
		Labels:             labels(t),
	})
	m := &EtcdMember{Container: ctr, Name: name, ClientURL: "http://" + name + ":2379"}
	if err := m.hostURL(ctx); err != nil {
		t.Fatalf("containers.StartEtcdMember(%q): %v", name, err)
	}
	return m
}

func (m *EtcdMember) hostURL(ctx context.Context) error {
	a, err := hostAddr(ctx, m.Container, etcdClientPort)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	m.HostURL = "http://" + a
	return nil
}

// EtcdStatus is what a member's /health and /v3/maintenance/status say.
type EtcdStatus struct {
	Healthy bool
	// Leader and ID are member IDs: the member leads when they are equal.
	Leader, ID uint64
}

// Status asks the member, through HostURL, whether it is healthy (it has
// a leader and serves a linearizable read) and who leads.
func (m *EtcdMember) Status(ctx context.Context) (EtcdStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var st EtcdStatus
	var h struct {
		Health string `json:"health"`
	}
	if err := etcdJSON(ctx, http.MethodGet, m.HostURL+"/health", &h); err != nil {
		return st, fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	st.Healthy = h.Health == "true"
	var s struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	if err := etcdJSON(ctx, http.MethodPost, m.HostURL+"/v3/maintenance/status", &s); err != nil {
		return st, fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	// The gRPC gateway writes uint64s as decimal strings.
	if _, err := fmt.Sscan(s.Header.MemberID, &st.ID); err != nil {
		return st, fmt.Errorf("etcd %s: member_id %q: %w", m.Name, s.Header.MemberID, err)
	}
	if s.Leader != "" {
		if _, err := fmt.Sscan(s.Leader, &st.Leader); err != nil {
			return st, fmt.Errorf("etcd %s: leader %q: %w", m.Name, s.Leader, err)
		}
	}
	return st, nil
}

// etcdClient keeps no idle connections: a caller's goroutines end with
// its requests.
var etcdClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func etcdJSON(ctx context.Context, method, url string, out any) error {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	resp, err := etcdClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// WaitHealthy waits until every member says it is healthy, at most
// ReadyTimeout.
func WaitHealthy(ctx context.Context, members ...*EtcdMember) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		var last error
		ok := 0
		for _, m := range members {
			st, err := m.Status(ctx)
			switch {
			case err != nil:
				last = err
			case !st.Healthy:
				last = fmt.Errorf("etcd %s: not healthy", m.Name)
			default:
				ok++
			}
		}
		if ok == len(members) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster not healthy: %v", last)
		case <-tick.C:
		}
	}
}

// Kill sends SIGKILL and waits until the container has stopped; its data
// stays.
func (m *EtcdMember) Kill(ctx context.Context) error {
	if err := kill(ctx, m.Container); err != nil {
		return fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	return nil
}

// Start starts the killed member again on its data (the cluster state is
// then "existing": etcd reads it from the data dir, and ignores the flag)
// and updates HostURL.
func (m *EtcdMember) Start(ctx context.Context) error {
	if err := m.Container.Start(ctx); err != nil {
		return fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	return m.hostURL(ctx)
}
