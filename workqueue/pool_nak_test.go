package workqueue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestPoolNackWithoutAnswer: a Pool's Nack that gets no answer within the outcome budget (the
// NATS server is silent, and its nak reaches it late) is made again, and the queue takes the
// retry without sending the nak again (the first one may be carried out): the item counts as
// retried, not lost, and comes back once, after the nak's delay. The retry used to get
// ErrLeaseLost once the delay had passed, and the Pool counted the item as lost.
func TestPoolNackWithoutAnswer(t *testing.T) {
	o := silentNATS(t)
	t.Cleanup(o.heal)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, o.nc, "poolnak", wqjs.WithLeaseDuration(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var handled atomic.Int64
	release := make(chan struct{})
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if handled.Add(1) == 1 {
			<-release
			return errors.New("fail the first attempt")
		}
		return nil
	}), workqueue.WithProgressEvery(0), workqueue.WithOutcomeBudget(300*time.Millisecond),
		workqueue.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	if _, err := q.Add(ctx, []byte("twice"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the item handled", 20*time.Second, func() bool { return handled.Load() == 1 })
	o.cut()
	close(release) // the handler fails; its nak gets no answer, and reaches the server late
	await.True(t, "the first attempt's outcome", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	o.heal()
	await.True(t, "the second attempt's outcome", 20*time.Second, func() bool { return p.Counts().Acked == 1 })
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if c, n := p.Counts(), handled.Load(); c != (workqueue.Counts{Acked: 1, Retried: 1}) || n != 2 {
		t.Errorf("counts %+v, handled %d times; want 1 retried, 1 acked, handled twice", c, n)
	}
}
