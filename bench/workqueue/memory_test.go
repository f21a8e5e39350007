// Package workqueue compares podblocks' in-memory work queue with client-go's
// (k8s.io/client-go/util/workqueue) on the same workload: one producer, eight workers, no-op
// handler. Run ./run.sh for alternating runs, medians and the ratio.
package workqueue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	kwq "k8s.io/client-go/util/workqueue"

	"github.com/podblocks/podblocks/workqueue"
)

const workers = 8

func report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
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
	for range b.N {
		if _, err := q.Add(ctx, nil, workqueue.AddOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	b.StopTimer()
	q.Close()
	wg.Wait()
	report(b)
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
	for i := range b.N {
		q.Add(i)
	}
	<-all
	b.StopTimer()
	q.ShutDown()
	wg.Wait()
	report(b)
}
