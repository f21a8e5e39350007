// Package workqueue compares podblocks' in-memory work queue with client-go's
// (k8s.io/client-go/util/workqueue) on the same workload: one producer, eight workers, no-op
// handler. Run ./run.sh for alternating runs, medians and the ratio.
package workqueue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kwq "k8s.io/client-go/util/workqueue"

	"github.com/podblocks/podblocks/workqueue"
)

const workers = 8

// batch is how many items a worker of BenchmarkPodblocksMemoryBatch leases (and then acks) at once.
const batch = 64

// flow is the workload of every benchmark here: 8 workers run work until it returns; one producer
// calls add for b.N items; the clock stops when the workers have reported b.N items done; then
// stop ends the queue and the workers. It reports items/s, and how long the producer's adds took
// per item (for the rest of the time the workers drained what it had left).
func flow(b *testing.B, add func(i int), work func(done func(k int)), stop func()) {
	var processed atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	done := func(k int) {
		if processed.Add(int64(k)) == n {
			close(all)
		}
	}
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(done)
		}()
	}
	start := time.Now()
	for i := range b.N {
		add(i)
	}
	added := time.Since(start)
	<-all
	b.StopTimer()
	stop()
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(added.Nanoseconds())/float64(b.N), "add-ns/item")
}

// memoryFlow is flow over a Memory queue: the producer adds keyless items.
func memoryFlow(b *testing.B, work func(ctx context.Context, q *workqueue.Memory, done func(k int))) {
	q, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	flow(b, func(int) {
		if _, err := q.Add(ctx, nil, workqueue.AddOptions{}); err != nil {
			b.Fatal(err)
		}
	}, func(done func(int)) { work(ctx, q, done) }, func() { q.Close() })
}

// BenchmarkPodblocksMemory: 1 producer adds b.N keyless items; 8 workers Lease and Ack.
func BenchmarkPodblocksMemory(b *testing.B) {
	memoryFlow(b, func(ctx context.Context, q *workqueue.Memory, done func(int)) {
		for {
			it, err := q.Lease(ctx)
			if err != nil {
				return
			}
			if err := q.Ack(ctx, it.Lease); err != nil {
				panic(err)
			}
			done(1)
		}
	})
}

// BenchmarkPodblocksMemoryBatch: the same producer; each of the 8 workers leases up to 64 ready
// items with one LeaseBatch, handles them one by one, and acks them with one AckBatch.
func BenchmarkPodblocksMemoryBatch(b *testing.B) {
	memoryFlow(b, func(ctx context.Context, q *workqueue.Memory, done func(int)) {
		items := make([]workqueue.Item, batch)
		leases := make([]string, batch)
		for {
			k, err := q.LeaseBatch(ctx, items)
			if err != nil {
				return
			}
			for i := range k {
				leases[i] = items[i].Lease // the no-op handler
			}
			if err := q.AckBatch(ctx, leases[:k]); err != nil {
				panic(err)
			}
			done(k)
		}
	})
}

// BenchmarkPodblocksPool: the same producer; a workqueue.Pool with 8 workers and a no-op handler
// takes the items. This is what a user of the Pool gets: each item is leased with Lease and acked
// with Ack, and the Pool adds its per-item work (the item's context, its worker's lease-extension
// timer, panic recovery, metrics).
func BenchmarkPodblocksPool(b *testing.B) {
	var once sync.Once // one of the flow's 8 workers runs the Pool; the others return
	memoryFlow(b, func(ctx context.Context, q *workqueue.Memory, done func(int)) {
		once.Do(func() {
			p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error {
				done(1)
				return nil
			}), workqueue.WithConcurrency(workers), workqueue.WithProgressEvery(0))
			if err != nil {
				panic(err)
			}
			p.Run(ctx) // ErrClosed once the flow closes q
		})
	})
}

// BenchmarkClientGo: the same with client-go's typed queue (Add / Get / Done; distinct int items).
func BenchmarkClientGo(b *testing.B) {
	q := kwq.NewTyped[int]()
	flow(b, q.Add, func(done func(int)) {
		for {
			it, shutdown := q.Get()
			if shutdown {
				return
			}
			q.Done(it)
			done(1)
		}
	}, q.ShutDown)
}
