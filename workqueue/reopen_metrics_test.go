package workqueue_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// TestMemoryReopenMetrics: a queue closed and another made with the same registerer (a reopen
// after a failure, a test's next case) registers its metrics, and a scrape shows the second
// queue's counts, not the first's.
func TestMemoryReopenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	for i, adds := range []int{3, 1} {
		q, err := workqueue.NewMemory(workqueue.WithRegisterer(reg), workqueue.WithQueueName("jobs"))
		if err != nil {
			t.Fatalf("queue %d on the registerer the closed one used: %v", i+1, err)
		}
		for range adds {
			if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{
			`podblocks_workqueue_queue_added_total{queue="jobs"} ` + itoa(adds),
			`podblocks_workqueue_queue_items{queue="jobs",state="ready"} ` + itoa(adds),
		}
		got := promscrape.Lines(t, reg, `podblocks_workqueue_queue_added_total`, `podblocks_workqueue_queue_items{queue="jobs",state="ready"}`)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("queue %d's metrics (-want +got):\n%s", i+1, diff)
		}
		q.Close()
		if got := promscrape.Lines(t, reg, "podblocks_workqueue_queue_"); len(got) != 0 {
			t.Errorf("after queue %d closed, the registerer still has %q", i+1, got)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
