package workqueue_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// oneHungExtend: the first Extend gets no answer (a request lost on the way; the server is fine),
// until its ctx ends; the others are answered.
type oneHungExtend struct {
	*workqueue.Memory
	n atomic.Int64
}

func (q *oneHungExtend) Extend(ctx context.Context, lease string) (time.Time, error) {
	if q.n.Add(1) == 1 {
		<-ctx.Done()
		return time.Time{}, ctx.Err()
	}
	return q.Memory.Extend(ctx, lease)
}

// TestStagesGiveUpAnExtendWithoutAnswer: a slow output (3s an add) and an input whose first Extend
// is never answered: the stage should keep the 1s lease alive (as a Pool does, bounding each
// Extend), not sit in the one Extend while the lease runs out.
func TestStagesGiveUpAnExtendWithoutAnswer(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "extends-answered", true: "first-extend-hangs"}[hang], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				mem := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(time.Second))
				var in workqueue.Queue = mem
				q := &oneHungExtend{Memory: mem}
				if hang {
					in = q
				} else {
					q.n.Store(1)
				}
				out := &slowOut{Memory: mustMemory(t), lat: 3 * time.Second}
				c, err := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				addAll(t, mem, noKey, "x")
				if err, _ := runFor(c, time.Minute); err != nil {
					t.Fatal(err)
				}
				so, _ := out.Stats(ctx)
				si, _ := mem.Stats(ctx)
				t.Logf("output %+v, input %+v, output add calls %d, extends %d", so, si, out.calls.Load(), q.n.Load())
				if si != (workqueue.Stats{}) {
					t.Errorf("input: %+v, want the item acked, none dead", si)
				}
				if so != (workqueue.Stats{Ready: 1}) {
					t.Errorf("output: %+v, want the item once", so)
				}
			})
		})
	}
}

// TestStagesGiveUpAnExtendWithoutAnswerStrict: as above with the strict model input (1s lease): the first
// Extend is never answered, the add takes 3s.
func TestStagesGiveUpAnExtendWithoutAnswerStrict(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "extends-answered", true: "first-extend-hangs"}[hang], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := newStrictIn()
				in.hangExt = map[int]bool{1: hang}
				in.put("A", "a", time.Second)
				out := newStrictOut(func(string, int) time.Duration { return 3 * time.Second })
				in.ok = out.has
				c, _ := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond))
				if err, _ := runFor(c, time.Minute); err != nil {
					t.Fatal(err)
				}
				out.mu.Lock()
				t.Logf("extends %d, add calls %v, made %v", in.extends, out.calls, out.made)
				out.mu.Unlock()
				in.report(t, []string{"A"})
			})
		})
	}
}
