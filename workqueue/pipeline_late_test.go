package workqueue_test

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// lateLease is an input that hands out a ready item also after the Lease's ctx ended (as a Client
// whose answer crossed the end, or a Queue that ignores ctx), up to 50 times; then it says ctx.Err.
type lateLease struct {
	*workqueue.Memory
	late atomic.Int64
}

func (q *lateLease) Lease(ctx context.Context) (*workqueue.Item, error) {
	if ctx.Err() != nil && q.late.Load() < 50 {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Millisecond)
		defer cancel()
		if it, err := q.Memory.Lease(lctx); err == nil {
			q.late.Add(1)
			return it, nil
		}
	}
	return q.Memory.Lease(ctx)
}

// TestStagesStopWithAnInputThatLeasesAfterTheEnd: a stage whose Run ctx ended gives back an item
// its input hands out afterwards, and stops: one such item a lease loop, no add begun after the
// end, nothing left leased. The stage used to process each such item, lease the next, and go on
// (here, until the input stopped handing them out), making adds after it was stopped. (Reduce looks
// at its ctx after each batch, so it did not go on.)
func TestStagesStopWithAnInputThatLeasesAfterTheEnd(t *testing.T) {
	join := func(p [][]byte) ([]byte, error) { return bytes.Join(p, []byte("+")), nil }
	for _, tc := range []struct {
		name  string
		loops int
		build func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error)
	}{
		{"copier", 1, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
			return stage(workqueue.NewCopier(ins[0], []workqueue.Queue{out}, opts...))
		}},
		{"join", 2, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
			return stage(workqueue.NewJoin(ins, out, func(it *workqueue.Item) string { return string(it.Payload) }, join, opts...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bg := context.Background()
				var ins []workqueue.Queue
				var lates []*lateLease
				for range tc.loops {
					in := &lateLease{Memory: mustMemory(t)}
					for i := range 20 {
						addAll(t, in.Memory, noKey, strconv.Itoa(i))
					}
					ins, lates = append(ins, in), append(lates, in)
				}
				out := &slowOut{Memory: mustMemory(t), lat: 100 * time.Millisecond}
				st, err := tc.build(ins, out, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithFlushAfter(50*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(bg)
				done := make(chan error, 1)
				go func() { done <- st.Run(ctx) }()
				time.Sleep(250 * time.Millisecond)
				adds := out.calls.Load()
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				if n := out.calls.Load() - adds; n != 0 {
					t.Errorf("%d output adds begun after Run's ctx ended, want none", n)
				}
				for i, in := range lates {
					if n := in.late.Load(); n > 1 {
						t.Errorf("input %d: %d items leased after Run's ctx ended, want at most 1 (given back)", i, n)
					}
					if s, _ := in.Stats(bg); s.Leased != 0 {
						t.Errorf("input %d after Run: %+v, want nothing left leased", i, s)
					}
				}
			})
		})
	}
}
