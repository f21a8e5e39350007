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

// report adds items/s, and how long the producer's adds took per item (the rest of the time the
// workers drained what it had left).
func report(b *testing.B, added time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(added.Nanoseconds())/float64(b.N), "add-ns/item")
}

// BenchmarkPodblocksMemory: 1 producer adds b.N keyless items; 8 workers Lease and Ack.
func BenchmarkPodblocksMemory(b *testing.B) {
	q, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var processed atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				it, err := q.Lease(ctx)
				if err != nil {
					return
				}
				if err := q.Ack(ctx, it.Lease); err != nil {
					panic(err)
				}
				if processed.Add(1) == n {
					close(all)
				}
			}
		}()
	}
	start := time.Now()
	for range b.N {
		if _, err := q.Add(ctx, nil, workqueue.AddOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	added := time.Since(start)
	<-all
	b.StopTimer()
	q.Close()
	wg.Wait()
	report(b, added)
}

// batch is how many items a worker of BenchmarkPodblocksMemoryBatch leases (and then acks) at once.
const batch = 64

// BenchmarkPodblocksMemoryBatch: the same producer; each of the 8 workers leases up to 64 ready
// items with one LeaseBatch, handles them one by one, and acks them with one AckBatch.
func BenchmarkPodblocksMemoryBatch(b *testing.B) {
	q, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var processed atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
				if processed.Add(int64(k)) == n {
					close(all)
				}
			}
		}()
	}
	start := time.Now()
	for range b.N {
		if _, err := q.Add(ctx, nil, workqueue.AddOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	added := time.Since(start)
	<-all
	b.StopTimer()
	q.Close()
	wg.Wait()
	report(b, added)
}

// BenchmarkClientGo: the same with client-go's typed queue (Add / Get / Done; distinct int items).
func BenchmarkClientGo(b *testing.B) {
	q := kwq.NewTyped[int]()
	var processed atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				it, shutdown := q.Get()
				if shutdown {
					return
				}
				q.Done(it)
				if processed.Add(1) == n {
					close(all)
				}
			}
		}()
	}
	start := time.Now()
	for i := range b.N {
		q.Add(i)
	}
	added := time.Since(start)
	<-all
	b.StopTimer()
	q.ShutDown()
	wg.Wait()
	report(b, added)
}
