package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// openRecovered adds an item to a new file, leases it for d, closes the queue (which commits the
// lease) and opens the file again: the queue it returns holds the item under the recovered lease
// old ("1.1@1").
func openRecovered(t *testing.T, d time.Duration) (q *Queue, old string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q1, err := Open(path, WithLeaseDuration(d))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q1.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q1.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(path, WithLeaseDuration(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, it.Lease
}

// TestEndingRecoveredTokenExtendsNothing: while a Release ends a recovered lease (Memory has
// released it, q.ended has not run yet, the steps of end spelled out), an Extend with the
// recovered token gets ErrLeaseLost, before and after the item's next lease, which has the same
// Memory token; the next holder keeps its lease.
func TestEndingRecoveredTokenExtendsNothing(t *testing.T) {
	ctx := context.Background()
	q, old := openRecovered(t, time.Minute)
	mem, r, err := q.memLease(old, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Extend(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend(%q) while a Release ends it: %v, want ErrLeaseLost", old, err)
	}
	if err := q.Memory.Release(ctx, mem); err != nil {
		t.Fatal(err)
	}
	next, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Extend(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend(%q) after the next holder %q leased the item: %v, want ErrLeaseLost", old, next.Lease, err)
	}
	q.ended(r)
	if err := q.Ack(ctx, next.Lease); err != nil {
		t.Errorf("Ack by the next holder %q: %v", next.Lease, err)
	}
}
