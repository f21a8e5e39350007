package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// queueMetrics are the prefixes of the queue metrics' samples and TYPE lines.
var queueMetrics = []string{"podblocks_workqueue_queue_", "# TYPE podblocks_workqueue_queue_"}

// memoryWithMetrics is a Memory queue with leases of lease and its metrics registered with the
// registry returned. Both end with the test.
func memoryWithMetrics(t *testing.T, lease time.Duration) (*workqueue.Memory, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return mustMemory(t, workqueue.WithRegisterer(reg), workqueue.WithLeaseDuration(lease)), reg
}

// TestMemoryMetrics checks each of a Memory queue's metrics against a known state: five items
// added (one delayed), one acked, one buried, one whose lease expired, one leased.
func TestMemoryMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q, reg := memoryWithMetrics(t, time.Minute)
		for _, p := range []string{"a", "b", "c", "d"} {
			if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.Add(ctx, []byte("later"), workqueue.AddOptions{Delay: time.Hour}); err != nil {
			t.Fatal(err)
		}
		lease := func() *workqueue.Item {
			it, err := q.Lease(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return it
		}
		if err := q.Ack(ctx, lease().Lease); err != nil {
			t.Fatal(err)
		}
		if err := q.Bury(ctx, lease().Lease, "bad input"); err != nil {
			t.Fatal(err)
		}
		lease()                               // c: its lease runs out
		time.Sleep(time.Minute + time.Second) // the Lease below finds it expired
		lease()                               // c again, or d
		want := []string{
			"# TYPE podblocks_workqueue_queue_added_total counter",
			"podblocks_workqueue_queue_added_total 5",
			"# TYPE podblocks_workqueue_queue_expired_leases_total counter",
			"podblocks_workqueue_queue_expired_leases_total 1",
			"# TYPE podblocks_workqueue_queue_items gauge",
			`podblocks_workqueue_queue_items{state="dead"} 1`,
			`podblocks_workqueue_queue_items{state="delayed"} 1`,
			`podblocks_workqueue_queue_items{state="leased"} 1`,
			`podblocks_workqueue_queue_items{state="ready"} 1`,
			"# TYPE podblocks_workqueue_queue_stats_errors_total counter",
			"podblocks_workqueue_queue_stats_errors_total 0",
		}
		if diff := cmp.Diff(want, promscrape.Lines(t, reg, queueMetrics...)); diff != "" {
			t.Errorf("metrics (-want +got):\n%s", diff)
		}
	})
}

// TestMemoryMetricsExpireAtScrape: a lease that ran out with no call of the queue since is counted
// by the scrape itself, which reads Stats, and Stats makes the item ready again.
func TestMemoryMetricsExpireAtScrape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q, reg := memoryWithMetrics(t, time.Second)
		q.Add(ctx, []byte("a"), workqueue.AddOptions{})
		if _, err := q.Lease(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		got := promscrape.Lines(t, reg, queueMetrics...)
		for _, want := range []string{"podblocks_workqueue_queue_expired_leases_total 1", `podblocks_workqueue_queue_items{state="ready"} 1`, `podblocks_workqueue_queue_items{state="leased"} 0`} {
			if !strings.Contains(strings.Join(got, "\n"), want) {
				t.Errorf("scrape without %q:\n%s", want, strings.Join(got, "\n"))
			}
		}
	})
}

// TestQueuesShareRegisterer: queues named with WithQueueName register with one registerer (and a
// Pool with them), told apart by the queue label; an unnamed one beside them, or a second unnamed
// one, gets an error that says how;
// Close unregisters a queue's metrics, once, so that a queue of the same name can register again.
func TestQueuesShareRegisterer(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	thumbs := mustMemory(t, workqueue.WithRegisterer(reg), workqueue.WithQueueName("thumbnails"))
	reports := mustMemory(t, workqueue.WithRegisterer(reg), workqueue.WithQueueName("reports"))
	if _, err := workqueue.NewPool(thumbs, ackAll, workqueue.WithRegisterer(reg)); err != nil {
		t.Fatalf("a pool on the queues' registerer: %v", err)
	}
	thumbs.Add(ctx, []byte("cat.png"), workqueue.AddOptions{})
	thumbs.Add(ctx, []byte("dog.png"), workqueue.AddOptions{})
	reports.Add(ctx, []byte("q3"), workqueue.AddOptions{Delay: time.Hour})
	added := func() []string {
		var out []string
		for _, l := range promscrape.Lines(t, reg, queueMetrics...) {
			if strings.HasPrefix(l, "podblocks_workqueue_queue_added_total") || strings.HasPrefix(l, `podblocks_workqueue_queue_items{queue="reports",state="delayed"}`) {
				out = append(out, l)
			}
		}
		return out
	}
	want := []string{
		`podblocks_workqueue_queue_added_total{queue="reports"} 1`,
		`podblocks_workqueue_queue_added_total{queue="thumbnails"} 2`,
		`podblocks_workqueue_queue_items{queue="reports",state="delayed"} 1`,
	}
	if diff := cmp.Diff(want, added()); diff != "" {
		t.Errorf("metrics of three queues (-want +got):\n%s", diff)
	}

	if _, err := workqueue.NewMemory(workqueue.WithRegisterer(reg)); err == nil || !strings.Contains(err.Error(), "WithQueueName") {
		t.Errorf("an unnamed queue beside named ones: %v, want an error naming WithQueueName", err)
	}
	unnamed := prometheus.NewRegistry()
	mustMemory(t, workqueue.WithRegisterer(unnamed))
	_, err := workqueue.NewMemory(workqueue.WithRegisterer(unnamed))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || !strings.Contains(err.Error(), "an unnamed queue is registered already") || !strings.Contains(err.Error(), "WithQueueName") {
		t.Errorf("a second unnamed queue on one registerer: %v, want an AlreadyRegisteredError saying an unnamed queue is registered and naming WithQueueName", err)
	}
	if _, err := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName("reports")); !errors.As(err, &are) || !strings.Contains(err.Error(), `a queue named "reports" is registered already`) {
		t.Errorf("a second queue named reports: %v, want an AlreadyRegisteredError saying the name is taken", err)
	}

	reports.Close()
	again := mustMemory(t, workqueue.WithRegisterer(reg), workqueue.WithQueueName("reports"))
	again.Add(ctx, []byte("q4"), workqueue.AddOptions{Delay: time.Hour}) // the new queue's one item
	reports.Close()                                                      // again: unregisters nothing of again's
	if diff := cmp.Diff(want, added()); diff != "" {
		t.Errorf("after a Close and a new queue of its name (-want +got):\n%s", diff)
	}

	// Shutdown, client-go's ShutDownWithDrain, which a caller may use instead of Close, also
	// unregisters: a queue of the name can be made again.
	if err := again.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName("reports")); err != nil {
		t.Errorf("a queue named reports after the last one's Shutdown: %v", err)
	}
}

// TestStatsCollectorFailure: a Stats call that fails or hangs neither fails the scrape nor holds
// it past the timeout: the gauges are left out and the failure counted.
func TestStatsCollectorFailure(t *testing.T) {
	for name, stats := range map[string]func(context.Context) (workqueue.Stats, error){
		"error": func(context.Context) (workqueue.Stats, error) { return workqueue.Stats{}, errors.New("down") },
		"hang": func(ctx context.Context) (workqueue.Stats, error) {
			<-ctx.Done()
			return workqueue.Stats{}, ctx.Err()
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				reg.MustRegister(workqueue.NewStatsCollector("jobs", stats, nil))
				start := time.Now()
				promscrape.Lines(t, reg, queueMetrics...)
				got := promscrape.Lines(t, reg, queueMetrics...)
				if d := time.Since(start); d != 4*time.Second && name == "hang" || d != 0 && name == "error" {
					t.Errorf("two scrapes took %v, want the 2s timeout each at most", d)
				}
				want := []string{
					"# TYPE podblocks_workqueue_queue_stats_errors_total counter",
					`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 2`,
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("metrics (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestStatsCollectorClosedQueue: once Stats says the queue is closed for good (ErrClosed, as a
// workqueue/jetstream queue's does when its NATS connection closed), scrapes leave the gauges out
// without counting an error or reading Stats again. They used to count an error at every scrape.
func TestStatsCollectorClosedQueue(t *testing.T) {
	var calls, closed atomic.Int64
	stats := func(context.Context) (workqueue.Stats, error) {
		calls.Add(1)
		if closed.Load() != 0 {
			return workqueue.Stats{}, fmt.Errorf("consumer info: %w: connection closed", workqueue.ErrClosed)
		}
		return workqueue.Stats{Ready: 2}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(workqueue.NewStatsCollector("jobs", stats, nil))
	lines := func() []string { return promscrape.Lines(t, reg, "podblocks_workqueue_queue_") }
	if got := lines(); len(got) != 5 || got[3] != `podblocks_workqueue_queue_items{queue="jobs",state="ready"} 2` {
		t.Fatalf("scrape of an open queue: %q", got)
	}
	closed.Store(1)
	for i := range 5 {
		if diff := cmp.Diff([]string{`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 0`}, lines()); diff != "" {
			t.Fatalf("scrape %d of a closed queue (-want +got):\n%s", i+1, diff)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("Stats called %d times, want 2: once open, once to find it closed", n)
	}
}
