package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
)

// heldStore holds every Update after its transaction ran and before it
// returns (as a slow fsync would) until released.
type heldStore struct {
	store.Store
	entered chan struct{}
	mu      sync.Mutex
	hold    chan struct{}
}

func (s *heldStore) Update(ctx context.Context, fn func(store.Tx) error) (uint64, error) {
	rev, err := s.Store.Update(ctx, fn)
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-hold
	return rev, err
}

func (s *heldStore) setHold(c chan struct{}) {
	s.mu.Lock()
	s.hold = c
	s.mu.Unlock()
}

// TestNoAcknowledgementBeforeCommit: a registration is answered only once
// the store's Update that holds it has returned, that is, once it is
// durable; never from inside the transaction, while the commit (and its
// fsync) may still fail or be lost to a crash.
func TestNoAcknowledgementBeforeCommit(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	held := &heldStore{Store: st, hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	close(held.hold) // let the key through
	s, err := New(Config{Store: held})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", api.AdminPathAuthKeys, strings.NewReader(`{"ttl_seconds":600,"reusable":true}`)))
	key := strings.Split(strings.Split(rec.Body.String(), `"key":"`)[1], `"`)[0]
	<-held.entered

	hold := make(chan struct{})
	held.setHold(hold)
	var release sync.Once
	// Deferred after s.Close, so it runs first: a failing test must let
	// the held commit go, or Close waits on it for ever.
	defer release.Do(func() { close(hold) })
	answered := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", api.PathRegister, strings.NewReader(`{"auth_key":"`+key+`","node_key":"`+fuzzNK+`","machine_key":"`+fuzzMK+`"}`))
		req.Header.Set(api.HeaderCapabilityVersion, "1")
		s.Handler().ServeHTTP(rec, req)
		answered <- rec.Code
	}()
	<-held.entered // the registration's transaction ran; its commit is held
	select {
	case code := <-answered:
		t.Fatalf("the registration was answered %d while its commit was still held", code)
	case <-time.After(300 * time.Millisecond):
	}
	release.Do(func() { close(hold) })
	if code := <-answered; code != http.StatusOK {
		t.Errorf("registration after the commit: %d, want 200", code)
	}
}
