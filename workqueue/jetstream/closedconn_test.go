package jetstream_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
)

// TestPoolEndsOnClosedConn: a Pool over a queue whose connection closes for good (its owner's
// Close, or nats.go giving up reconnecting) stops, and Run returns an error wrapping
// workqueue.ErrClosed and nats.ErrConnectionClosed, as a Pool over a Memory that closed returns
// ErrClosed. It used to lease again forever, every Lease failing with the closed connection's
// error, and Run returned only when its ctx ended.
func TestPoolEndsOnClosedConn(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []nats.Option
		end  func(nc *nats.Conn, node *natstest.Node)
	}{
		{"closed by its owner", nil, func(nc *nats.Conn, _ *natstest.Node) { nc.Close() }},
		{"reconnects given up", []nats.Option{nats.MaxReconnects(2), nats.ReconnectWait(20 * time.Millisecond)},
			func(_ *nats.Conn, node *natstest.Node) { node.Shutdown() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			node, err := natstest.Start(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(node.Shutdown)
			nc, err := nats.Connect(node.URL(), c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			q := openQueue(ctx, t, nc, "closedconn")
			var handled atomic.Int64
			p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error {
				handled.Add(1)
				return nil
			}), workqueue.WithConcurrency(2), workqueue.WithProgressEvery(0))
			if err != nil {
				t.Fatal(err)
			}
			pctx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- p.Run(pctx) }()
			if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
			await.True(t, "the item acked", 20*time.Second, func() bool { return p.Counts().Acked == 1 })
			c.end(nc, node)
			select {
			case err := <-done:
				if !errors.Is(err, workqueue.ErrClosed) || !errors.Is(err, nats.ErrConnectionClosed) {
					t.Errorf("Run: %v; want workqueue.ErrClosed and nats.ErrConnectionClosed", err)
				}
			case <-time.After(10 * time.Second):
				stop()
				t.Errorf("Run still running 10s after the connection closed (closed %v); it returned %v once its ctx ended", nc.IsClosed(), <-done)
			}
			if n := handled.Load(); n != 1 {
				t.Errorf("handled %d items, want 1", n)
			}
		})
	}
}
