package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// waitForPull waits until the consumer of queue name has a pull request waiting on the server.
func waitForPull(ctx context.Context, t *testing.T, nc *nats.Conn, name string) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "WQ_"+name, wqjs.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if ci, err := cons.Info(ctx); err == nil && ci.NumWaiting > 0 {
			return
		}
	}
	t.Fatal("no pull request reached the server within 5s")
}

// TestCloseGivesBackPulledMessage closes a queue right after an add, while the server delivers the
// item to the queue's blocking pull (a Lease waiting on an empty queue, or the pull a cancelled
// Lease left running): unless that Lease got the item, a second queue must lease it well within
// AckWait, and every item must be leased and acked exactly once. Close used to cancel the pull,
// and nats.go dropped a message on its way to it, which then came back only after AckWait.
func TestCloseGivesBackPulledMessage(t *testing.T) {
	nc := startConn(t)
	const ackWait = 30 * time.Second
	const rounds = 40
	for _, batch := range []int{1, 10} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := fmt.Sprintf("closepull%d", batch)
			open := func() *wqjs.Queue {
				q, err := wqjs.Open(ctx, nc, name, wqjs.WithLeaseDuration(ackWait), wqjs.WithFetchBatch(batch))
				if err != nil {
					t.Fatal(err)
				}
				return q
			}
			q2 := open() // leases what the closed queues gave back
			defer q2.Close()
			givenBack := 0
			for round := range rounds {
				q1 := open()
				orphan := round%2 == 1
				lctx, lcancel := context.WithCancel(ctx)
				type result struct {
					it  *workqueue.Item
					err error
				}
				leased := make(chan result, 1)
				go func() {
					it, err := q1.Lease(lctx)
					leased <- result{it, err}
				}()
				waitForPull(ctx, t, nc, name)
				if orphan {
					lcancel() // the Lease returns; its pull runs on
					if r := <-leased; !errors.Is(r.err, context.Canceled) {
						t.Fatalf("round %d: cancelled Lease: %v, %v", round, r.it, r.err)
					}
				}
				id, err := q1.Add(ctx, fmt.Appendf(nil, "%d", round), workqueue.AddOptions{})
				if err != nil {
					t.Fatal(err)
				}
				closed := time.Now()
				q1.Close()
				var got *workqueue.Item
				if !orphan {
					if r := <-leased; r.err == nil {
						got = r.it // the Lease had it before Close: it is handed out, and acked below
						if err := q1.Ack(ctx, got.Lease); err != nil {
							t.Fatalf("round %d: ack on the closed queue: %v", round, err)
						}
					} else if !errors.Is(r.err, workqueue.ErrClosed) {
						t.Fatalf("round %d: Lease on the closing queue: %v", round, r.err)
					}
				}
				lcancel()
				if got == nil {
					givenBack++
					lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
					it, err := q2.Lease(lctx)
					lcancel()
					if err != nil {
						t.Fatalf("round %d: item %s not leased by the second queue within 5s of Close (AckWait %v): %v", round, id, ackWait, err)
					}
					if it.ID != id || it.Attempt > 2 {
						t.Fatalf("round %d: second queue leased %s at attempt %d, want %s at attempt 1 or 2", round, it.ID, it.Attempt, id)
					}
					if waited := time.Since(closed); waited > 5*time.Second {
						t.Fatalf("round %d: leased %v after Close", round, waited)
					}
					if err := q2.Ack(ctx, it.Lease); err != nil {
						t.Fatalf("round %d: ack: %v", round, err)
					}
				} else if got.ID != id {
					t.Fatalf("round %d: leased %s, want %s", round, got.ID, id)
				}
			}
			// Nothing is left over: no second delivery of an item, and nothing pending on the server.
			lctx, lcancel := context.WithTimeout(ctx, time.Second)
			if it, err := q2.Lease(lctx); err == nil {
				t.Errorf("item %s (attempt %d) leased again after its ack", it.ID, it.Attempt)
			}
			lcancel()
			if s, err := q2.Stats(ctx); err != nil || s.Ready != 0 || s.Leased != 0 {
				t.Errorf("stats after the rounds: %+v, %v; want nothing ready or leased", s, err)
			}
			t.Logf("%d of %d items were given back by Close", givenBack, rounds)
		})
	}
}
