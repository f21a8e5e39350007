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
