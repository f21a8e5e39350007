package bolt_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// TestHugeDelaySurvivesReopen: an item added or nacked with the longest delay (which
// workqueue.Memory saturates to a time beyond 2262, where UnixNano is undefined) is still delayed
// after a reopen, not ready at once.
func TestHugeDelaySurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("add"), workqueue.AddOptions{Delay: math.MaxInt64}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("nack"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Nack(ctx, it.Lease, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path)
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if it, err := q.Lease(lctx); err == nil {
		t.Fatalf("leased %q after the reopen, delayed by %v", it.Payload, time.Duration(math.MaxInt64))
	}
	if s, err := q.Stats(ctx); err != nil || s.Delayed != 2 {
		t.Fatalf("stats %+v, %v after the reopen: want 2 delayed", s, err)
	}
}
