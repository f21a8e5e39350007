package workqueue_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
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

// TestPoolRerunMetrics: a Pool's metrics are unregistered when its Run returns, so a new Pool
// (a Pool runs once) registers its own with the same registerer, and a scrape shows the second
// pool's counts.
func TestPoolRerunMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := mustMemory(t)
	ctx := context.Background()
	for i, items := range []int{2, 1} {
		p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
			workqueue.WithRegisterer(reg), workqueue.WithPoolName("w"))
		if err != nil {
			t.Fatalf("pool %d on the registerer the stopped one used: %v", i+1, err)
		}
		stop := runPool(t, p)
		for range items {
			if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		want := `podblocks_workqueue_items_total{outcome="acked",pool="w"} ` + itoa(items)
		var got []string
		await.True(t, "pool "+itoa(i+1)+"'s acks in its metrics", 10*time.Second, func() bool {
			got = promscrape.Lines(t, reg, `podblocks_workqueue_items_total{outcome="acked"`)
			return cmp.Equal([]string{want}, got)
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := promscrape.Lines(t, reg, "podblocks_workqueue_"); len(got) != 0 {
			t.Errorf("after pool %d's Run returned, the registerer still has %q", i+1, got)
		}
	}
}

// TestSourceRerunMetrics: a Source's metrics are unregistered when its Run returns, so a new
// Source registers its own with the same registerer, and a scrape shows the second one's counts;
// and a Source run again registers its metrics again.
func TestSourceRerunMetrics(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`, "b": `2`}}
	srv := httptest.NewServer(src)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	runUntilAdded := func(s *workqueue.Source, want int) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-s.Ready()
		await.True(t, "the Source's adds in its metrics", 10*time.Second, func() bool {
			return cmp.Equal([]string{`podblocks_workqueue_source_added_items_total{source="book"} ` + itoa(want)},
				promscrape.Lines(t, reg, "podblocks_workqueue_source_added_items_total"))
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := promscrape.Lines(t, reg, "podblocks_workqueue_source_"); len(got) != 0 {
			t.Errorf("after the Source's Run returned, the registerer still has %q", got)
		}
	}
	opts := []workqueue.SourceOption{workqueue.WithRegisterer(reg), workqueue.WithSourceName("book"), workqueue.WithPollInterval(10 * time.Millisecond)}
	s1, err := workqueue.NewSource(srv.URL, mustMemory(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	runUntilAdded(s1, 2)
	s2, err := workqueue.NewSource(srv.URL, mustMemory(t), opts...)
	if err != nil {
		t.Fatalf("a Source on the registerer the stopped one used: %v", err)
	}
	runUntilAdded(s2, 2)
	src.mu.Lock()
	src.items["c"] = `3`
	src.mu.Unlock()
	runUntilAdded(s2, 3) // run again: its metrics are back, with its counts
}

func itoa(n int) string { return strconv.Itoa(n) }
