// Package lockedbuf is a buffer that goroutines write to while another
// reads it: a daemon's log, captured by a test or a harness.
package lockedbuf

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose contents can be read while it is written
// to. The zero value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
