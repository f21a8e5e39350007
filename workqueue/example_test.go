package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"

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

func ExampleLeaseBatch() {
	ctx := context.Background()
	q, _ := workqueue.NewMemory()
	defer q.Close()
	for _, f := range []string{"a.png", "b.png", "c.png"} {
		q.Add(ctx, []byte(f), workqueue.AddOptions{})
	}

	// One call leases up to len(items) ready items, each with its own lease; one call acks them.
	items := make([]workqueue.Item, 2)
	var leases []string
	for s, _ := q.Stats(ctx); s.Ready > 0; s, _ = q.Stats(ctx) {
		n, _ := workqueue.LeaseBatch(ctx, q, items)
		leases = leases[:0]
		for _, it := range items[:n] {
			fmt.Printf("%s ", it.Payload)
			leases = append(leases, it.Lease)
		}
		fmt.Println("- batch of", n)
		if err := workqueue.AckBatch(ctx, q, leases); err != nil {
			fmt.Println(err)
		}
	}
	// An ack of a lease no longer held fails for that lease alone.
	err := workqueue.AckBatch(ctx, q, leases)
	fmt.Println(errors.Is(err, workqueue.ErrLeaseLost))
	// Output:
	// a.png b.png - batch of 2
	// c.png - batch of 1
	// true
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

func ExampleExecWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, _ := os.MkdirTemp("", "results-")
	defer os.RemoveAll(out)

	q, _ := workqueue.NewMemory()
	defer q.Close()
	id, _ := q.Add(ctx, []byte("resize cat.png"), workqueue.AddOptions{Key: "cat.png"})

	// Any program is a worker: it reads WORK_ITEM_FILE and writes its results to OUTPUT_DIR.
	w, _ := workqueue.NewExecWorker([]string{"sh", "-c", `tr a-z A-Z < "$WORK_ITEM_FILE" > "$OUTPUT_DIR/result"`},
		workqueue.WithOutputRoot(out))
	p, _ := workqueue.NewPool(q, w, workqueue.WithConcurrency(4), workqueue.WithPoolMaxAttempts(5))
	stopped := make(chan error)
	go func() { stopped <- p.Run(ctx) }()

	for s, _ := q.Stats(ctx); s.Depth() > 0; s, _ = q.Stats(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	b, _ := os.ReadFile(filepath.Join(out, id, "result"))
	fmt.Print(string(b))
	// Output:
	// RESIZE CAT.PNG
}

// Queues named with WithQueueName share a registerer; their metrics are read from the queues when
// the registerer's gatherer is scraped (here by Gather), so Add, Lease and Ack pay nothing for them.
func ExampleWithRegisterer() {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	thumbs, _ := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName("thumbnails"))
	defer thumbs.Close()
	reports, _ := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName("reports"))
	defer reports.Close()

	thumbs.Add(ctx, []byte("cat.png"), workqueue.AddOptions{})
	thumbs.Add(ctx, []byte("dog.png"), workqueue.AddOptions{})
	thumbs.Lease(ctx)
	reports.Add(ctx, []byte("weekly"), workqueue.AddOptions{Delay: time.Hour})

	printMetric(reg, "podblocks_workqueue_queue_items")
	// Output:
	// podblocks_workqueue_queue_items{queue="reports",state="dead"} 0
	// podblocks_workqueue_queue_items{queue="reports",state="delayed"} 1
	// podblocks_workqueue_queue_items{queue="reports",state="leased"} 0
	// podblocks_workqueue_queue_items{queue="reports",state="ready"} 0
	// podblocks_workqueue_queue_items{queue="thumbnails",state="dead"} 0
	// podblocks_workqueue_queue_items{queue="thumbnails",state="delayed"} 0
	// podblocks_workqueue_queue_items{queue="thumbnails",state="leased"} 1
	// podblocks_workqueue_queue_items{queue="thumbnails",state="ready"} 1
}

// printMetric prints the samples of the metric called name that g gathers, in the text format.
func printMetric(g prometheus.Gatherer, name string) {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			var b strings.Builder
			expfmt.MetricFamilyToText(&b, mf)
			for l := range strings.Lines(b.String()) {
				if !strings.HasPrefix(l, "#") {
					fmt.Print(l)
				}
			}
		}
	}
}

// A pipeline stage takes WithLogger and WithRegisterer as every constructor of the package does;
// its metrics tell what became of its input items.
func ExampleNewFilter() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, reg := zap.NewNop(), prometheus.NewRegistry()
	uploads, _ := workqueue.NewMemory(workqueue.WithQueueName("uploads"), workqueue.WithLogger(log), workqueue.WithRegisterer(reg))
	defer uploads.Close()
	images, _ := workqueue.NewMemory(workqueue.WithQueueName("images"), workqueue.WithLogger(log), workqueue.WithRegisterer(reg))
	defer images.Close()

	png := func(it *workqueue.Item) bool { return strings.HasSuffix(string(it.Payload), ".png") }
	f, err := workqueue.NewFilter(uploads, images, png,
		workqueue.WithStageName("only-images"), workqueue.WithLogger(log), workqueue.WithRegisterer(reg))
	if err != nil {
		fmt.Println(err)
		return
	}
	stopped := make(chan error)
	go func() { stopped <- f.Run(ctx) }()
	for _, name := range []string{"cat.png", "notes.txt", "dog.png"} {
		uploads.Add(ctx, []byte(name), workqueue.AddOptions{})
	}
	for s, _ := uploads.Stats(ctx); s.Depth() > 0; s, _ = uploads.Stats(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	printMetric(reg, "podblocks_workqueue_stage_items_total")
	// Output:
	// podblocks_workqueue_stage_items_total{outcome="buried",stage="only-images"} 0
	// podblocks_workqueue_stage_items_total{outcome="dropped",stage="only-images"} 1
	// podblocks_workqueue_stage_items_total{outcome="lost",stage="only-images"} 0
	// podblocks_workqueue_stage_items_total{outcome="passed",stage="only-images"} 2
	// podblocks_workqueue_stage_items_total{outcome="released",stage="only-images"} 0
}
