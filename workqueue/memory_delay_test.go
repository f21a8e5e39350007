package workqueue_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// TestMemoryHugeDelayStaysDelayedWhenRecovered: a record whose NotBefore is further ahead than the
// queue's clock reaches is recovered as delayed for ever, not as ready at once: a delay the queue
// saturated (now plus the longest duration), recovered by a process whose wall clock reads a
// second earlier, and a date centuries ahead.
func TestMemoryHugeDelayStaysDelayedWhenRecovered(t *testing.T) {
	ctx := context.Background()
	recs := []workqueue.Record{
		{ID: 1, Payload: []byte("saturated"), NotBefore: time.Now().Round(0).Add(math.MaxInt64).Add(time.Second)},
		{ID: 2, Payload: []byte("year 3000"), NotBefore: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	q, err := workqueue.NewMemory(workqueue.WithJournal(&journalLog{recs: map[uint64]workqueue.Record{}}, recs, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if it, err := q.Lease(lctx); err == nil {
		t.Fatalf("leased %q, delayed beyond the clock's reach", it.Payload)
	}
	if s, err := q.Stats(ctx); err != nil || s.Delayed != 2 {
		t.Fatalf("stats %+v, %v: want 2 delayed", s, err)
	}
}
