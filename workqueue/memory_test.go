package workqueue_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMemory(t *testing.T, c workqueuetest.Config) workqueue.Queue {
	q, err := workqueue.NewMemory(workqueue.WithLeaseDuration(c.LeaseDuration), workqueue.WithMaxAttempts(c.MaxAttempts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestMemoryConformance(t *testing.T) { workqueuetest.TestQueue(t, newMemory) }
