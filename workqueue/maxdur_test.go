package workqueue_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// ctxQueue is a Memory whose Add and Ack fail once their ctx has ended, as a remote queue's do.
type ctxQueue struct{ *workqueue.Memory }

func (q ctxQueue) Add(ctx context.Context, p []byte, o workqueue.AddOptions) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return q.Memory.Add(ctx, p, o)
}

func (q ctxQueue) Ack(ctx context.Context, lease string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return q.Memory.Ack(ctx, lease)
}

// TestMaxDurations: every duration a user gives (options, a limiter's bounds, a ctx's deadline) may
// be as long as time.Duration goes, meaning "never" or "no bound", and works as such. Each used to
// overflow where it was added to a time or multiplied: a lease of math.MaxInt64 expired at once (the
// item was leased again while held), a drain budget of math.MaxInt64 ended the outcome calls as soon
// as the drain began (the ack of an item that finished in it failed), a stage retry delay of
// math.MaxInt64 gave every output add no time at all and then paused forever, a Client Lease under a
// ctx whose deadline is far away never asked the server, and a per-item exponential limiter with a
// max of math.MaxInt64 came to a negative delay.
func TestMaxDurations(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	bg := context.Background()

	t.Run("lease", func(t *testing.T) {
		q := mustMemory(t, workqueue.WithLeaseDuration(forever))
		addAll(t, q, noKey, "a")
		it, err := q.Lease(bg)
		if err != nil {
			t.Fatal(err)
		}
		if min := time.Now().Add(100 * 365 * 24 * time.Hour); it.Deadline.Before(min) {
			t.Errorf("deadline %v, want after %v", it.Deadline, min)
		}
		ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
		defer cancel()
		if again, err := q.Lease(ctx); err == nil {
			t.Fatalf("item leased again while held: attempt %d", again.Attempt)
		}
		d, err := q.Extend(bg, it.Lease)
		if err != nil || d.Before(it.Deadline) {
			t.Errorf("Extend = %v, %v; want a deadline at or after %v", d, err, it.Deadline)
		}
		if s, _ := q.Stats(bg); s != (workqueue.Stats{Leased: 1}) {
			t.Errorf("stats %+v, want the item leased", s)
		}
		if err := q.Ack(bg, it.Lease); err != nil {
			t.Errorf("Ack: %v", err)
		}
	})

	t.Run("drain", func(t *testing.T) {
		m := mustMemory(t)
		addAll(t, m, noKey, "a")
		started := make(chan struct{})
		p, err := workqueue.NewPool(ctxQueue{m}, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
			close(started)
			time.Sleep(100 * time.Millisecond) // finishes within the drain budget
			return nil
		}), workqueue.WithDrainTimeout(forever))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(bg)
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		<-started
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if c := p.Counts(); c != (workqueue.Counts{Acked: 1}) {
			t.Errorf("counts %+v, want the item acked", c)
		}
	})

	t.Run("item timeout", func(t *testing.T) {
		m := mustMemory(t)
		addAll(t, m, noKey, "a")
		p, err := workqueue.NewPool(m, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
			return ctx.Err()
		}), workqueue.WithItemTimeout(forever))
		if err != nil {
			t.Fatal(err)
		}
		stop := runPool(t, p)
		waitFor(t, func() bool { return p.Counts().Acked == 1 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stage retry", func(t *testing.T) {
		in, out := mustMemory(t), mustMemory(t)
		addAll(t, in, noKey, "a")
		c, err := workqueue.NewCopier(in, []workqueue.Queue{ctxQueue{out}}, workqueue.WithStageRetry(forever))
		if err != nil {
			t.Fatal(err)
		}
		runStages(t, c)
		waitFor(t, func() bool { s, _ := out.Stats(bg); return s.Ready == 1 })
	})

	t.Run("flush after", func(t *testing.T) {
		in, out := mustMemory(t), mustMemory(t)
		addAll(t, in, noKey, "a", "b")
		r, err := workqueue.NewReduce(in, out, 2, func(ps [][]byte) ([]byte, error) { return []byte("r"), nil }, workqueue.WithFlushAfter(forever))
		if err != nil {
			t.Fatal(err)
		}
		runStages(t, r)
		waitFor(t, func() bool { s, _ := out.Stats(bg); return s.Ready == 1 })
	})

	t.Run("client lease deadline", func(t *testing.T) {
		m := mustMemory(t)
		_, c := serve(t, m)
		for _, far := range []time.Duration{forever, forever / 8} { // about 292 and 36 years
			addAll(t, m, noKey, "a")
			ctx, cancel := context.WithDeadline(bg, time.Now().Add(far))
			stop := time.AfterFunc(10*time.Second, cancel) // bounds the test; not a deadline the Lease sees
			it, err := c.Lease(ctx)
			stop.Stop()
			cancel()
			if err != nil {
				t.Fatalf("Lease with a deadline %v ahead: %v", far, err)
			}
			if err := c.Ack(bg, it.Lease); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("exponential limiter", func(t *testing.T) {
		l := workqueue.NewItemExponentialLimiter(time.Nanosecond, forever)
		prev := time.Duration(0)
		for n := range 80 {
			d := l.When("k")
			if d < prev || d > forever {
				t.Fatalf("failure %d: delay %v after %v, want a growing delay up to the max", n, d, prev)
			}
			prev = d
		}
		if prev != forever {
			t.Errorf("delay after 80 failures %v, want the max", prev)
		}
	})
}

// waitFor polls cond until it holds, for up to 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}
