package bolt

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// leaseForFlush opens a queue in a new file with testHookFlush set to hook (unset when the test
// ends), adds an item and leases it, which schedules a flush.
func leaseForFlush(t *testing.T, hook func()) *Queue {
	t.Helper()
	ctx := context.Background()
	q, err := Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	testHookFlush = hook
	t.Cleanup(func() { q.Close(); testHookFlush = nil })
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Lease(ctx); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestCloseWaitsForRunningFlush: Close does not return while a flush that has started runs.
func TestCloseWaitsForRunningFlush(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var running atomic.Bool
	q := leaseForFlush(t, func() {
		running.Store(true)
		close(entered)
		<-release
		running.Store(false)
	})
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	// Close has no way to return early but for a bug, so a short wait shows one on most runs.
	select {
	case err := <-closed:
		close(release)
		t.Fatalf("Close returned (%v) while a flush was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if running.Load() {
		t.Error("the flush still ran after Close returned")
	}
}

// TestNoFlushAfterClose: no flush starts after Close has returned.
func TestNoFlushAfterClose(t *testing.T) {
	var closed atomic.Bool
	var late atomic.Int32
	q := leaseForFlush(t, func() {
		if closed.Load() {
			late.Add(1)
		}
	})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	time.Sleep(5 * flushDelay)
	if n := late.Load(); n > 0 {
		t.Errorf("%d flushes started after Close returned", n)
	}
}
