package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/workqueue"
)

// TestFailedFlushIsRetried: a lease or an async ack whose flush fails to commit reaches the file
// with a later try, though nothing else commits meanwhile.
func TestFailedFlushIsRetried(t *testing.T) {
	ctx := context.Background()
	var fails atomic.Int32 // how many of the next commits fail
	commitTx = func(db *bbolt.DB, fn func(*bbolt.Tx) error) error {
		if fails.Add(-1) >= 0 {
			return errors.New("disk full")
		}
		return db.Update(fn)
	}
	defer func() { commitTx = (*bbolt.DB).Update }()
	q, err := Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), WithLeaseDuration(time.Minute), WithAsyncAck())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	fails.Store(1)
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(it.ID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, q, id, &fails, "the lease", func(rec []byte) bool {
		r, epoch, err := decode(rec)
		return err == nil && !r.Deadline.IsZero() && epoch == q.epoch
	})
	fails.Store(1)
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, q, id, &fails, "the async ack", func(rec []byte) bool { return rec == nil })
}

// waitForRecord waits until the file's record of item id (nil if there is none) is done, and checks
// that the commit meant to fail did.
func waitForRecord(t *testing.T, q *Queue, id uint64, fails *atomic.Int32, what string, done func(rec []byte) bool) {
	t.Helper()
	// The retry is due within a few flushDelays; the bound is generous for a loaded machine.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var rec []byte
		err := q.db.View(func(tx *bbolt.Tx) error {
			rec = bytes.Clone(tx.Bucket(bucketItems).Get(binary.BigEndian.AppendUint64(nil, id)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if done(rec) {
			if fails.Load() > 0 {
				t.Fatalf("%s is in the file, but no commit failed", what)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not in the file 5s after its commit failed", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFailingDiskBacksOff: while every commit fails, a pending lease is tried again less and less
// often (not every flushDelay), the first failure is logged with its error, and once the disk works
// again the lease reaches the file, the recovery is logged, and a later lease is flushed within
// flushDelay again, not after the wait the failures had set.
func TestFailingDiskBacksOff(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	var tries atomic.Int32 // commits tried while failing
	q, logs := openFailing(t, func() error {
		if failing.Load() {
			tries.Add(1)
			return errors.New("read-only file system")
		}
		return nil
	})
	for _, p := range []string{"x", "y"} {
		if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	failing.Store(true)
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Tries at 5, 10, 20, 40, 80, 160, 320 and 640 ms after the lease, the next at 1280 ms. Every
	// flushDelay it would be ~140 (or ~70 at 10 ms a timer on a loaded machine).
	const window = 700 * time.Millisecond
	time.Sleep(window)
	n := tries.Load()
	if n < 2 || n > 14 {
		t.Fatalf("%d commits tried in %v of a failing disk, want 2..14 (backing off from %v)", n, window, flushDelay)
	}
	failed := logs.FilterMessageSnippet("commit failed").All()
	if len(failed) != 1 || failed[0].Level != zap.ErrorLevel || failed[0].ContextMap()["error"] != "read-only file system" {
		t.Fatalf("want one error-level log of the failing run with its error, got %+v", failed)
	}
	failing.Store(false)
	if _, err := q.Add(ctx, []byte("z"), workqueue.AddOptions{}); err != nil { // carries the lease
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(it.ID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var none atomic.Int32
	waitForRecord(t, q, id, &none, "the lease", func(rec []byte) bool {
		r, _, err := decode(rec)
		return err == nil && !r.Deadline.IsZero()
	})
	ok := logs.FilterMessageSnippet("succeeded after failures").All()
	if len(ok) != 1 || ok[0].ContextMap()["failed"] != int64(tries.Load()) {
		t.Fatalf("want one log of the recovery after %d failed commits, got %+v", tries.Load(), ok)
	}
	q.mu.Lock()
	wait := q.flushWaitLocked()
	q.mu.Unlock()
	if wait != flushDelay {
		t.Fatalf("after a success the next flush waits %v, want %v", wait, flushDelay)
	}
	it2, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	id2, err := strconv.ParseUint(it2.ID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, q, id2, &none, "the lease after the recovery", func(rec []byte) bool {
		r, _, err := decode(rec)
		return err == nil && !r.Deadline.IsZero()
	})
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Errorf("a lease after the recovery reached the file after %v, want about %v", el, flushDelay)
	}
}

// TestFlappingDiskLogsOnce: commits that fail and succeed in turn, each failure leaving leases to
// try again, are logged once, not twice a commit.
func TestFlappingDiskLogsOnce(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int32
	q, logs := openFailing(t, func() error {
		if calls.Add(1)%2 == 0 {
			return errors.New("I/O error")
		}
		return nil
	})
	for range 100 {
		q.Add(ctx, []byte("x"), workqueue.AddOptions{}) // every other one fails, to its caller
		if _, err := q.Lease(ctx); err != nil {
			t.Fatal(err)
		}
		q.Commit(nil) // carries the lease, which no caller waits for; may fail
	}
	if n := len(logs.FilterMessageSnippet("commit failed").All()); n != 1 {
		t.Errorf("%d error logs of ~100 failed commits, want 1", n)
	}
	if n := len(logs.FilterMessageSnippet("succeeded after failures").All()); n != 1 {
		t.Errorf("%d recovery logs, want 1", n)
	}
}

// openFailing opens a queue (leases of a minute) whose commits fail with fail's error when it
// returns one, and whose logs are observed.
func openFailing(t *testing.T, fail func() error) (*Queue, *observer.ObservedLogs) {
	t.Helper()
	commitTx = func(db *bbolt.DB, fn func(*bbolt.Tx) error) error {
		if err := fail(); err != nil {
			return err
		}
		return db.Update(fn)
	}
	core, logs := observer.New(zap.InfoLevel)
	q, err := Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), WithLeaseDuration(time.Minute), WithLogger(zap.New(core)))
	if err != nil {
		commitTx = (*bbolt.DB).Update
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		commitTx = (*bbolt.DB).Update
	})
	return q, logs
}
