package jetstream_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/internal/natstest"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// The consume benchmarks time taking and acking b.N messages: through the queue (Lease + Ack) and
// through a raw nats.go Fetch + Ack loop, on the same kind of embedded server. The goal: the
// queue >= 0.8x the raw loop. Both sides go through benchConsume, so they get the same treatment:
// a fresh server, the same 100-byte messages on unique subjects, warmUp messages taken and acked
// through the same path before the timer starts, a garbage collection after the (untimed) fill,
// and the same metrics, among them the server's protocol messages in and out per item.

const warmUp = 2000

// msgCount is the server's count of protocol messages in (from clients) and out (to clients).
func msgCount(b *testing.B, node *natstest.Node) (in, out int64) {
	v, err := node.Server.Varz(nil)
	if err != nil {
		b.Fatal(err)
	}
	return v.InMsgs, v.OutMsgs
}

// fill publishes n 100-byte messages on subject(0) ... subject(n-1) and waits for their acks.
func fill(b *testing.B, js jetstream.JetStream, subject func(i int) string, n int) {
	payload := make([]byte, 100)
	for i := 0; i < n; i += 1000 {
		var futs []jetstream.PubAckFuture
		for j := i; j < min(i+1000, n); j++ {
			f, err := js.PublishAsync(subject(j), payload)
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
}

// consumeQueue leases and acks n items.
func consumeQueue(b *testing.B, q *wqjs.Queue, n int) {
	ctx := context.Background()
	for range n {
		it, err := q.Lease(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			b.Fatal(err)
		}
	}
}

// rawConsumer is the baseline's setup: a WorkQueue stream RAW (file storage, subjects raw.>) and a
// durable pull consumer with explicit acks and the queue's default AckWait.
func rawConsumer(b *testing.B, js jetstream.JetStream) jetstream.Consumer {
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: -1})
	if err != nil {
		b.Fatal(err)
	}
	return cons
}

// consumeRaw is the baseline's loop: Fetch(100) and msg.Ack() for each message, until n are acked.
func consumeRaw(b *testing.B, cons jetstream.Consumer, n int) {
	for got := 0; got < n; {
		batch, err := cons.Fetch(min(100, n-got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
			got++
		}
		if err := batch.Error(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchConsume warms up, fills b.N messages and times consume(b.N).
func benchConsume(b *testing.B, nc *nats.Conn, node *natstest.Node, prefix string, consume func(n int)) {
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	subject := func(base int) func(i int) string {
		return func(i int) string { return fmt.Sprintf("%s.%d", prefix, base+i) }
	}
	fill(b, js, subject(0), warmUp)
	consume(warmUp)
	fill(b, js, subject(warmUp), b.N)
	runtime.GC()
	b.ReportAllocs()
	in0, out0 := msgCount(b, node)
	b.ResetTimer()
	consume(b.N)
	b.StopTimer()
	in1, out1 := msgCount(b, node)
	b.ReportMetric(float64(in1-in0)/float64(b.N), "srv-in/item")
	b.ReportMetric(float64(out1-out0)/float64(b.N), "srv-out/item")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

func benchQueue(b *testing.B, opts ...wqjs.Option) {
	nc, node := startNode(b)
	q, err := wqjs.Open(context.Background(), nc, "bench", opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	benchConsume(b, nc, node, "wq.bench.u", func(n int) { consumeQueue(b, q, n) })
}

// BenchmarkQueueBatch is the queue with the raw loop's settings: pulls of 100 and plain acks.
func BenchmarkQueueBatch(b *testing.B) {
	benchQueue(b, wqjs.WithFetchBatch(100), wqjs.WithAsyncAck())
}

// BenchmarkQueueDefault is the queue as configured by default: pulls of up to 10, acks confirmed.
func BenchmarkQueueDefault(b *testing.B) { benchQueue(b) }

// BenchmarkQueueSingle takes exactly one message per Lease (WithFetchBatch(1)), acks confirmed.
func BenchmarkQueueSingle(b *testing.B) { benchQueue(b, wqjs.WithFetchBatch(1)) }

// BenchmarkRawFetchAck is the baseline: a WorkQueue stream, a durable pull consumer, Fetch(100) and
// msg.Ack() for each message.
func BenchmarkRawFetchAck(b *testing.B) {
	nc, node := startNode(b)
	js, _ := jetstream.New(nc)
	cons := rawConsumer(b, js)
	benchConsume(b, nc, node, "raw", func(n int) { consumeRaw(b, cons, n) })
}

// BenchmarkInterleaved alternates rounds of 2,000 messages between the queue (batch 100, plain
// acks) and the raw Fetch(100)+Ack loop, on one server, and reports the throughput ratio
// queue/raw over all rounds: on a noisy shared machine, alternating in small rounds keeps both
// sides under the same load. A first round, not timed, warms both up. Run with -benchtime 1x
// (each iteration is 20 rounds).
func BenchmarkInterleaved(b *testing.B) {
	nc, _ := startNode(b)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	q, err := wqjs.Open(ctx, nc, "inter", wqjs.WithFetchBatch(100), wqjs.WithAsyncAck())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	cons := rawConsumer(b, js)
	const rounds, per = 20, 2000
	var tq, tr time.Duration
	for r := -1; r < rounds*b.N; r++ {
		base := (r + 1) * per
		fill(b, js, func(i int) string { return fmt.Sprintf("wq.inter.u.%d", base+i) }, per)
		fill(b, js, func(i int) string { return fmt.Sprintf("raw.%d", base+i) }, per)
		queue := func() {
			start := time.Now()
			consumeQueue(b, q, per)
			if r >= 0 {
				tq += time.Since(start)
			}
		}
		raw := func() {
			start := time.Now()
			consumeRaw(b, cons, per)
			if r >= 0 {
				tr += time.Since(start)
			}
		}
		if r%2 == 0 {
			queue()
			raw()
		} else {
			raw()
			queue()
		}
	}
	n := float64(rounds * b.N * per)
	b.ReportMetric(n/tq.Seconds(), "queue-items/s")
	b.ReportMetric(n/tr.Seconds(), "raw-items/s")
	b.ReportMetric(tr.Seconds()/tq.Seconds(), "queue/raw")
}
