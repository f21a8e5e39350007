package jetstream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
	"github.com/podblocks/podblocks/workqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNode starts a single node and connects to it; both end with the test or benchmark.
func startNode(tb testing.TB) (*nats.Conn, *natstest.Node) {
	tb.Helper()
	node, err := natstest.Start(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc, node
}

// startConn is startNode for a test that needs only the connection.
func startConn(t *testing.T) *nats.Conn {
	t.Helper()
	nc, _ := startNode(t)
	return nc
}

var queueN atomic.Int64

func TestConformance(t *testing.T) {
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	newQueue := func(t *testing.T, c workqueuetest.Config) workqueue.Queue {
		nc, err := nats.Connect(node.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		q, err := wqjs.Open(ctx, nc, fmt.Sprintf("t%d", queueN.Add(1)), wqjs.WithLeaseDuration(c.LeaseDuration), wqjs.WithMaxAttempts(c.MaxAttempts))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	workqueuetest.TestQueue(t, newQueue, workqueuetest.WithoutPriority(), workqueuetest.WithoutKeyTurns())
}

// TestPoolPanicDeadLetters runs a Pool over a JetStream queue whose handler panics: the item is
// retried, then (after the queue's max attempts) published to the dead-letter stream.
func TestPoolPanicDeadLetters(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "panics", wqjs.WithMaxAttempts(2), wqjs.WithLeaseDuration(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var calls atomic.Int64
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		calls.Add(1)
		panic("handler bug")
	}), workqueue.WithBackoff(func(int) time.Duration { return 50 * time.Millisecond }), workqueue.WithProgressEvery(0))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	if _, err := q.Add(ctx, []byte("boom"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var dead []workqueue.DeadItem
	for len(dead) == 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		dead, _ = q.Dead(ctx, 10)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(dead) != 1 || string(dead[0].Payload) != "boom" || dead[0].Attempts != 2 {
		t.Fatalf("dead letters %+v, want boom after 2 attempts", dead)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}
