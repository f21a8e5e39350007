package workqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// BenchmarkCopier moves b.N keyless items from one Memory queue to another: "stage" through a
// Copier (lease, add, ack, keeping the input's lease while the add runs), "loop" with the same
// three calls made by hand, the floor a stage's own cost adds to. An op is one item moved, so
// ns/op (and ns/item), B/op and allocs/op are per item.
func BenchmarkCopier(b *testing.B) {
	b.Run("stage", func(b *testing.B) {
		benchMove(b, func(ctx context.Context, in, out *workqueue.Memory) error {
			c, err := workqueue.NewCopier(in, []workqueue.Queue{out})
			if err != nil {
				return err
			}
			return c.Run(ctx)
		})
	})
	b.Run("loop", func(b *testing.B) {
		benchMove(b, func(ctx context.Context, in, out *workqueue.Memory) error {
			for {
				it, err := in.Lease(ctx)
				if err != nil {
					return nil // ctx ended
				}
				if _, err := out.Add(ctx, it.Payload, workqueue.AddOptions{Key: it.Key}); err != nil {
					return err
				}
				if err := in.Ack(ctx, it.Lease); err != nil {
					return err
				}
			}
		})
	})
}

// benchMove times move, run until ctx ends, moving b.N items from in to out.
func benchMove(b *testing.B, move func(ctx context.Context, in, out *workqueue.Memory) error) {
	in, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	payload := []byte("a work item's payload of about sixty-four bytes, as a job name is")
	for range b.N {
		if _, err := in.Add(context.Background(), payload, workqueue.AddOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() { done <- move(ctx, in, out) }()
	for {
		s, err := in.Stats(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if s.Depth() == 0 { // every item acked, so added
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/item")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if s, _ := out.Stats(context.Background()); s.Depth() != int64(b.N) {
		b.Fatalf("out has %d items, want %d", s.Depth(), b.N)
	}
}
