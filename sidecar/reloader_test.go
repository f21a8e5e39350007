package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
)

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs c until the test ends; it fails the test if Run returns an error.
func start(t *testing.T, c interface {
	Run(context.Context) error
	Ready() <-chan struct{}
}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
}

func TestReloaderAtomicWriterUpdatesNoneMissed(t *testing.T) {
	tests := []struct {
		name    string
		updates int
		opts    []sidecar.Option
	}{
		// The rescan is an hour away: inotify alone must see every ..data swap.
		{"inotify", 100, []sidecar.Option{sidecar.WithPollInterval(time.Hour)}},
		{"polling", 20, []sidecar.Option{sidecar.WithoutWatch(), sidecar.WithPollInterval(10 * time.Millisecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := sidecartest.WriteAtomic(dir, map[string]string{"app.conf": "v0", "nested/x": "n"}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var seen []string
			action := func(context.Context) error {
				data, err := os.ReadFile(filepath.Join(dir, "app.conf"))
				if err != nil {
					return err
				}
				mu.Lock()
				seen = append(seen, string(data))
				mu.Unlock()
				return nil
			}
			r, err := sidecar.NewReloader([]string{dir}, action, append(tt.opts, sidecar.WithDebounce(5*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			var want []string
			for i := 1; i <= tt.updates; i++ {
				v := fmt.Sprintf("v%d", i)
				want = append(want, v)
				if err := sidecartest.WriteAtomic(dir, map[string]string{"app.conf": v, "nested/x": "n"}); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, fmt.Sprintf("reload %d", i), 20*time.Second, func() bool { return r.Reloads() >= uint64(i) })
			}
			time.Sleep(50 * time.Millisecond) // an extra reload, if there were one, would show now
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(want, seen); diff != "" {
				t.Errorf("content seen by the reloads (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReloaderIgnoresEventsWithoutChange(t *testing.T) {
	dir := t.TempDir()
	if err := sidecartest.WriteAtomic(dir, map[string]string{"a": "same"}); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	r, err := sidecar.NewReloader([]string{dir}, func(context.Context) error { n.Add(1); return nil },
		sidecar.WithDebounce(5*time.Millisecond), sidecar.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	for range 5 {
		if err := sidecartest.WriteAtomic(dir, map[string]string{"a": "same"}); err != nil {
			t.Fatal(err)
		}
	}
	// A change after the no-op swaps proves the reloader was looking.
	if err := sidecartest.WriteAtomic(dir, map[string]string{"a": "changed"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "one reload", 10*time.Second, func() bool { return n.Load() >= 1 })
	time.Sleep(50 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Errorf("reloads = %d, want 1", got)
	}
}

func TestReloaderWebhookRetriedUntilReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "reloaded")
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(file, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := sidecar.NewReloader([]string{file}, sidecar.Webhook(srv.Client(), "", srv.URL+"/-/reload"),
		sidecar.WithDebounce(5*time.Millisecond), sidecar.WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	if err := os.WriteFile(file, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "reload", 10*time.Second, func() bool { return r.Reloads() == 1 })
	if got := calls.Load(); got != 4 {
		t.Errorf("webhook calls = %d, want 4 (3 refused, 1 accepted)", got)
	}
}

func TestNewReloaderValidates(t *testing.T) {
	if _, err := sidecar.NewReloader(nil, func(context.Context) error { return nil }); err == nil {
		t.Error("no paths: want an error")
	}
	if _, err := sidecar.NewReloader([]string{"/x"}, nil); !errors.Is(err, sidecar.ErrNoAction) {
		t.Errorf("nil action: err = %v, want ErrNoAction", err)
	}
}

// TestReloaderRunRefusesMissingPath: a path that does not exist when Run starts is a mistake (a
// volume is mounted before the container starts): Run returns its *fs.PathError at once, before
// Ready. The old code watched the parent directory and reloaded nothing, silently.
func TestReloaderRunRefusesMissingPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "confg")
	r, err := sidecar.NewReloader([]string{dir, missing}, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Run(ctx)
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) || pe.Path != missing {
		t.Fatalf("Run: %v, want a *fs.PathError for %s, not found", err, missing)
	}
	if ctx.Err() != nil {
		t.Error("Run returned only when its context ended")
	}
	select {
	case <-r.Ready():
		t.Error("Ready closed")
	default:
	}
}
