package workqueue_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

func joinComma(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte(",")), nil }

// TestReduceKeepsLeasesWhileItFills: a Reduce's batch may take its flush delay (here 1.5s) to fill,
// far longer than its input's leases (300ms). The items leased first must stay leased meanwhile: one
// item in, one result of it out, the item acked. Reduce used to extend no lease before its adds, so
// the item's lease ran out while the batch filled and Memory handed the item out again, to the same
// batch, whose result then held it three times (and whose acks of the first two leases failed).
func TestReduceKeepsLeasesWhileItFills(t *testing.T) {
	in := mustMemory(t, workqueue.WithLeaseDuration(300*time.Millisecond))
	out := mustMemory(t)
	r, err := workqueue.NewReduce(in, out, 3, joinComma, workqueue.WithFlushAfter(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	addAll(t, in, noKey, "a")
	runStages(t, r)
	if diff := cmp.Diff([]string{"a"}, take(t, out, 1)); diff != "" {
		t.Errorf("reduced (-want +got):\n%s", diff)
	}
	waitFor(t, func() bool { s, _ := in.Stats(context.Background()); return s == (workqueue.Stats{}) })
}

// crossingIn is an input whose Lease under a deadline answers only as the deadline passes, with an
// item if one is ready then (a Client whose answer crossed the end of its poll). It has no Release,
// so an item given back is nacked, and the attempt counted; it counts the Nacks.
type crossingIn struct {
	workqueue.Queue // a Memory, without its Release
	nacks           atomic.Int64
}

func (q *crossingIn) Lease(ctx context.Context) (*workqueue.Item, error) {
	if _, ok := ctx.Deadline(); ok {
		<-ctx.Done()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Millisecond)
		defer cancel()
		if it, err := q.Queue.Lease(lctx); err == nil {
			return it, nil
		}
		return nil, ctx.Err()
	}
	return q.Queue.Lease(ctx)
}

func (q *crossingIn) Nack(ctx context.Context, lease string, d time.Duration) error {
	q.nacks.Add(1)
	return q.Queue.Nack(ctx, lease, d)
}

// TestReduceKeepsAnItemLeasedAtItsFlushDeadline: an item whose lease comes back right as a batch's
// flush delay runs out joins the batch: the stage still runs, and the item is leased to it. Reduce
// used to give it back as if the stage had stopped (the stage's lease helper looked at the filling
// ctx only), which with a queue that cannot release costs the item an attempt for nothing, and it
// came in the next batch.
func TestReduceKeepsAnItemLeasedAtItsFlushDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, out := mustMemory(t), mustMemory(t)
		in := &crossingIn{Queue: m}
		addAll(t, m, noKey, "a", "b")
		r, err := workqueue.NewReduce(in, out, 3, joinComma, workqueue.WithFlushAfter(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if err, _ := runFor(r, time.Second); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a,b"}, take(t, out, int(mustStats(t, out).Ready))); diff != "" {
			t.Errorf("reduced (-want +got):\n%s", diff)
		}
		if n := in.nacks.Load(); n != 0 {
			t.Errorf("%d nacks, want none", n)
		}
		if s := mustStats(t, m); s != (workqueue.Stats{}) {
			t.Errorf("input after Run: %+v, want both items acked", s)
		}
	})
}

func mustStats(t *testing.T, q workqueue.Queue) workqueue.Stats {
	t.Helper()
	s, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
