package containers

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// Attachment is a network a container joins, and its aliases there.
type Attachment struct {
	Network *Network
	Aliases []string
}

// Process is a container of one static binary (Bin, put at /NAME of the
// image, NAME being the binary's base name), run with Args.
type Process struct {
	// What names the container in logs and errors; Image names its image.
	What, Image string
	Bin         string
	Args        []string
	Networks    []Attachment
	// Files are copied in before it starts: path in the container to
	// contents (mode 0600).
	Files map[string][]byte
}

// Proc is a running Process.
type Proc struct {
	Container testcontainers.Container
	What      string
}

// StartProcess starts p and returns once the container runs (a process
// that serves something waits for it itself). The container is removed
// when t ends.
func StartProcess(ctx context.Context, t T, p Process) *Proc {
	t.Helper()
	bin := "/" + path.Base(p.Bin)
	img := Image(t, p.Image, map[string]string{bin: p.Bin})
	var nets []string
	aliases := map[string][]string{}
	for _, a := range p.Networks {
		nets = append(nets, a.Network.Name)
		aliases[a.Network.Name] = a.Aliases
	}
	var files []testcontainers.ContainerFile
	for name, data := range p.Files {
		files = append(files, testcontainers.ContainerFile{Reader: bytes.NewReader(data), ContainerFilePath: name, FileMode: 0o600})
	}
	ctr := startContainer(ctx, t, p.What, testcontainers.ContainerRequest{
		Image:          img,
		Entrypoint:     []string{bin},
		Cmd:            p.Args,
		Networks:       nets,
		NetworkAliases: aliases,
		Labels:         labels(t),
		Files:          files,
	})
	return &Proc{Container: ctr, What: p.What}
}

// Kill sends SIGKILL and waits until the container has stopped.
func (p *Proc) Kill(ctx context.Context) error {
	if err := kill(ctx, p.Container); err != nil {
		return fmt.Errorf("%s: %w", p.What, err)
	}
	return nil
}

// Wait waits until the process exits, at most until ctx ends, and
// returns its exit code.
func (p *Proc) Wait(ctx context.Context) (int, error) {
	for {
		st, err := p.Container.State(ctx)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.What, err)
		}
		if !st.Running {
			return st.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s still running: %w", p.What, context.Cause(ctx))
		case <-time.After(pollInterval):
		}
	}
}

// Logs returns what the process wrote to stdout and stderr.
func (p *Proc) Logs(ctx context.Context) (string, error) { return Logs(ctx, p.Container) }
