package cryptopolicy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a daemon has to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// daemon is a process a probe started; its output goes to the log.
type daemon struct {
	cancel context.CancelFunc
	out    *lineLog
	done   chan struct{} // closed when the process has exited
	status string        // how it exited, once done is closed
	once   sync.Once
}

// startDaemon runs bin with args and env added to this process's
// environment; its output goes to log, each line prefixed with name. The
// daemon is stopped by stop, or when ctx ends.
func startDaemon(ctx context.Context, log io.Writer, name string, env []string, bin string, args ...string) (*daemon, error) {
	dctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(dctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	out := &lineLog{log: log, prefix: name}
	cmd.Stdout, cmd.Stderr = out, out
	fmt.Fprintf(log, "$ %s %v\n", bin, args)
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{cancel: cancel, out: out, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		d.status = exitStatus(cmd.ProcessState, err)
		close(d.done)
	}()
	return d, nil
}

// stop sends SIGTERM, kills the daemon if it has not exited after
// stopGrace, and waits for it; its exit status goes to the log.
func (d *daemon) stop() {
	d.once.Do(func() {
		d.cancel()
		<-d.done
		fmt.Fprintf(d.out.log, "%s stopped: %s\n", d.out.prefix, d.status)
	})
}

// exitStatus says how a process exited (a clean exit after SIGTERM is
// "exit status 0", though Wait reports the cancelled context), or why it
// could not be waited for.
func exitStatus(ps *os.ProcessState, err error) string {
	if ps != nil {
		return ps.String()
	}
	return fmt.Sprint(err)
}

// lineLog copies a process's output to a log a line at a time, with a
// prefix. Only the exec package's copying goroutine writes to it.
type lineLog struct {
	log    io.Writer
	prefix string
	buf    []byte
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // no newline in sight: keep the log bounded
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineLog) line(b []byte) {
	fmt.Fprintf(w.log, "%s: %s\n", w.prefix, b)
}
