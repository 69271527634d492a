package pathbench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// refMain is the reference daemon: what upstream wireguard-go's main does
// in the foreground (a kernel TUN of device.DefaultMTU, the default UDP
// bind, the UAPI socket that `wg` talks to), importing the upstream
// packages unpatched, with one addition: given REFWG_PPROF_LISTEN (a
// loopback address), it serves net/http/pprof there, so that its CPU can be
// profiled the way rustynetd's --debug-pprof-listen is.
const refMain = `package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "refwg: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fatal("usage: refwg INTERFACE")
	}
	name := os.Args[1]
	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		fatal("create TUN: %v", err)
	}
	logger := device.NewLogger(device.LogLevelError, fmt.Sprintf("(%s) ", name))
	fileUAPI, err := ipc.UAPIOpen(name)
	if err != nil {
		fatal("UAPI open: %v", err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), logger)
	uapi, err := ipc.UAPIListen(name, fileUAPI)
	if err != nil {
		fatal("UAPI listen: %v", err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	if addr := os.Getenv("REFWG_PPROF_LISTEN"); addr != "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().IsLoopback() {
			fatal("REFWG_PPROF_LISTEN %q: want a loopback address and port", addr)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fatal("pprof: %v", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go http.Serve(ln, mux)
	}
	fmt.Fprintf(os.Stderr, "refwg: %s up\n", name)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	select {
	case <-term:
	case <-dev.Wait():
	}
	uapi.Close()
	dev.Close()
}
`

// WireGuardVersion is the version of golang.zx2c4.com/wireguard that the
// module's go.mod requires (its replace aside), asked of the go command
// run in dir, a directory of the module.
func WireGuardVersion(dir string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "golang.zx2c4.com/wireguard")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m golang.zx2c4.com/wireguard: %w", err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("go.mod names no version of golang.zx2c4.com/wireguard")
	}
	return v, nil
}

// BuildReference builds the reference daemon (refMain) against the
// upstream golang.zx2c4.com/wireguard at version, unpatched, in a scratch
// module under dir (fetched through the Go module proxy, no replace),
// statically (CGO off). It returns the binary and `go version -m`'s line
// for the wireguard module, which shows where its code came from.
func BuildReference(dir, version string) (bin, dep string, err error) {
	mod := filepath.Join(dir, "refwg")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return "", "", err
	}
	gomod := "module refwg\n\ngo 1.24\n\nrequire golang.zx2c4.com/wireguard " + version + "\n"
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte(refMain), 0o644); err != nil {
		return "", "", err
	}
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = mod, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	if _, err := run("mod", "tidy"); err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "refwg-bin")
	if _, err := run("build", "-trimpath", "-o", bin, "."); err != nil {
		return "", "", err
	}
	out, err := run("version", "-m", bin)
	if err != nil {
		return "", "", err
	}
	for line := range bytes.Lines(out) {
		f := strings.Fields(string(line))
		if len(f) >= 3 && f[0] == "dep" && f[1] == "golang.zx2c4.com/wireguard" {
			dep = strings.Join(f[1:], " ")
		}
		if len(f) >= 2 && f[0] == "=>" {
			return "", "", fmt.Errorf("the reference build has a replace: %s", line)
		}
	}
	if dep == "" || !strings.Contains(dep, version) {
		return "", "", fmt.Errorf("the reference build does not name golang.zx2c4.com/wireguard %s:\n%s", version, out)
	}
	return bin, dep, nil
}
