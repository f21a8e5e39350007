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
