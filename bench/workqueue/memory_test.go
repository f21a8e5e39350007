// Package workqueue compares podblocks' in-memory work queue with client-go's
// (k8s.io/client-go/util/workqueue) on the same workload: one producer, eight workers, no-op
// handler. Run ./run.sh for alternating runs, medians and the ratio.
package workqueue

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

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

// BenchmarkChannelFloor is not a queue: the same producer and 8 workers hand ints over a buffered
// Go channel (room for 1024), with nothing else per item (no dedup, no leases, no unbounded
// backlog). It is a floor for this machine and mode: what one hand-off between the producer and the
// workers costs with the runtime's own primitive, to set beside the 2x-client-go goal.
func BenchmarkChannelFloor(b *testing.B) {
	ch := make(chan int, 1024)
	flow(b, func(i int) { ch <- i }, func(done func(int)) {
		for range ch {
			done(1)
		}
	}, func() { close(ch) })
}

// apiFloor is not a queue either: it does per item only what the Queue API makes every backend do
// (an ID string for Add to return, a fresh *Item for Lease to hand out, with its lease token and a
// deadline read from the clock, and a token for Ack to parse) over the channel of
// BenchmarkChannelFloor. The names ("<id>.1": the ID and the first token) are cut from shared
// 512-byte arrays, as the Memory queue cuts them. It keeps no lease table, no dedup, no order and
// no backlog of its own: whatever a queue costs beyond it is its bookkeeping.
type apiFloor struct {
	ch   chan string
	base time.Time
	n    uint64
	buf  []byte
}

func (f *apiFloor) add() string {
	f.n++
	if cap(f.buf) < 22 { // f.buf is the rest of the array, len 0
		f.buf = make([]byte, 0, 512)
	}
	b := strconv.AppendUint(f.buf, f.n, 10)
	b = append(b, '.', '1')
	f.buf = b[len(b):]
	name := unsafe.String(unsafe.SliceData(b), len(b))
	f.ch <- name
	return name[:len(name)-2]
}

// lease hands out the next name as an Item cut from the caller's block of 4 (the Memory queue cuts
// its Items from blocks of 4 too, per lease shard; a worker's own block takes no lock).
//
//go:noinline
func (f *apiFloor) lease(block *[]workqueue.Item) (*workqueue.Item, bool) {
	name, ok := <-f.ch
	if !ok {
		return nil, false
	}
	if len(*block) == 0 {
		*block = make([]workqueue.Item, 4)
	}
	it := &(*block)[0]
	*block = (*block)[1:]
	it.ID, it.Attempt, it.Lease = name[:len(name)-2], 1, name
	it.Deadline = f.base.Add(time.Since(f.base) + 30*time.Second)
	return it, true
}

func (f *apiFloor) ack(lease string) error {
	_, _, err := workqueue.ParseLease(lease)
	return err
}

// BenchmarkAPIFloor: the same producer and 8 workers over apiFloor (see there): the per-item cost the
// API implies, with the runtime's channel for the hand-off.
func BenchmarkAPIFloor(b *testing.B) {
	f := &apiFloor{ch: make(chan string, 1024), base: time.Now()}
	var ids atomic.Int64 // keeps add's result alive
	flow(b, func(int) { ids.Add(int64(len(f.add()))) }, func(done func(int)) {
		var block []workqueue.Item
		for {
			it, ok := f.lease(&block)
			if !ok {
				return
			}
			if err := f.ack(it.Lease); err != nil {
				panic(err)
			}
			done(1)
		}
	}, func() { close(f.ch) })
}
