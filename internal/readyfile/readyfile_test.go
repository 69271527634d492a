package readyfile

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	go func() {
		time.Sleep(50 * time.Millisecond)
		Write(path, Info{PID: 7, API: "127.0.0.1:8443"})
	}()
	info, err := Wait(context.Background(), path, nil, 5*time.Second)
	if err != nil || info.PID != 7 || info.API != "127.0.0.1:8443" {
		t.Fatalf("Wait = %+v, %v", info, err)
	}
	exited := make(chan struct{})
	close(exited)
	if _, err := Wait(context.Background(), filepath.Join(t.TempDir(), "none"), exited, 5*time.Second); err == nil {
		t.Error("Wait for an exited daemon's file succeeded")
	}
	if _, err := Wait(context.Background(), filepath.Join(t.TempDir(), "none"), nil, 30*time.Millisecond); err == nil {
		t.Error("Wait past its timeout succeeded")
	}
}
