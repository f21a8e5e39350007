package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestSyncerPublishesWhereFlockFails: where the file system has no locks (flock(2) failing with
// ENOLCK, as on an NFS mount without lockd), the Syncer fetches unlocked and publishes, saying so
// once (the old code failed every sync: "fetch dir: no locks available"), and its sweep removes no
// fetch directory, since it cannot tell a dead one from a live one.
func TestSyncerPublishesWhereFlockFails(t *testing.T) {
	saved := flockFn
	flockFn = func(*os.File, int) error { return syscall.ENOLCK }
	defer func() { flockFn = saved }()

	root := t.TempDir()
	leftover := filepath.Join(root, fetchPrefix+"0000000000abc")
	if err := os.Mkdir(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(leftover, long, long); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	s, err := NewSyncer(root, fileSource("v1"), WithInterval(0), WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		s.mu.Lock()
		t.Errorf("nothing published; last error %q", s.lastErr)
		s.mu.Unlock()
	}
	s.Trigger() // a second fetch, unlocked too, logs nothing more
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.syncs >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "current", "site.txt")); err != nil || string(b) != "v1" {
		t.Errorf("published site.txt = %q, %v; want v1", b, err)
	}
	if _, err := os.Lstat(leftover); err != nil {
		t.Errorf("unlockable leftover fetch directory: %v, want it left alone", err)
	}
	if n := logs.FilterMessageSnippet("cannot be locked").Len(); n != 1 {
		t.Errorf("%d warnings that fetch directories cannot be locked, want 1", n)
	}
	if n := logs.FilterMessageSnippet("a second Syncer on this root is not refused").Len(); n != 1 {
		t.Errorf("%d warnings that the root's lock file is not locked, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("timed out")
		}
	}
}
