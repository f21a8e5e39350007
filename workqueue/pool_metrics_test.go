package workqueue_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// statsFailQueue is a Memory whose Stats fails while fail is set.
type statsFailQueue struct {
	*workqueue.Memory
	fail bool
}

func (q *statsFailQueue) Stats(ctx context.Context) (workqueue.Stats, error) {
	if q.fail {
		return workqueue.Stats{}, errors.New("queue unreachable")
	}
	return q.Memory.Stats(ctx)
}

// The pool's depth gauge is read from the queue at each scrape. A scrape at which the read fails
// leaves it out and counts the failure, as the queue's own collector does, rather than reporting a
// depth of -1 that an autoscaler or an alert would take for a real one.
func TestPoolDepthLeftOutWhenStatsFails(t *testing.T) {
	q := &statsFailQueue{Memory: mustMemory(t)}
	if _, err := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zap.WarnLevel)
	_, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg), workqueue.WithPoolName("p"), workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	depth := []string{"podblocks_workqueue_depth_", "# TYPE podblocks_workqueue_depth_"}
	for _, step := range []struct {
		fail bool
		want []string
	}{
		{false, []string{
			"# TYPE podblocks_workqueue_depth_items gauge",
			`podblocks_workqueue_depth_items{pool="p"} 1`,
			"# TYPE podblocks_workqueue_depth_stats_errors_total counter",
			`podblocks_workqueue_depth_stats_errors_total{pool="p"} 0`,
		}},
		{true, []string{
			"# TYPE podblocks_workqueue_depth_stats_errors_total counter",
			`podblocks_workqueue_depth_stats_errors_total{pool="p"} 1`,
		}},
	} {
		q.fail = step.fail
		if diff := cmp.Diff(step.want, promscrape.Lines(t, reg, depth...)); diff != "" {
			t.Errorf("scrape with Stats failing %v (-want +got):\n%s", step.fail, diff)
		}
	}
	if n := logs.FilterMessage("queue depth for metrics").Len(); n != 1 {
		t.Errorf("%d warnings of the failed read, want 1", n)
	}
}
