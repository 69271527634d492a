package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"sync"
)

// jsonLog writes one JSON line per record to a drill's log (the probe
// log, the netmap log). Lines are whole even from concurrent writers; a
// failed write is logged once, and later records are dropped, not retried.
type jsonLog struct {
	name   string // "probe log", for the error
	w      io.Writer
	mu     sync.Mutex
	failed bool
}

func newJSONLog(name string, w io.Writer) *jsonLog {
	if w == nil {
		return nil
	}
	return &jsonLog{name: name, w: w}
}

// write appends v; a nil log writes nothing.
func (l *jsonLog) write(log *slog.Logger, v any) {
	if l == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return // the record types always marshal
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed {
		return
	}
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		l.failed = true
		log.Error("writing the "+l.name+"; later records are not logged", "err", err)
	}
}
