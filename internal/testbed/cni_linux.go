package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
)

// pluginPkgs are the CNI plugins a network uses, declared as tool
// dependencies in go.mod so that their versions are the module's.
var pluginPkgs = []string{
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
}

// pluginDir returns the directory holding the CNI plugin binaries, building
// them the first time it is called in this process.
var pluginDir = sync.OnceValues(buildPlugins)

// buildPlugins builds pluginPkgs with `go build` into a temporary directory
// and renames them into a cache directory shared by test processes. Building
// every process keeps the binaries at the versions in go.mod (the Go build
// cache makes it a link step); renaming makes the switch atomic for another
// process that is running the old ones.
func buildPlugins() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "rustynet", "testbed", "cni")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cni plugin dir: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("cni plugin dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	goCmd, err := goCommand()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"build", "-o", tmp + "/"}, pluginPkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cni plugins: %w\n%s", err, out)
	}
	for _, pkg := range pluginPkgs {
		name := path.Base(pkg)
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("install cni plugin %s: %w", name, err)
		}
	}
	return dir, nil
}

// goCommand finds the go command: on PATH, or in GOROOT.
func goCommand() (string, error) {
	p, err := exec.LookPath("go")
	if err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("build cni plugins: go command not found: %w", err)
}

// switchExec runs CNI plugins with the switch namespace as their own, so the
// bridge plugin creates the bridge and the host ends of the veths there and
// not in the root namespace. The plugin is started by libcni's RawExec from
// an OS thread locked into the switch namespace: namespaces are per thread,
// and fork/exec clones the calling thread, so the plugin process starts in
// the switch (and so does the IPAM plugin it runs in turn).
type switchExec struct {
	nsPath string
	raw    invoke.RawExec
	version.PluginDecoder
}

var _ invoke.Exec = (*switchExec)(nil)

func (e *switchExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var out []byte
	err := ns.WithNetNSPath(e.nsPath, func(ns.NetNS) error {
		var err error
		out, err = e.raw.ExecPlugin(ctx, pluginPath, stdin, environ)
		return err
	})
	return out, err
}

func (e *switchExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Bridge is the name of the bridge in a network's switch namespace.
const Bridge = "br0"

// bridgeConf is the CNI configuration of a network: an L2 bridge without a
// gateway address, masquerading or routes, and host-local addresses from
// subnet with its state in dataDir.
func bridgeConf(name string, subnet netip.Prefix, mtu int, dataDir string) (*libcni.PluginConfig, error) {
	type rangeConf struct {
		Subnet string `json:"subnet"`
	}
	conf := map[string]any{
		"cniVersion":  "1.0.0",
		"name":        name,
		"type":        "bridge",
		"bridge":      Bridge,
		"isGateway":   false,
		"ipMasq":      false,
		"hairpinMode": false,
		"mtu":         mtu,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]rangeConf{{{Subnet: subnet.String()}}},
			"dataDir": dataDir,
		},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	return libcni.NetworkPluginConfFromBytes(b)
}
