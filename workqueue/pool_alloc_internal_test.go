package workqueue

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
)

// ackingQueue takes every Ack and nothing else: process calls nothing else for an item whose
// handler succeeds well within its lease.
type ackingQueue struct{ Queue }

func (ackingQueue) Ack(context.Context, string) error { return nil }

// TestPoolProcessAllocs: a worker runs an item whose handler succeeds, and acks it, with two
// allocations, both the item's context's (context.WithCancelCause: the context and its cancel
// function). A third, the errors.As target for the outcome's error, moved to the heap and
// declared for every item, came with the "outcome not taken before the lease ended" log line.
func TestPoolProcessAllocs(t *testing.T) {
	p, err := NewPool(ackingQueue{}, HandlerFunc(func(context.Context, *Item) error { return nil }), WithProgressEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := newPoolWorker(p, ctx, ctx, zap.NewNop())
	defer w.close()
	it := &Item{ID: "1", Lease: "1.1.1", Attempt: 1, Deadline: time.Now().Add(time.Hour)}
	w.process(it) // the first item makes the outcome ctx and arms the timer
	if n := testing.AllocsPerRun(1000, func() { w.process(it) }); n > 2 {
		t.Errorf("an acked item: %v allocations, want at most 2", n)
	}
	if c := p.Counts(); c.Acked != 1002 || c != (Counts{Acked: c.Acked}) {
		t.Errorf("counts %+v, want 1002 acked", c)
	}
}
