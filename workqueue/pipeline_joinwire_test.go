package workqueue_test

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// TestJoinExtendsWireDeadlinesAtTheBarrier: an item waits 20s at a Join's barrier; its input's deadlines
// are by a server's clock an hour ahead with no monotonic reading (a Client of a server that writes
// no ttl), 5s leases, one attempt. The keeper caps renewal at the retry delay for such deadlines;
// does the barrier's holder?
func TestJoinExtendsWireDeadlinesAtTheBarrier(t *testing.T) {
	for _, shift := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(shift.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				ma := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(5*time.Second))
				mb := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(5*time.Second))
				a, b := &wireDeadlines{Memory: ma, shift: shift}, &wireDeadlines{Memory: mb, shift: shift}
				out := mustMemory(t)
				j, err := workqueue.NewJoin([]workqueue.Queue{a, b}, out, func(it *workqueue.Item) string { return string(it.Payload) },
					func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte("+")), nil }, workqueue.WithStageRetry(100*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				addAll(t, ma, noKey, "k")
				go func() { time.Sleep(20 * time.Second); addAll(t, mb, noKey, "k") }()
				if err, _ := runFor(j, time.Minute); err != nil {
					t.Fatal(err)
				}
				sa, _ := ma.Stats(ctx)
				so, _ := out.Stats(ctx)
				t.Logf("input a %+v, out %+v", sa, so)
				if sa != (workqueue.Stats{}) || so != (workqueue.Stats{Ready: 1}) {
					t.Errorf("input a: %+v, output %+v: want a acked and one joined item", sa, so)
				}
			})
		})
	}
}
