package workqueue_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// An item that kills the worker handling it (its command kills the worker, or the pod is
// OOM-killed) reports no outcome: its lease runs out and it is leased again, for ever if nothing
// counts. Leased past the pool's max attempts, it is buried without being run, with a reason that
// says why, and counted as a dead letter.
func TestPoolBuriesItemThatKilledItsWorkers(t *testing.T) {
	ctx := context.Background()
	q := mustMemory(t, workqueue.WithLeaseDuration(50*time.Millisecond))
	id, err := q.Add(ctx, []byte("kills its worker"), workqueue.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Two workers died handling it: each lease ran out with no outcome reported.
	for want := 1; want <= 2; want++ {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		it, err := q.Lease(lctx)
		cancel()
		if err != nil || it.Attempt != want {
			t.Fatalf("lease %d: %+v, %v; want attempt %d", want, it, err, want)
		}
	}

	reg := prometheus.NewRegistry()
	var ran atomic.Int32
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error {
		ran.Add(1)
		return nil
	}), workqueue.WithPoolMaxAttempts(2), workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	await.True(t, "a dead letter", 20*time.Second, func() bool { s, _ := q.Stats(ctx); return s.Dead == 1 })
	stop()
	if n := ran.Load(); n != 0 {
		t.Errorf("the handler ran %d times on an item leased for attempt 3 of at most 2, want 0", n)
	}
	dead, err := q.Dead(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != id || dead[0].Attempts != 3 || !strings.Contains(dead[0].Reason, "reported no outcome") {
		t.Errorf("dead letters %+v, want item %s after 3 attempts with a reason that says the earlier ones reported no outcome", dead, id)
	}
	if diff := cmp.Diff(workqueue.Counts{Buried: 1}, p.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	want := []string{"podblocks_workqueue_dead_letters_total 1"}
	if diff := cmp.Diff(want, promscrape.Lines(t, reg, "podblocks_workqueue_dead_letters_total")); diff != "" {
		t.Errorf("dead-letter metric (-want +got):\n%s", diff)
	}
}
