// Package cryptopolicy is the crypto-policy gate. It holds the product to
// policies/crypto.yaml three ways:
//
//   - the code: every crypto package the module's packages import directly
//     must be mapped to an algorithm of the policy, and none may be
//     removed (a deprecated one is reported);
//   - the insecure modes: the code's list (internal/insecure) and the
//     policy's must agree, all off by default, and exceptions are reported
//     with their expiry;
//   - the effective configuration of the built controller: it must refuse
//     TLS 1.2 by default and with a lapsed exception, negotiate the hybrid
//     X25519MLKEM768 key exchange with a client that offers it, and present
//     an ECDSA P-256 certificate.
package cryptopolicy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rustynet/rustynet/gates"
	"github.com/rustynet/rustynet/internal/arch"
	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/policies"
)

// PolicyFile is the crypto policy, relative to the repository root.
const PolicyFile = "policies/crypto.yaml"

// Register adds the crypto-policy gate.
func Register(r *gates.Registry) {
	r.Register(gates.Spec{
		Name:     "crypto-policy",
		Owner:    "security",
		Timeout:  10 * time.Minute,
		Channels: gates.Channels,
		Needs:    []gates.Need{gates.NeedGo},
		Run:      run,
	})
}

// finding is one check's outcome.
type finding struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func run(ctx context.Context, r *gates.Run) error {
	now := time.Now()
	pol, err := policies.LoadCrypto(filepath.Join(r.Root, PolicyFile))
	if err == nil {
		err = pol.CheckHorizon(now)
	}
	if err != nil {
		// The gate cannot judge without its policy: it could not run.
		return fmt.Errorf("crypto policy: %w", err)
	}
	var fs []finding
	add := func(check string, ok bool, format string, a ...any) {
		f := finding{Check: check, OK: ok, Detail: fmt.Sprintf(format, a...)}
		fs = append(fs, f)
		mark := "ok  "
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(r.Log, "%s %s: %s\n", mark, check, f.Detail)
	}

	// The code.
	pkgs, err := arch.List(r.Root, "./...")
	if err != nil {
		return err
	}
	users := map[string][]string{}
	for _, p := range pkgs {
		if !strings.HasPrefix(p.ImportPath, arch.Module) {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "crypto" || strings.HasPrefix(imp, "crypto/") || strings.HasPrefix(imp, "golang.org/x/crypto/") {
				users[imp] = append(users[imp], strings.TrimPrefix(p.ImportPath, arch.Module+"/"))
			}
		}
	}
	imports := make([]string, 0, len(users))
	for imp := range users {
		imports = append(imports, imp)
	}
	sort.Strings(imports)
	for _, imp := range imports {
		a, ok := pol.AlgorithmFor(imp)
		if !ok {
			add("code", false, "%s is imported (by %s) but %s maps it to no algorithm", imp, strings.Join(users[imp], ", "), PolicyFile)
			continue
		}
		switch st := a.StatusAt(now); st {
		case policies.Removed:
			add("code", false, "%s (%s) is imported by %s but was removed on %s", imp, a.Name.Value, strings.Join(users[imp], ", "), a.Since.Format(time.DateOnly))
		case policies.Deprecated:
			add("code", true, "%s (%s) is deprecated from %s; imported by %s", imp, a.Name.Value, a.Since.Format(time.DateOnly), strings.Join(users[imp], ", "))
		default:
			add("code", true, "%s (%s) allowed", imp, a.Name.Value)
		}
	}

	// The insecure modes.
	var code, policy []string
	for _, m := range insecure.Modes {
		code = append(code, m.Name)
	}
	for _, m := range pol.InsecureModes {
		policy = append(policy, m.Name.Value)
	}
	sort.Strings(code)
	sort.Strings(policy)
	add("insecure-modes", slices.Equal(code, policy), "the code has %v, the policy lists %v", code, policy)
	active, lapsed := pol.ActiveExceptions(now)
	for _, e := range active {
		add("insecure-modes", true, "exception for %s by %s in force until %s (%s)", e.Mode.Value, e.Owner.Value, e.Expires.Format(time.DateOnly), e.Reason.Value)
	}
	for _, e := range lapsed {
		add("insecure-modes", true, "exception for %s by %s lapsed on %s", e.Mode.Value, e.Owner.Value, e.Expires.Format(time.DateOnly))
	}

	// The built controller's effective configuration.
	bin := r.Binaries["rustynet-controller"]
	if bin == "" {
		return errors.New("no controller binary: the build gate did not run or failed")
	}
	if err := probeController(ctx, r, bin, "", add); err != nil {
		return err
	}
	lapsedEx := "controller-tls12@" + now.Add(-24*time.Hour).Format(time.DateOnly)
	if err := probeTLS12(ctx, r, bin, lapsedEx, false, add); err != nil {
		return err
	}
	validEx := "controller-tls12@" + now.Add(48*time.Hour).Format(time.DateOnly)
	if err := probeTLS12(ctx, r, bin, validEx, true, add); err != nil {
		return err
	}

	if err := r.ArtifactJSON("findings.json", fs); err != nil {
		return err
	}
	if err := r.Details(fs); err != nil {
		return err
	}
	var failed []string
	for _, f := range fs {
		if !f.OK {
			failed = append(failed, f.Check+": "+f.Detail)
		}
	}
	if len(failed) > 0 {
		return gates.Fail("%d findings against %s; first: %s", len(failed), PolicyFile, failed[0])
	}
	return nil
}

var listenRE = regexp.MustCompile(`msg="controller serving".* listen=(\S+)`)

// startController runs the controller binary with RUSTYNET_INSECURE=ex
// and returns its address and a stop function.
func startController(ctx context.Context, r *gates.Run, bin, ex string) (string, *x509.CertPool, func(), error) {
	dir, err := os.MkdirTemp(r.Work, "controller-")
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "")
	cmd.Env = append(os.Environ(), "RUSTYNET_INSECURE="+ex)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(r.Log, "controller: "+sc.Text())
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		pem, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
		if err != nil {
			stop()
			return "", nil, nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return addr, pool, stop, nil
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, nil, errors.New("the controller did not start within 30s")
	}
}

func probeController(ctx context.Context, r *gates.Run, bin, ex string, add func(string, bool, string, ...any)) error {
	addr, pool, stop, err := startController(ctx, r, bin, ex)
	if err != nil {
		return err
	}
	defer stop()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		c.Close()
	}
	add("controller", err != nil, "TLS 1.2 by default: %s", outcome(err))
	c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}})
	if err != nil {
		add("controller", false, "TLS 1.3 handshake failed: %v", err)
		return nil
	}
	st := c.ConnectionState()
	c.Close()
	add("controller", st.CurveID == tls.X25519MLKEM768, "key exchange with a client offering X25519MLKEM768: %s", st.CurveID)
	leaf := st.PeerCertificates[0]
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	add("controller", ok && pub.Curve == elliptic.P256(), "server certificate key: %s", keyDesc(leaf))
	return nil
}

func probeTLS12(ctx context.Context, r *gates.Run, bin, ex string, wantAccept bool, add func(string, bool, string, ...any)) error {
	addr, pool, stop, err := startController(ctx, r, bin, ex)
	if err != nil {
		return err
	}
	defer stop()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		c.Close()
	}
	add("controller", (err == nil) == wantAccept, "TLS 1.2 with RUSTYNET_INSECURE=%s: %s (want accepted=%v)", ex, outcome(err), wantAccept)
	return nil
}

func outcome(err error) string {
	if err == nil {
		return "accepted"
	}
	return "refused (" + err.Error() + ")"
}

func keyDesc(c *x509.Certificate) string {
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + k.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}
