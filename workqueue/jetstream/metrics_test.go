package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestMetrics checks the queue's metrics against a known state (one item each ready, leased and
// dead), labelled with the queue's name; a second queue of the name on the registerer is refused;
// a scrape whose Stats fails leaves the gauges out and counts the failure, unless the failure is
// the connection closed for good.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc := startConn(t)
	reg := prometheus.NewRegistry()
	q := openQueue(ctx, t, nc, "jobs", wqjs.WithRegisterer(reg), wqjs.WithFetchBatch(1), wqjs.WithLeaseDuration(time.Minute))
	for _, p := range []string{"a", "b", "c", "d"} {
		if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
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
	want := []string{
		`podblocks_workqueue_queue_items{queue="jobs",state="dead"} 1`,
		`podblocks_workqueue_queue_items{queue="jobs",state="delayed"} 0`,
		`podblocks_workqueue_queue_items{queue="jobs",state="leased"} 1`,
		`podblocks_workqueue_queue_items{queue="jobs",state="ready"} 1`,
		`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 0`,
	}
	var got []string
	defer func() {
		if t.Failed() {
			t.Logf("last scrape: %q", got)
		}
	}()
	await.True(t, "the server's counts", 10*time.Second, func() bool {
		got = promscrape.Lines(t, reg, "podblocks_workqueue_queue_")
		return cmp.Equal(want, got)
	})
	if _, err := wqjs.Open(ctx, nc, "jobs", wqjs.WithRegisterer(reg)); err == nil || !strings.Contains(err.Error(), "registered already") {
		t.Errorf("a second queue jobs on the registerer: %v, want the registerer's error", err)
	}

	// Without its dead-letter stream the queue cannot count its dead: the scrape says so (an
	// error counted, no gauges) instead of a dead count of 0.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "WQ_jobs_DEAD"); err != nil {
		t.Fatal(err)
	}
	got = promscrape.Lines(t, reg, "podblocks_workqueue_queue_")
	if diff := cmp.Diff([]string{`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 1`}, got); diff != "" {
		t.Errorf("a scrape without the dead-letter stream (-want +got):\n%s", diff)
	}

	// A closed connection closes the queue for good: its scrapes leave the gauges out without
	// counting an error each (they used to, at every scrape, for as long as it stayed registered).
	nc.Close()
	for i := range 5 {
		got = promscrape.Lines(t, reg, "podblocks_workqueue_queue_")
		if diff := cmp.Diff([]string{`podblocks_workqueue_queue_stats_errors_total{queue="jobs"} 1`}, got); diff != "" {
			t.Fatalf("scrape %d with the connection closed (-want +got):\n%s", i+1, diff)
		}
	}
}

// TestMetricsReopen: Close unregisters the queue's metrics, so the queue opened again on the same
// registerer (a reopen after a failure) registers its own, and a scrape shows them.
func TestMetricsReopen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc := startConn(t)
	reg := prometheus.NewRegistry()
	for i := range 2 {
		q, err := wqjs.Open(ctx, nc, "jobs", wqjs.WithRegisterer(reg))
		if err != nil {
			t.Fatalf("open %d on the registerer the closed queue used: %v", i+1, err)
		}
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []string{fmt.Sprintf(`podblocks_workqueue_queue_items{queue="jobs",state="ready"} %d`, i+1)}
		var got []string
		await.True(t, "the server's count", 10*time.Second, func() bool {
			got = promscrape.Lines(t, reg, `podblocks_workqueue_queue_items{queue="jobs",state="ready"}`)
			return cmp.Equal(want, got)
		})
		q.Close()
		if got := promscrape.Lines(t, reg, "podblocks_workqueue_queue_"); len(got) != 0 {
			t.Errorf("metrics after Close %d: %q, want none", i+1, got)
		}
	}
}
