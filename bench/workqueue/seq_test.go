package workqueue

import (
	"context"
	"testing"

	kwq "k8s.io/client-go/util/workqueue"

	"github.com/podblocks/podblocks/workqueue"
)

// BenchmarkSequentialPodblocks is Add, Lease, Ack in one goroutine: the cost of the operations
// without any hand-over between goroutines.
func BenchmarkSequentialPodblocks(b *testing.B) {
	q, _ := workqueue.NewMemory()
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		q.Add(ctx, nil, workqueue.AddOptions{})
		it, _ := q.Lease(ctx)
		q.Ack(ctx, it.Lease)
	}
}

// BenchmarkSequentialClientGo is Add, Get, Done in one goroutine.
func BenchmarkSequentialClientGo(b *testing.B) {
	q := kwq.NewTyped[int]()
	defer q.ShutDown()
	b.ReportAllocs()
	for i := range b.N {
		q.Add(i)
		it, _ := q.Get()
		q.Done(it)
	}
}
