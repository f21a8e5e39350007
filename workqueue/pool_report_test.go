package workqueue_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// TestPoolReportsOutcomeAfterServerRestart: an item finished while its server is away (answering
// 503, as a stopping one does) is acked once the server is back, not done again when its lease runs
// out: the Pool makes the Ack again while the queue is unavailable.
func TestPoolReportsOutcomeAfterServerRestart(t *testing.T) {
	q := mustMemory(t)
	ss, cl := swapServed(t, q)
	var calls atomic.Int32
	started, finish := make(chan struct{}), make(chan struct{})
	h := workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-finish
		return nil
	})
	p, err := workqueue.NewPool(cl, h, workqueue.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	<-started
	var away http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"workqueue: server stopping"}`, http.StatusServiceUnavailable)
	})
	ss.h.Store(&away)
	close(finish)
	time.Sleep(time.Second) // the Ack fails, and is made again, while the server is away
	if s, _ := q.Stats(bg(t)); s.Leased != 1 {
		t.Fatalf("while the server is away: %+v, want the item still leased", s)
	}
	ss.serve(t, q)
	await.True(t, "the ack to land", 20*time.Second, func() bool { s, _ := q.Stats(bg(t)); return s.Depth() == 0 })
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want once", n)
	}
	if c := p.Counts(); c.Acked != 1 {
		t.Errorf("counts %+v, want one acked", c)
	}
}
