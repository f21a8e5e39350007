package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/internal/natstest"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// The consume benchmarks fill a stream with b.N messages (not timed) and then time taking and
// acking all of them: through the queue (Lease + Ack) and through a raw nats.go Fetch + Ack loop,
// on the same embedded server. The goal: the queue >= 0.8x the raw loop.

func benchServer(b *testing.B) *nats.Conn {
	node, err := natstest.Start(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

func fill(b *testing.B, js jetstream.JetStream, subject func(i int) string, n int) {
	ctx := context.Background()
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
			case <-ctx.Done():
			}
		}
	}
}

func benchQueue(b *testing.B, opts ...wqjs.Option) {
	nc := benchServer(b)
	ctx := context.Background()
	q, err := wqjs.Open(ctx, nc, "bench", opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	js, _ := jetstream.New(nc)
	fill(b, js, func(i int) string { return fmt.Sprintf("wq.bench.u.%d", i) }, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		it, err := q.Lease(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkQueueBatch is the queue with the raw loop's settings: pulls of 100 and plain acks.
func BenchmarkQueueBatch(b *testing.B) {
	benchQueue(b, wqjs.WithFetchBatch(100), wqjs.WithAsyncAck())
}

// BenchmarkQueueDefault is the queue as configured by default: pulls of up to 10, acks confirmed.
func BenchmarkQueueDefault(b *testing.B) { benchQueue(b) }

// BenchmarkRawFetchAck is the baseline: a WorkQueue stream, a durable pull consumer, Fetch(100) and
// msg.Ack() for each message.
func BenchmarkRawFetchAck(b *testing.B) {
	nc := benchServer(b)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: -1})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, js, func(i int) string { return fmt.Sprintf("raw.%d", i) }, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	for got < b.N {
		batch, err := cons.Fetch(min(100, b.N-got), jetstream.FetchMaxWait(5*time.Second))
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
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkQueueSingle takes exactly one message per Lease (WithFetchBatch(1)), acks confirmed.
func BenchmarkQueueSingle(b *testing.B) { benchQueue(b, wqjs.WithFetchBatch(1)) }

// BenchmarkInterleaved alternates rounds of 2,000 messages between the queue (batch 100, plain
// acks) and the raw Fetch(100)+Ack loop, on one server, and reports the throughput ratio
// queue/raw over all rounds: on a noisy shared machine, alternating in small rounds keeps both
// sides under the same load. Run with -benchtime 1x; -rounds via the loop below (20 rounds).
func BenchmarkInterleaved(b *testing.B) {
	nc := benchServer(b)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	q, err := wqjs.Open(ctx, nc, "inter", wqjs.WithFetchBatch(100), wqjs.WithAsyncAck())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: -1})
	if err != nil {
		b.Fatal(err)
	}
	const rounds, per = 20, 2000
	var tq, tr time.Duration
	seq := 0
	for r := range rounds * b.N {
		base := seq
		fill(b, js, func(i int) string { return fmt.Sprintf("wq.inter.u.%d", base+i) }, per)
		fill(b, js, func(i int) string { return fmt.Sprintf("raw.%d", base+i) }, per)
		seq += per
		queue := func() {
			start := time.Now()
			for range per {
				it, err := q.Lease(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Ack(ctx, it.Lease); err != nil {
					b.Fatal(err)
				}
			}
			tq += time.Since(start)
		}
		raw := func() {
			start := time.Now()
			for got := 0; got < per; {
				batch, err := cons.Fetch(min(100, per-got), jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				for m := range batch.Messages() {
					m.Ack()
					got++
				}
			}
			tr += time.Since(start)
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
