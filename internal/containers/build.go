package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Main packages of the module that run in containers.
const (
	ControllerPackage = "github.com/rustynet/rustynet/cmd/rustynet-controller"
	DaemonPackage     = "github.com/rustynet/rustynet/cmd/rustynetd"
	CLIPackage        = "github.com/rustynet/rustynet/cmd/rustynet"
)

// ImageRepoPrefix starts the reference of every image Image builds.
const ImageRepoPrefix = "rustynet-test/"

// once is a result computed once per process and shared by every caller,
// failures included.
type once struct {
	sync.Once
	val string
	err error
}

func (o *once) do(f func() (string, error)) (string, error) {
	o.Do(func() { o.val, o.err = f() })
	return o.val, o.err
}

var (
	binaries sync.Map // package path -> *once
	images   sync.Map // image reference -> *once
)

// Binary builds the main package pkg of this module (e.g.
// ControllerPackage) for linux as a static binary (CGO_ENABLED=0, -trimpath,
// stripped) and returns its path. It builds each package once per test
// process; the binary lives in the user's cache directory, one per package,
// replaced atomically by each build.
func Binary(t T, pkg string) string {
	t.Helper()
	v, _ := binaries.LoadOrStore(pkg, new(once))
	p, err := v.(*once).do(func() (string, error) { return goBuild(pkg) })
	if err != nil {
		t.Fatalf("containers.Binary(%q): %v", pkg, err)
	}
	return p
}

func goBuild(pkg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	dir := filepath.Join(cacheDir(), "bin", shortHash([]byte(strings.TrimSpace(string(gomod))+"\n"+pkg), 16))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	name := path.Base(pkg)
	out := filepath.Join(tmp, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, output)
	}
	if err := checkStatic(out); err != nil {
		return "", err
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(out, final); err != nil {
		return "", err
	}
	return final, nil
}

// checkStatic makes sure the binary needs no dynamic loader, which a
// scratch image does not have.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("check %s: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", file)
		}
	}
	return nil
}

func cacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "rustynet", "containers")
}

func shortHash(b []byte, n int) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:n]
}

// dockerfile builds every image: the build context's rootfs is the image.
const dockerfile = "FROM scratch\nCOPY rootfs/ /\n"

// Directories every image has, with their modes. A scratch image has none.
var imageDirs = map[string]int64{"/tmp": 0o1777, "/data": 0o700}

var imageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Image returns the reference of an image FROM scratch that holds the given
// files (path in the image -> path on the host, e.g. "/rustynet-controller"
// -> Binary(t, ControllerPackage)), with the host files' permissions, plus
// empty /tmp and /data directories. The reference is
// ImageRepoPrefix+name+":"+a hash of the contents, so the image is built
// once per process per set of inputs, and not at all when the Docker engine
// already has it.
func Image(t T, name string, files map[string]string) string {
	t.Helper()
	setup(t)
	ref, err := image(name, files)
	if err != nil {
		t.Fatalf("containers.Image(%q): %v", name, err)
	}
	return ref
}

type imageFile struct {
	path string // in the image
	mode int64
	data []byte
}

func image(name string, files map[string]string) (string, error) {
	if !imageNameRE.MatchString(name) {
		return "", fmt.Errorf("image name %q: want lowercase letters, digits and dashes", name)
	}
	var content []imageFile
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || imageDirs[p] != 0 {
			return "", fmt.Errorf("path in image %q: want a clean absolute path of a file", p)
		}
		fi, err := os.Stat(files[p])
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", files[p])
		}
		data, err := os.ReadFile(files[p])
		if err != nil {
			return "", err
		}
		content = append(content, imageFile{path: p, mode: int64(fi.Mode().Perm()), data: data})
	}

	h := sha256.New()
	h.Write([]byte(dockerfile))
	for _, d := range slices.Sorted(maps.Keys(imageDirs)) {
		fmt.Fprintf(h, "dir %s %o\n", d, imageDirs[d])
	}
	for _, f := range content {
		fmt.Fprintf(h, "file %s %o %d\n", f.path, f.mode, len(f.data))
		h.Write(f.data)
	}
	repo := ImageRepoPrefix + name
	ref := repo + ":" + hex.EncodeToString(h.Sum(nil))[:24]

	v, _ := images.LoadOrStore(ref, new(once))
	return v.(*once).do(func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		defer provider.Close() // its idle connections; the provider stays usable
		if _, err := provider.Client().ImageInspect(ctx, ref); err == nil {
			return ref, nil
		}
		archive, err := buildContext(content)
		if err != nil {
			return "", err
		}
		var log bytes.Buffer
		req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
			ContextArchive: bytes.NewReader(archive),
			Repo:           repo,
			Tag:            strings.TrimPrefix(ref, repo+":"),
			KeepImage:      true,
			BuildLogWriter: &log,
			BuildOptionsModifier: func(o *client.ImageBuildOptions) {
				o.Labels = map[string]string{LabelImage: name}
			},
		}}
		built, err := provider.BuildImage(ctx, req)
		if err != nil {
			return "", fmt.Errorf("docker build: %w\n%s", err, log.Bytes())
		}
		if built != ref {
			return "", fmt.Errorf("docker build tagged %s, want %s", built, ref)
		}
		return ref, nil
	})
}

// buildContext returns the tar of the build context: the Dockerfile and
// rootfs/ with the image's directories and files, owned by root.
func buildContext(files []imageFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	write := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}, []byte(dockerfile)); err != nil {
		return nil, err
	}
	dirs := map[string]int64{"/": 0o755}
	maps.Copy(dirs, imageDirs)
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := write(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs" + strings.TrimSuffix(d, "/") + "/", Mode: dirs[d]}, nil); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: "rootfs" + f.path, Mode: f.mode, Size: int64(len(f.data))}, f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
