package workqueue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// opaqueQueue is a user's own Queue: its lease tokens are opaque strings (Item.Lease's doc) of a
// shape no podblocks backend uses.
type opaqueQueue struct{ workqueue.Queue }

func (q opaqueQueue) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Queue.Lease(ctx)
	if err == nil {
		it.Lease = "tok-" + it.Lease
	}
	return it, err
}

func (q opaqueQueue) Ack(ctx context.Context, l string) error {
	return q.Queue.Ack(ctx, strings.TrimPrefix(l, "tok-"))
}

func (q opaqueQueue) Nack(ctx context.Context, l string, d time.Duration) error {
	return q.Queue.Nack(ctx, strings.TrimPrefix(l, "tok-"), d)
}

func (q opaqueQueue) Extend(ctx context.Context, l string) (time.Time, error) {
	return q.Queue.Extend(ctx, strings.TrimPrefix(l, "tok-"))
}

func (q opaqueQueue) Bury(ctx context.Context, l, r string) error {
	return q.Queue.Bury(ctx, strings.TrimPrefix(l, "tok-"), r)
}

// TestAPIOpaqueTokens: the API serves any Queue, and Client any API; neither may refuse a token for
// its shape when the queue behind is not one whose tokens it knows (a Pool over such a Client never
// acked: every item ran again until max attempts). A token the queue does not hold is still
// ErrLeaseLost.
func TestAPIOpaqueTokens(t *testing.T) {
	q := opaqueQueue{newMemory(t, workqueuetest.Config{LeaseDuration: 10 * time.Second})}
	_, cl := serve(t, q)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Extend(bg(t), it.Lease); err != nil {
		t.Errorf("Client.Extend(%q) over an API over a Queue with opaque tokens: %v", it.Lease, err)
	}
	if err := cl.Ack(bg(t), it.Lease); err != nil {
		t.Errorf("Client.Ack(%q) over an API over a Queue with opaque tokens: %v", it.Lease, err)
	}
	if err := cl.Ack(bg(t), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("a second Client.Ack(%q): %v, want ErrLeaseLost", it.Lease, err)
	}
}
