// Package daemon runs one of Rustynet's daemons as a child process (in a
// network namespace when the caller builds the command that way), waits
// until it logs that it is ready, keeps its log, and stops it cleanly:
// what the gates and the benchmark matrix need of a controller or a node.
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/rustynet/rustynet/internal/proc"
	"github.com/rustynet/rustynet/internal/readyfile"
)

// Process is a running daemon.
type Process struct {
	Cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// StartReady starts cmd (whose stderr must be unset: the log is read from
// it), a daemon given --ready-file readyFile, and waits up to timeout for
// it to write that file (internal/readyfile). It returns what the file
// says.
func StartReady(ctx context.Context, cmd *exec.Cmd, readyFile string, timeout time.Duration) (*Process, *readyfile.Info, error) {
	os.Remove(readyFile) // a file left by an earlier run says nothing of this one
	p, _, err := Start(ctx, cmd, nil, timeout)
	if err != nil {
		return nil, nil, err
	}
	info, err := readyfile.Wait(ctx, readyFile, p.done, timeout)
	if err != nil {
		if !p.Exited() {
			p.Kill()
		}
		return nil, nil, fmt.Errorf("%s: %w\n%s", cmd.Path, err, p.Logs())
	}
	return p, info, nil
}

// Start starts cmd (whose stderr must be unset: the log is read from it)
// and, given ready, waits up to timeout for a log line matching it. It
// returns the submatches of that line. Prefer StartReady: log lines are
// for people, and their wording may change.
func Start(ctx context.Context, cmd *exec.Cmd, ready *regexp.Regexp, timeout time.Duration) (*Process, []string, error) {
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if cmd.Stdout == nil {
		cmd.Stdout = pw
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	go func() { p.err = cmd.Wait(); pw.Close(); close(p.done) }()
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.logs.Len() < 32<<20 {
				p.logs.WriteString(line + "\n")
			}
			p.mu.Unlock()
			if ready != nil {
				if m := ready.FindStringSubmatch(line); m != nil {
					select {
					case found <- m:
					default:
					}
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if ready == nil {
		return p, nil, nil
	}
	select {
	case m := <-found:
		return p, m, nil
	case <-p.done:
		return nil, nil, fmt.Errorf("%s exited before it was ready: %v\n%s", cmd.Path, p.err, p.Logs())
	case <-time.After(timeout):
		p.Kill()
		return nil, nil, fmt.Errorf("%s was not ready within %v\n%s", cmd.Path, timeout, p.Logs())
	case <-ctx.Done():
		p.Kill()
		return nil, nil, ctx.Err()
	}
}

// Logs returns what the daemon has logged.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Pid is the daemon's process ID.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Stop sends SIGTERM and waits up to grace for a clean exit, then kills.
// It returns the exit error of a daemon that did not exit cleanly.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return errors.New("did not exit within the grace period after SIGTERM; killed")
	}
}

// Kill kills the daemon and waits for it.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the daemon has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// CPU returns the CPU time the daemon has used.
func (p *Process) CPU() (time.Duration, error) { return proc.CPUTime(p.Pid()) }

// Memory returns the daemon's resident set size and its peak, in bytes.
func (p *Process) Memory() (rss, peak int64, err error) { return proc.Memory(p.Pid()) }
