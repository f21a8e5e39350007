package jetstream_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestCancelledLeaseLosesNothing cancels blocking Leases (no deadline, so the pull is cut by the
// cancel) again and again while items are added: every item must be leased well within AckWait, at
// attempt 1 (each is acked when leased). A message the server delivers to a pull whose Lease has
// just been cancelled used to be dropped by the client: leased to nobody, it cost a delivery and
// came back only after AckWait, at attempt 2.
func TestCancelledLeaseLosesNothing(t *testing.T) {
	nc := startConn(t)
	for _, batch := range []int{1, 10} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			const items, leasers = 300, 4
			const ackWait = 30 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			q, err := wqjs.Open(ctx, nc, fmt.Sprintf("cancel%d", batch), wqjs.WithLeaseDuration(ackWait), wqjs.WithFetchBatch(batch))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()

			var mu sync.Mutex
			leased := map[string]int{} // times Lease returned the item
			var bad []string
			done := make(chan struct{})
			var wg sync.WaitGroup
			for range leasers {
				wg.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						lctx, lcancel := context.WithCancel(ctx)
						stop := time.AfterFunc(time.Duration(rand.IntN(2000))*time.Microsecond, lcancel)
						it, err := q.Lease(lctx)
						stop.Stop()
						lcancel()
						if err != nil {
							continue
						}
						mu.Lock()
						leased[it.ID]++
						if it.Attempt != leased[it.ID] {
							bad = append(bad, fmt.Sprintf("item %s at attempt %d, leased %d times", it.ID, it.Attempt, leased[it.ID]))
						}
						mu.Unlock()
						if err := q.Ack(ctx, it.Lease); err != nil {
							mu.Lock()
							bad = append(bad, fmt.Sprintf("ack %s: %v", it.ID, err))
							mu.Unlock()
						}
					}
				})
			}
			for i := range items {
				if _, err := q.Add(ctx, fmt.Appendf(nil, "%d", i), workqueue.AddOptions{}); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
			}
			// Every item should be leased soon after it was added; a lost delivery comes back only after
			// AckWait (30s).
			deadline := time.Now().Add(10 * time.Second)
			n := 0
			for time.Now().Before(deadline) {
				mu.Lock()
				n = len(leased)
				mu.Unlock()
				if n == items {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			close(done)
			wg.Wait()
			if n != items {
				t.Errorf("%d of %d items leased within 10s of the last add (AckWait %v)", n, items, ackWait)
			}
			for _, b := range bad {
				t.Error(b)
			}
		})
	}
}

// TestCancelledLeaseNoTaker: an item delivered to the pull of a cancelled Lease when no other Lease
// comes is given back within a second, not after AckWait (at attempt 2: the delivery was counted),
// and a delayed item given back that way still waits out its delay.
func TestCancelledLeaseNoTaker(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "notaker", wqjs.WithLeaseDuration(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, delay := range []time.Duration{0, 3 * time.Second} {
		lctx, lcancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, lcancel)
		if it, err := q.Lease(lctx); err == nil {
			t.Fatalf("Lease on an empty queue returned %s", it.ID)
		}
		added := time.Now()
		id, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{Delay: delay})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // no Lease meanwhile
		lctx, lcancel = context.WithTimeout(ctx, 10*time.Second)
		it, err := q.Lease(lctx)
		lcancel()
		if err != nil {
			t.Fatalf("delay %v: Lease: %v (AckWait 30s)", delay, err)
		}
		waited := time.Since(added)
		if it.ID != id || waited < delay || it.Attempt > 2 {
			t.Errorf("delay %v: leased %s at attempt %d after %v; want %s, attempt <= 2, not before the delay", delay, it.ID, it.Attempt, waited, id)
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseKeepsDelayOfPulledItems: a delayed item whose first delivery sits in a batch pull when
// the queue closes is given back with the rest of its delay, not made ready at once.
func TestCloseKeepsDelayOfPulledItems(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() *wqjs.Queue {
		q, err := wqjs.Open(ctx, nc, "closedelay", wqjs.WithLeaseDuration(30*time.Second), wqjs.WithFetchBatch(10))
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	q := open()
	if _, err := q.Add(ctx, []byte("now"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	const delay = 4 * time.Second
	added := time.Now()
	later, err := q.Add(ctx, []byte("later"), workqueue.AddOptions{Delay: delay})
	if err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx) // the batch pull brings "later" too; it stays in the pull
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = open()
	defer q.Close()
	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	defer lcancel()
	it, err = q.Lease(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(added); it.ID != later || waited < delay {
		t.Errorf("leased %s (%q) %v after its Add; want %s not before its delay %v", it.ID, it.Payload, waited, later, delay)
	}
}
