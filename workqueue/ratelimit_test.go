package workqueue_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

func TestItemExponentialLimiter(t *testing.T) {
	l := workqueue.NewItemExponentialLimiter(10*time.Millisecond, 50*time.Millisecond)
	var got []time.Duration
	for range 5 {
		got = append(got, l.When("a"))
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if l.When("b") != 10*time.Millisecond || l.Retries("a") != 5 {
		t.Errorf("keys are not independent: b %v, a retries %d", l.When("b"), l.Retries("a"))
	}
	l.Forget("a")
	if l.Retries("a") != 0 || l.When("a") != 10*time.Millisecond {
		t.Error("Forget did not reset the key")
	}
}

func TestBucketAndMaxOfLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := workqueue.NewBucketLimiter(10, 2) // a token every 100ms, burst 2
		got := []time.Duration{b.When("x"), b.When("y"), b.When("z")}
		if diff := cmp.Diff([]time.Duration{0, 0, 100 * time.Millisecond}, got); diff != "" {
			t.Errorf("bucket waits (-want +got):\n%s", diff)
		}
		m := workqueue.NewMaxOfLimiter(workqueue.NewItemExponentialLimiter(time.Millisecond, time.Hour), workqueue.NewBucketLimiter(1000, 1))
		// The first wait is the bucket's 0 vs the item's 1ms; the next, the bucket's 1ms vs the item's 2ms.
		if d := m.When("k"); d != time.Millisecond {
			t.Errorf("first max-of wait %v, want 1ms", d)
		}
		if d := m.When("k"); d != 2*time.Millisecond {
			t.Errorf("second max-of wait %v, want 2ms", d)
		}
		if m.Retries("k") != 2 {
			t.Errorf("retries %d, want 2", m.Retries("k"))
		}
	})
}

func TestAddRateLimitedAndPoolLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, _ := workqueue.NewMemory()
		defer q.Close()
		ctx := context.Background()
		l := workqueue.NewItemExponentialLimiter(time.Second, time.Minute)
		start := time.Now()
		workqueue.AddRateLimited(ctx, q, l, []byte("x"), "k")
		it, _ := q.Lease(ctx)
		if el := time.Since(start); el != time.Second {
			t.Errorf("rate-limited add leased after %v, want 1s", el)
		}
		q.Ack(ctx, it.Lease)

		var attempts []time.Duration
		pctx, cancel := context.WithCancel(ctx)
		p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
			attempts = append(attempts, time.Since(start))
			if it.Attempt < 3 {
				return context.DeadlineExceeded
			}
			return nil
		}), workqueue.WithRateLimiter(l), workqueue.WithProgressEvery(0))
		done := make(chan error)
		go func() { done <- p.Run(pctx) }()
		start = time.Now()
		q.Add(ctx, []byte("y"), workqueue.AddOptions{Key: "k"})
		for p.Counts().Acked == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		// Key k already had one failure on record: its retries wait 2s, then 4s.
		if diff := cmp.Diff([]time.Duration{0, 2 * time.Second, 6 * time.Second}, attempts); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
		if l.Retries("k") != 0 {
			t.Errorf("the pool did not forget k after success: %d retries", l.Retries("k"))
		}
	})
}
