package incident

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/internal/testbed"
)

// controllerPort is the port a mesh's controller serves its node API on.
const controllerPort = "8443"

// fault is one drill's injected fault: how the mesh is set up for it, how
// it is injected, what the runbook's script is told, and how the harness
// undoes it when the script failed.
type fault struct {
	s    *Scenario
	work string
	mesh *testbed.Mesh

	filler  string     // fill-disk: the file that fills the disk
	certDir string     // expiring-certificate: the operator's CA and pair
	rules   [][]string // drop-traffic: the iptables rules added
	addr    netip.Addr // expiring-certificate: the controller's address

	cgroup string // throttle-controller: the controller's cpu cgroup
}

func newFault(s *Scenario, work string) (*fault, error) {
	f := &fault{s: s, work: work}
	if s.Fault.Kind == ExpiringCertificate {
		f.certDir = filepath.Join(work, "operator-tls")
		if err := os.MkdirAll(f.certDir, 0o700); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// configure sets up the mesh the fault needs.
func (f *fault) configure(cfg *testbed.MeshConfig) {
	switch f.s.Fault.Kind {
	case FillDisk:
		cfg.DataDirBytes = f.s.Fault.DiskBytes
	case ExpiringCertificate:
		cfg.ControllerCert = func(addr netip.Addr) (string, string, string, error) {
			return f.operatorCert(addr)
		}
	}
}

func (f *fault) node() *testbed.MeshNode { return f.mesh.Nodes()[f.s.Fault.Node-1] }

func (f *fault) describe() string {
	ft := f.s.Fault
	switch ft.Kind {
	case KillController:
		return "SIGKILL to the controller's process"
	case DropTraffic:
		if ft.Traffic == "control" {
			return fmt.Sprintf("iptables in node %d's namespace drops its TCP to the controller's port %s", ft.Node, controllerPort)
		}
		return fmt.Sprintf("iptables in node %d's namespace drops all its UDP, in and out (the tunnel's transport)", ft.Node)
	case FillDisk:
		return fmt.Sprintf("a file fills the %d MiB tmpfs the controller's data directory is on", ft.DiskBytes>>20)
	case ExpiringCertificate:
		return fmt.Sprintf("the controller's operator certificate is replaced by one that expires in %v", ft.ExpiresIn.D)
	case ThrottleController:
		return fmt.Sprintf("the controller's process is held to %g%% of one CPU (a CFS quota of its cgroup, period %v)", ft.CPUPercent, cpuPeriod)
	}
	return ft.Kind
}

func (f *fault) inject(ctx context.Context) error {
	ft := f.s.Fault
	switch ft.Kind {
	case KillController:
		f.mesh.Controller().Kill()
		return nil
	case DropTraffic:
		if ft.Traffic == "control" {
			f.rules = [][]string{{"OUTPUT", "-p", "tcp", "--dport", controllerPort, "-j", "DROP"}}
		} else {
			f.rules = [][]string{{"OUTPUT", "-p", "udp", "-j", "DROP"}, {"INPUT", "-p", "udp", "-j", "DROP"}}
		}
		for _, r := range f.rules {
			if out, err := f.node().Host().Command(ctx, "iptables", append([]string{"-w", "-A"}, r...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables -A %s: %v %s", strings.Join(r, " "), err, out)
			}
		}
		return nil
	case FillDisk:
		return f.fill()
	case ExpiringCertificate:
		return f.issue(ft.ExpiresIn.D)
	case ThrottleController:
		return f.startThrottle()
	}
	return fmt.Errorf("unknown fault %q", ft.Kind)
}

// scriptEnv is what the runbook's script is told, as the on-call engineer
// would know it: the controller's address, how to restart it, what may be
// deleted, how the certificate is renewed.
func (f *fault) scriptEnv(restartURL string) []string {
	u := f.mesh.ControllerURL()
	env := []string{
		"CONTROLLER_URL=" + u,
		"CONTROLLER_ADDR=" + strings.TrimPrefix(u, "https://"),
		"CONTROLLER_PORT=" + controllerPort,
		"CONTROLLER_RESTART=curl -fsS -X POST " + restartURL,
	}
	switch f.s.Fault.Kind {
	case FillDisk:
		env = append(env, "RECLAIMABLE="+f.filler)
	case ExpiringCertificate:
		env = append(env, "CERT_RENEW=sh "+filepath.Join(f.certDir, "renew.sh"))
	case ThrottleController:
		env = append(env, "CONTROLLER_CGROUP="+f.cgroup)
	}
	return env
}

// restore undoes the fault from the harness, after a mitigation that
// failed, so that the mesh tears down cleanly.
func (f *fault) restore(ctx context.Context) {
	switch f.s.Fault.Kind {
	case ThrottleController:
		f.unthrottle()
	case KillController:
		if p := f.mesh.Controller(); p == nil || p.Exited() {
			f.mesh.StartController(ctx)
		}
	case DropTraffic:
		for _, r := range f.rules {
			f.node().Host().Command(ctx, "iptables", append([]string{"-w", "-D"}, r...)...).Run()
		}
	case FillDisk:
		os.Remove(f.filler)
	}
}

func (f *fault) cleanup() {
	if f.cgroup != "" {
		// Move anything left back to the root group, then remove it.
		if pids, err := os.ReadFile(filepath.Join(f.cgroup, "cgroup.procs")); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				os.WriteFile(filepath.Join(filepath.Dir(f.cgroup), "cgroup.procs"), []byte(p), 0)
			}
		}
		os.Remove(f.cgroup)
	}
}

// fill writes a file into the controller's data directory until the disk
// is full.
func (f *fault) fill() error {
	f.filler = filepath.Join(f.mesh.DataDir(), "reclaimable.fill")
	fh, err := os.OpenFile(f.filler, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for range 1 << 12 {
		if _, err := fh.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return errors.New("4 GiB written and the disk is not full: is the data directory on its tmpfs?")
}

// operatorCert creates the operator's CA and a 90-day certificate for the
// controller's address, and the renewal script (openssl, as an operator's
// own CA tooling might run) the runbook's CERT_RENEW runs.
func (f *fault) operatorCert(addr netip.Addr) (certFile, keyFile, caFile string, err error) {
	d := f.certDir
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Drill operator CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		return "", "", "", err
	}
	if err := writePEM(filepath.Join(d, "ca.pem"), "CERTIFICATE", der, 0o644); err != nil {
		return "", "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return "", "", "", err
	}
	if err := writePEM(filepath.Join(d, "ca.key"), "PRIVATE KEY", kder, 0o600); err != nil {
		return "", "", "", err
	}
	f.addr = addr
	if err := f.issue(90 * 24 * time.Hour); err != nil {
		return "", "", "", err
	}
	renew := fmt.Sprintf(`set -eu
# The drill's stand-in for the operator's renewal (certbot renew, or a
# corporate CA's tooling): a new key and a 90-day certificate from the
# operator's CA, written beside the old and renamed over it.
cd %q
printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' > ext.cnf
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key.new -subj /CN=rustynet-controller -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 -extfile ext.cnf -out server.pem.new 2>/dev/null
chmod 600 server.key.new
mv server.key.new server.key
mv server.pem.new server.pem
`, d, addr)
	if err := os.WriteFile(filepath.Join(d, "renew.sh"), []byte(renew), 0o700); err != nil {
		return "", "", "", err
	}
	return filepath.Join(d, "server.pem"), filepath.Join(d, "server.key"), filepath.Join(d, "ca.pem"), nil
}

// issue writes a new server key and certificate from the operator's CA,
// valid for validity, over the current pair (key first, each renamed
// into place).
func (f *fault) issue(validity time.Duration) error {
	d := f.certDir
	caCert, caKey, err := loadCA(d)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "rustynet-controller"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity), IPAddresses: []net.IP{f.addr.AsSlice()},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(d, "server.key"), "PRIVATE KEY", kder, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(d, "server.pem"), "CERTIFICATE", der, 0o644)
}

func loadCA(d string) (*x509.Certificate, any, error) {
	cp, err := os.ReadFile(filepath.Join(d, "ca.pem"))
	if err != nil {
		return nil, nil, err
	}
	kp, err := os.ReadFile(filepath.Join(d, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(cp)
	kb, _ := pem.Decode(kp)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("the operator CA's files hold no PEM")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	return c, k, err
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cpuPeriod is the CFS period of throttle-controller's quota.
const cpuPeriod = 100 * time.Millisecond

// startThrottle moves the controller into a cpu cgroup of its own with a
// CFS quota of CPUPercent of one CPU: cgroup v2's cpu.max where the cpu
// controller is available, else v1's cpu hierarchy.
func (f *fault) startThrottle() error {
	quota := int64(float64(cpuPeriod.Microseconds()) * f.s.Fault.CPUPercent / 100)
	name := "rustynet-drill-" + f.s.Name + "-" + strconv.Itoa(os.Getpid())
	var file, value string
	if ctrls, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(ctrls)), "cpu") {
		f.cgroup = filepath.Join("/sys/fs/cgroup", name)
		file, value = "cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod.Microseconds())
	} else if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		f.cgroup = filepath.Join("/sys/fs/cgroup/cpu", name)
		file, value = "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)
	} else {
		return errors.New("no cgroup cpu controller (neither cgroup v2's cpu nor v1's cpu hierarchy)")
	}
	if err := os.Mkdir(f.cgroup, 0o755); err != nil {
		return err
	}
	if file == "cpu.cfs_quota_us" {
		if err := os.WriteFile(filepath.Join(f.cgroup, "cpu.cfs_period_us"), []byte(strconv.FormatInt(cpuPeriod.Microseconds(), 10)), 0); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(f.cgroup, file), []byte(value), 0); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := os.WriteFile(filepath.Join(f.cgroup, "cgroup.procs"), []byte(strconv.Itoa(f.mesh.Controller().Pid())), 0); err != nil {
		return fmt.Errorf("move the controller into %s: %w", f.cgroup, err)
	}
	return nil
}

// unthrottle lifts the quota, as the runbook's script does.
func (f *fault) unthrottle() {
	if f.cgroup == "" {
		return
	}
	os.WriteFile(filepath.Join(f.cgroup, "cpu.max"), []byte("max"), 0)
	os.WriteFile(filepath.Join(f.cgroup, "cpu.cfs_quota_us"), []byte("-1"), 0)
}
