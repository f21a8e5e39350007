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
	q, err := Open(filepath.Join(t.TempDir(), "q.db"), WithLeaseDuration(time.Minute), WithAsyncAck())
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
// again the lease reaches the file and the recovery is logged.
func TestFailingDiskBacksOff(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	var tries atomic.Int32 // commits tried while failing
	commitTx = func(db *bbolt.DB, fn func(*bbolt.Tx) error) error {
		if failing.Load() {
			tries.Add(1)
			return errors.New("read-only file system")
		}
		return db.Update(fn)
	}
	defer func() { commitTx = (*bbolt.DB).Update }()
	core, logs := observer.New(zap.InfoLevel)
	q, err := Open(filepath.Join(t.TempDir(), "q.db"), WithLeaseDuration(time.Minute), WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Flushes at 5, 10, 20, ... ms after the last: 6 tries in the first 315 ms, the 7th at 635 ms.
	// Every flushDelay it would be ~80 (or ~40 at 10 ms a timer on a loaded machine).
	const window = 400 * time.Millisecond
	time.Sleep(window)
	n := tries.Load()
	if n < 2 || n > 12 {
		t.Fatalf("%d commits tried in %v of a failing disk, want 2..12 (backing off from %v)", n, window, flushDelay)
	}
	failed := logs.FilterMessageSnippet("commit failed").All()
	if len(failed) != 1 || failed[0].Level != zap.ErrorLevel || failed[0].ContextMap()["error"] != "read-only file system" {
		t.Fatalf("want one error-level log of the failing run with its error, got %+v", failed)
	}
	failing.Store(false)
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
}
