package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// TestMetrics checks the queue's metrics against a known state, before and after a reopen on the
// same registerer (Close unregistered them), and that a second queue of the name is refused with
// its file closed.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	reg := prometheus.NewRegistry()
	opts := []bolt.Option{bolt.WithRegisterer(reg), bolt.WithQueueName("jobs"), bolt.WithLeaseDuration(time.Minute)}
	q, err := bolt.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c", "d"} {
		if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	q.Add(ctx, []byte("later"), workqueue.AddOptions{Delay: time.Hour})
	for i := range 3 {
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			err = q.Ack(ctx, it.Lease)
		case 1:
			err = q.Bury(ctx, it.Lease, "bad input")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// One item each dead, delayed, leased and ready.
	state := func(added int) []string {
		return []string{
			fmt.Sprintf(`podblocks_workqueue_queue_added_total{queue="jobs"} %d`, added),
			`podblocks_workqueue_queue_expired_leases_total{queue="jobs"} 0`,
			`podblocks_workqueue_queue_items{queue="jobs",state="dead"} 1`,
			`podblocks_workqueue_queue_items{queue="jobs",state="delayed"} 1`,
			`podblocks_workqueue_queue_items{queue="jobs",state="leased"} 1`,
			`podblocks_workqueue_queue_items{queue="jobs",state="ready"} 1`,
			`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 0`,
		}
	}
	if diff := cmp.Diff(state(5), promscrape.Lines(t, reg, "podblocks_workqueue_queue_")); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	if _, err := bolt.Open(context.Background(), other, opts...); err == nil {
		t.Error("a second queue named jobs on the registerer opened, want the registerer's error")
	}
	openT(t, other, bolt.WithOpenTimeout(100*time.Millisecond)) // the refused Open closed the file
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if got := promscrape.Lines(t, reg, "podblocks_workqueue_queue_"); len(got) != 0 {
		t.Errorf("metrics after Close: %q, want none", got)
	}

	openT(t, path, opts...) // the lease committed before the Close stays leased
	if diff := cmp.Diff(state(0), promscrape.Lines(t, reg, "podblocks_workqueue_queue_")); diff != "" {
		t.Errorf("metrics after a reopen (-want +got):\n%s", diff)
	}
}
