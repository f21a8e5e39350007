package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
	"github.com/prometheus/client_golang/prometheus"
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

// TestReloaderWaitsForMissingPaths: a path that does not exist when Run starts (an optional
// ConfigMap key; a file under a Syncer's link before its first publish, its directory missing too)
// is shown in Statusz, and its appearance reloads once. The code of 3010297 made Run return an
// error instead, and a restarted binary exited 2 every time.
func TestReloaderWaitsForMissingPaths(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	optional := filepath.Join(dir, "optional.conf")
	site := filepath.Join(root, "current", "site.conf")
	var calls atomic.Int32
	r, err := sidecar.NewReloader([]string{dir, optional, site}, func(context.Context) error { calls.Add(1); return nil },
		sidecar.WithDebounce(10*time.Millisecond), sidecar.WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	if got, want := statusRow(r, "paths not found"), optional+","+site; got != want {
		t.Errorf("Statusz paths not found = %q, want %q", got, want)
	}
	if err := os.WriteFile(optional, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a reload for the optional file", 10*time.Second, func() bool { return r.Reloads() >= 1 })
	if got := statusRow(r, "paths not found"); got != site {
		t.Errorf("Statusz paths not found = %q, want %q", got, site)
	}
	rev := filepath.Join(root, "rev1")
	if err := os.Mkdir(rev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rev, "site.conf"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("rev1", filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a reload for the published site", 10*time.Second, func() bool { return r.Reloads() >= 2 })
	time.Sleep(200 * time.Millisecond) // four polls: no further reload for the same content
	if got := calls.Load(); got != 2 {
		t.Errorf("actions = %d, want 2 (one per path appearing)", got)
	}
	if got := statusRow(r, "paths not found"); got != "" {
		t.Errorf("Statusz paths not found = %q, want none", got)
	}
}

// statusRow returns the value of the Statusz row key.
func statusRow(s interface {
	Statusz() (string, []string, [][]string)
}, key string) string {
	_, _, rows := s.Statusz()
	for _, r := range rows {
		if r[0] == key {
			return r[1]
		}
	}
	return ""
}

// TestReloaderMetricsStartAtZero: each result of reloads_total has a series from the start, at 0 (an
// alert on its rate needs one; the old code made a series only at its first reload), and the Help
// text names the results.
func TestReloaderMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := sidecar.NewReloader([]string{t.TempDir()}, func(context.Context) error { return nil }, sidecar.WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if got, want := counterValues(t, reg, "podblocks_sidecar_reloader_reloads_total"), `{result="no_process"} 0; {result="ok"} 0; {result="rejected"} 0`; got != want {
		t.Errorf("reloads_total: %s, want %s", got, want)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_sidecar_reloader_reloads_total" && (!strings.Contains(mf.GetHelp(), "ok") || !strings.Contains(mf.GetHelp(), "no_process")) {
			t.Errorf("Help %q: want the results ok and no_process named", mf.GetHelp())
		}
	}
}
