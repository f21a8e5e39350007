package workqueue_test

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// TestJoinHoldsWireDeadlinesAtTheBarrier: an item waits 10s at a Join's barrier; its input's
// deadlines are by a server's clock an hour ahead or behind, with no monotonic reading (a Client of
// a server that writes no ttl), 2s leases, one attempt. The holder extends it at the retry delay, as
// the keeper does such a lease, and the item joins once, acked. The holder used to trust the
// deadline an hour ahead and wait 20 minutes to extend: the lease ran out, and with one attempt the
// item went to the dead letters.
func TestJoinHoldsWireDeadlinesAtTheBarrier(t *testing.T) {
	for _, shift := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(shift.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				left := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(2*time.Second))
				right, out := mustMemory(t), mustMemory(t)
				j, err := workqueue.NewJoin([]workqueue.Queue{&wireDeadlines{Memory: left, shift: shift}, right}, out, nil,
					func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte("+")), nil }, workqueue.WithStageRetry(100*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				addAll(t, left, func(string) string { return "k" }, "l")
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- j.Run(rctx) }()
				time.Sleep(10 * time.Second)
				addAll(t, right, func(string) string { return "k" }, "r")
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				if s, _ := left.Stats(ctx); s != (workqueue.Stats{}) {
					t.Errorf("left after the join: %+v, want its item acked, not dead", s)
				}
				if s, _ := out.Stats(ctx); s != (workqueue.Stats{Ready: 1}) {
					t.Fatalf("output: %+v, want the one joined item", s)
				}
				if diff := cmp.Diff([]string{"l+r"}, take(t, out, 1)); diff != "" {
					t.Errorf("joined (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestJoinHoldsPartsOfTwoInputsWithTheSameLeaseToken: two Memory inputs hand out the same lease
// tokens ("1.1" for the first item of each). Left's item of key a and right's of key b wait at the
// barrier for 2s, ten times their lease, then their partners come: both join, every part acked
// once. The Join's holder kept held items by lease token, so one input's item took the other's
// place: the other's lease was not extended and ran out, its stale lease was joined (its ack
// failed), and its next delivery waited at the barrier for a partner that had come and gone.
func TestJoinHoldsPartsOfTwoInputsWithTheSameLeaseToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		left := mustMemory(t, workqueue.WithLeaseDuration(200*time.Millisecond))
		right := mustMemory(t, workqueue.WithLeaseDuration(200*time.Millisecond))
		out := mustMemory(t)
		j, err := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil,
			func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte("+")), nil }, workqueue.WithStageRetry(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		same := func(p string) string { return p }
		addAll(t, left, same, "a")
		addAll(t, right, same, "b")
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- j.Run(rctx) }()
		time.Sleep(2 * time.Second)
		addAll(t, left, same, "b")
		addAll(t, right, same, "a")
		time.Sleep(time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		for name, in := range map[string]*workqueue.Memory{"left": left, "right": right} {
			if s, _ := in.Stats(ctx); s != (workqueue.Stats{}) {
				t.Errorf("%s after the joins: %+v, want every part acked", name, s)
			}
		}
		if diff := cmp.Diff([]string{"a+a", "b+b"}, take(t, out, 2)); diff != "" {
			t.Errorf("joined (-want +got):\n%s", diff)
		}
	})
}

// TestJoinWaitsForAPartWhoseLeaseWasLost: the left part of key "a" waits at the barrier, and its
// input says its lease is lost at the first Extend (and delivers it again). The Join holds it no
// more: the barrier waits for its next delivery, and joins that with the right part, which comes
// 2s later; every part acked once, with the output made, no ack of a lost lease. The holder used to
// go on extending the lost lease, and the Join joined it and acked it (a lease it no longer had),
// while the part's next delivery waited at the barrier for a partner that had come and gone.
func TestJoinWaitsForAPartWhoseLeaseWasLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		left, right := newStrictIn(), newStrictIn()
		left.put("A", "a", 300*time.Millisecond)
		left.lost["A"] = true
		out := newStrictOut(func(string, int) time.Duration { return 0 })
		left.ok = func(string) bool { return out.has("a+a") }
		right.ok = left.ok
		j, err := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil,
			func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte("+")), nil }, workqueue.WithStageRetry(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		time.Sleep(2 * time.Second)
		right.put("A", "a", 300*time.Millisecond)
		time.Sleep(2 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		out.mu.Lock()
		if diff := cmp.Diff(map[string]int{"a+a": 1}, out.made); diff != "" {
			t.Errorf("made (-want +got):\n%s", diff)
		}
		out.mu.Unlock()
		left.report(t, []string{"A"})
		right.report(t, []string{"A"})
	})
}
