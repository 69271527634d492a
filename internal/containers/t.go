package containers

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"
)

// T is what the package needs of its caller: a test (testing.TB satisfies
// it), or a Drill, for a gate that runs containers outside go test. Every
// container and network is removed in a Cleanup of the T that made it.
type T interface {
	Helper()
	Name() string
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// printfLogger hands testcontainers-go's log lines to a T.
type printfLogger struct{ t T }

func (l printfLogger) Printf(format string, args ...any) { l.t.Logf(format, args...) }

// Drill is a T outside go test, for gates: Fatalf and FailNow end the
// function RunDrill runs, Cleanup functions run when it ends (last
// registered first), and every log line goes to a writer with the time
// since the drill began.
type Drill struct {
	name  string
	start time.Time
	mu    sync.Mutex
	log   io.Writer
	errs  []string
	fns   []func()
}

// fatal is the panic Fatalf ends a drill's function with.
type fatal struct{}

// RunDrill runs fn as the T named name, logging to log, and returns an
// error made of every Errorf and Fatalf (nil when there was none), after
// the cleanups have run. A panic of fn other than Fatalf's is an error
// too, with its stack, not a crash of the caller.
func RunDrill(name string, log io.Writer, fn func(t *Drill)) (err error) {
	d := &Drill{name: name, start: time.Now(), log: log}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					buf := make([]byte, 16<<10)
					buf = buf[:runtime.Stack(buf, false)]
					d.record(fmt.Sprintf("panic: %v\n%s", r, buf))
				}
			}
		}()
		fn(d)
	}()
	d.runCleanups()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.errs) > 0 {
		return errors.New(strings.Join(d.errs, "; "))
	}
	return nil
}

func (d *Drill) runCleanups() {
	for {
		d.mu.Lock()
		if len(d.fns) == 0 {
			d.mu.Unlock()
			return
		}
		fn := d.fns[len(d.fns)-1]
		d.fns = d.fns[:len(d.fns)-1]
		d.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(fatal); !ok {
						d.record(fmt.Sprintf("panic in cleanup: %v", r))
					}
				}
			}()
			fn()
		}()
	}
}

func (d *Drill) record(msg string) {
	d.mu.Lock()
	d.errs = append(d.errs, msg)
	d.mu.Unlock()
	d.Logf("%s", msg)
}

// Helper implements T; it does nothing.
func (d *Drill) Helper() {}

// Name implements T.
func (d *Drill) Name() string { return d.name }

// Cleanup implements T.
func (d *Drill) Cleanup(fn func()) {
	d.mu.Lock()
	d.fns = append(d.fns, fn)
	d.mu.Unlock()
}

// Failed implements T.
func (d *Drill) Failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.errs) > 0
}

// Logf implements T.
func (d *Drill) Logf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.log, "%8.3fs %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// Errorf implements T: the drill goes on, and fails.
func (d *Drill) Errorf(format string, args ...any) { d.record(fmt.Sprintf(format, args...)) }

// Fatalf implements T: the drill fails and its function ends; call it
// only from the goroutine RunDrill runs fn on, as with testing.T.
func (d *Drill) Fatalf(format string, args ...any) {
	d.record(fmt.Sprintf(format, args...))
	panic(fatal{})
}
