package workqueue_test

import (
	"context"
	"fmt"

	"github.com/podblocks/podblocks/workqueue"
)

func Example() {
	ctx := context.Background()
	q, _ := workqueue.NewMemory()
	defer q.Close()

	q.Add(ctx, []byte("resize cat.png"), workqueue.AddOptions{})
	q.Add(ctx, []byte("resize dog.png"), workqueue.AddOptions{Priority: 1}) // higher first

	for range 2 {
		it, _ := q.Lease(ctx)
		fmt.Printf("%s (attempt %d)\n", it.Payload, it.Attempt)
		q.Ack(ctx, it.Lease)
	}
	// Output:
	// resize dog.png (attempt 1)
	// resize cat.png (attempt 1)
}

func ExampleMemory_keys() {
	ctx := context.Background()
	q, _ := workqueue.NewMemory()
	defer q.Close()

	// Adds of a key that waits to be leased are absorbed: the object is synced once.
	a, _ := q.Add(ctx, []byte("v1"), workqueue.AddOptions{Key: "default/web"})
	b, _ := q.Add(ctx, []byte("v2"), workqueue.AddOptions{Key: "default/web"})
	fmt.Println(a == b)

	it, _ := q.Lease(ctx)
	// An add while the key is leased is kept, and leased only after the ack.
	q.Add(ctx, []byte("v3"), workqueue.AddOptions{Key: "default/web"})
	s, _ := q.Stats(ctx)
	fmt.Printf("leased %s; ready %d, waiting %d\n", it.Payload, s.Ready, s.Delayed)
	q.Ack(ctx, it.Lease)
	it, _ = q.Lease(ctx)
	fmt.Println("then", string(it.Payload))
	// Output:
	// true
	// leased v1; ready 0, waiting 1
	// then v3
}

func ExamplePool() {
	ctx, cancel := context.WithCancel(context.Background())
	q, _ := workqueue.NewMemory()
	defer q.Close()
	done := make(chan string)
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if it.Attempt == 1 {
			return fmt.Errorf("flaky") // retried after the backoff
		}
		done <- fmt.Sprintf("%s done on attempt %d", it.Payload, it.Attempt)
		return nil
	}), workqueue.WithConcurrency(4), workqueue.WithPoolMaxAttempts(3))
	stopped := make(chan error)
	go func() { stopped <- p.Run(ctx) }()

	q.Add(ctx, []byte("job"), workqueue.AddOptions{})
	fmt.Println(<-done)
	cancel()
	fmt.Println(<-stopped)
	// Output:
	// job done on attempt 2
	// <nil>
}
