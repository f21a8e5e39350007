package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// outageQueue is a fake Queue: its queue's, whose calls fail with an error wrapping ErrUnavailable
// while down is set, as a workqueue/jetstream queue's do while its NATS server cannot be reached,
// and whose Ack fails so for its first failAcks calls as well.
type outageQueue struct {
	workqueue.Queue
	down     atomic.Bool
	failAcks atomic.Int32
}

var errOutage = fmt.Errorf("fake NATS outage: %w", workqueue.ErrUnavailable)

func (q *outageQueue) err() error {
	if q.down.Load() {
		return errOutage
	}
	return nil
}

func (q *outageQueue) Add(ctx context.Context, payload []byte, o workqueue.AddOptions) (string, error) {
	if err := q.err(); err != nil {
		return "", err
	}
	return q.Queue.Add(ctx, payload, o)
}

func (q *outageQueue) Lease(ctx context.Context) (*workqueue.Item, error) {
	if err := q.err(); err != nil {
		return nil, err
	}
	return q.Queue.Lease(ctx)
}

func (q *outageQueue) Ack(ctx context.Context, lease string) error {
	if err := q.err(); err != nil {
		return err
	}
	if q.failAcks.Add(-1) >= 0 {
		return errOutage
	}
	return q.Queue.Ack(ctx, lease)
}

func (q *outageQueue) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if err := q.err(); err != nil {
		return err
	}
	return q.Queue.Nack(ctx, lease, delay)
}

func (q *outageQueue) Extend(ctx context.Context, lease string) (time.Time, error) {
	if err := q.err(); err != nil {
		return time.Time{}, err
	}
	return q.Queue.Extend(ctx, lease)
}

func (q *outageQueue) Bury(ctx context.Context, lease, reason string) error {
	if err := q.err(); err != nil {
		return err
	}
	return q.Queue.Bury(ctx, lease, reason)
}

func (q *outageQueue) Dead(ctx context.Context, max int) ([]workqueue.DeadItem, error) {
	if err := q.err(); err != nil {
		return nil, err
	}
	return q.Queue.Dead(ctx, max)
}

func (q *outageQueue) Stats(ctx context.Context) (workqueue.Stats, error) {
	if err := q.err(); err != nil {
		return workqueue.Stats{}, err
	}
	return q.Queue.Stats(ctx)
}

// serveOutage serves an API over an outageQueue of a Memory and returns the queue, the server and
// a Client of it.
func serveOutage(t *testing.T) (*outageQueue, *httptest.Server, *workqueue.Client) {
	t.Helper()
	q := &outageQueue{Queue: mustMemory(t)}
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv, cl := serveHandler(t, api)
	return q, srv, cl
}

// TestAPIAnswersUnavailableWith503: a queue unavailable for now (a jetstream queue during a NATS
// outage) is 503 with Retry-After on every endpoint, not 500, so that a Client returns
// ErrUnavailable and a Pool over it tries again.
func TestAPIAnswersUnavailableWith503(t *testing.T) {
	q, srv, cl := serveOutage(t)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	q.down.Store(true)
	ctx := bg(t)
	for name, call := range map[string]func() error{
		"Add":     func() error { _, err := cl.Add(ctx, []byte("y"), workqueue.AddOptions{}); return err },
		"Lease":   func() error { _, err := cl.Lease(ctx); return err },
		"Ack":     func() error { return cl.Ack(ctx, it.Lease) },
		"Nack":    func() error { return cl.Nack(ctx, it.Lease, 0) },
		"Release": func() error { return cl.Release(ctx, it.Lease) },
		"Extend":  func() error { _, err := cl.Extend(ctx, it.Lease); return err },
		"Bury":    func() error { return cl.Bury(ctx, it.Lease, "r") },
		"Stats":   func() error { _, err := cl.Stats(ctx); return err },
		"Dead":    func() error { _, err := cl.Dead(ctx, 10); return err },
	} {
		if err := call(); !errors.Is(err, workqueue.ErrUnavailable) || errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Client.%s over an unavailable queue: %v; want an error wrapping ErrUnavailable", name, err)
		}
	}

	resp, err := srv.Client().Get(srv.URL + workqueue.APIPrefix + "stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("GET stats of an unavailable queue: %d, Retry-After %q; want 503, Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Back: the item is still leased, and its lease still held.
	q.down.Store(false)
	if err := cl.Ack(ctx, it.Lease); err != nil {
		t.Errorf("Ack once the queue is back: %v", err)
	}
}

// TestPoolOverAPIRetriesUnavailableAck: a Pool over a Client makes an item's Ack again while the
// API's queue is unavailable (a jetstream queue's NATS server down for a moment), so the item is
// acked once it is back, not done again when its lease runs out.
func TestPoolOverAPIRetriesUnavailableAck(t *testing.T) {
	q, _, cl := serveOutage(t)
	q.failAcks.Store(2)
	var calls atomic.Int32
	p, err := workqueue.NewPool(cl, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error {
		calls.Add(1)
		return nil
	}), workqueue.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the ack to land", 20*time.Second, func() bool { s, _ := q.Stats(bg(t)); return s.Depth() == 0 })
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want once", n)
	}
	await.True(t, "the pool to count the ack", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	if c := p.Counts(); c != (workqueue.Counts{Acked: 1}) {
		t.Errorf("counts %+v, want one acked", c)
	}
	if n := 2 - q.failAcks.Load(); n != 3 {
		t.Errorf("the queue got %d Ack calls, want 3: two that failed, then one that landed", n)
	}
}
