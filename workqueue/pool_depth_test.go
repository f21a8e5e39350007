package workqueue_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// depthNone is what a scrape shows of a pool's depth when the gauge is left out and no Stats
// error was counted.
var depthNone = []string{`podblocks_workqueue_depth_stats_errors_total 0`}

// TestPoolDepthOverClosedClient: a Pool over a Client, run and stopped, its Client closed: the
// scrapes leave the depth gauge out, without counting a Stats error or logging one each.
func TestPoolDepthOverClosedClient(t *testing.T) {
	q := mustMemory(t)
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	c, err := workqueue.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(c, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg), workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	logs.TakeAll()
	const scrapes = 50
	for range scrapes {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(depthNone, promscrape.Lines(t, reg, "podblocks_workqueue_depth")); diff != "" {
		t.Errorf("after %d scrapes of a stopped pool over a closed Client (-want +got):\n%s", scrapes, diff)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("%d scrapes of a stopped pool over a closed Client logged %d warnings, want none: %v", scrapes, n, logs.All()[0].Message)
	}
}

// TestPoolDepthOfClosedMemory: a Pool whose Memory closed under it (Run returned ErrClosed) does
// not report the items the closed queue's Stats still counts.
func TestPoolDepthOfClosedMemory(t *testing.T) {
	q := mustMemory(t)
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg), workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{`podblocks_workqueue_depth_items 3`, depthNone[0]},
		promscrape.Lines(t, reg, "podblocks_workqueue_depth")); diff != "" {
		t.Errorf("before Close (-want +got):\n%s", diff)
	}
	q.Close()
	if err := p.Run(context.Background()); !errors.Is(err, workqueue.ErrClosed) {
		t.Fatalf("Run over a closed queue: %v, want ErrClosed", err)
	}
	if diff := cmp.Diff(depthNone, promscrape.Lines(t, reg, "podblocks_workqueue_depth")); diff != "" {
		t.Errorf("after Close and Run (-want +got):\n%s", diff)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("%d warnings, want none: %v", n, logs.All()[0].Message)
	}
}

// flakyStats is a queue whose Stats fails while fail is set.
type flakyStats struct {
	*workqueue.Memory
	fail atomic.Bool
}

var errStatsDown = errors.New("stats down")

func (q *flakyStats) Stats(ctx context.Context) (workqueue.Stats, error) {
	if q.fail.Load() {
		return workqueue.Stats{}, errStatsDown
	}
	return q.Memory.Stats(ctx)
}

// TestStatsScrapeErrorsLoggedOnce: a Stats that fails at each scrape is counted at each, and logged
// once a run of failures, and the run's end once, by a pool's depth collector and by
// NewStatsCollector's alike.
func TestStatsScrapeErrorsLoggedOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		metric string
		want   []string // the metric's lines once Stats works again
		build  func(reg prometheus.Registerer, q *flakyStats, log *zap.Logger)
	}{{
		name: "pool", metric: "podblocks_workqueue_depth",
		want: []string{`podblocks_workqueue_depth_items 0`, `podblocks_workqueue_depth_stats_errors_total 5`},
		build: func(reg prometheus.Registerer, q *flakyStats, log *zap.Logger) {
			if _, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
				workqueue.WithRegisterer(reg), workqueue.WithLogger(log)); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "NewStatsCollector", metric: "podblocks_workqueue_queue_stats_errors_total",
		want: []string{`podblocks_workqueue_queue_stats_errors_total{queue="q"} 5`},
		build: func(reg prometheus.Registerer, q *flakyStats, log *zap.Logger) {
			reg.MustRegister(workqueue.NewStatsCollector("q", q.Stats, log))
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			q := &flakyStats{Memory: mustMemory(t)}
			core, logs := observer.New(zap.InfoLevel)
			reg := prometheus.NewRegistry()
			tc.build(reg, q, zap.New(core))
			q.fail.Store(true)
			for range 5 {
				if _, err := reg.Gather(); err != nil {
					t.Fatal(err)
				}
			}
			q.fail.Store(false)
			if diff := cmp.Diff(tc.want, promscrape.Lines(t, reg, tc.metric)); diff != "" {
				t.Errorf("after 5 failed scrapes and a good one (-want +got):\n%s", diff)
			}
			var got []string
			for _, e := range logs.All() {
				got = append(got, e.Level.String())
			}
			if diff := cmp.Diff([]string{zapcore.WarnLevel.String(), zapcore.InfoLevel.String()}, got); diff != "" {
				t.Errorf("log levels of 5 failed scrapes and a good one (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPoolUnregisterRacesRunAndScrapes: Unregister from several goroutines while Run runs and
// scrapes go on: no panic, no race, and nothing of the pool's left on the registerer.
func TestPoolUnregisterRacesRunAndScrapes(t *testing.T) {
	q := mustMemory(t)
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg), workqueue.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, err := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); err != nil {
					t.Error(err)
				}
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range 3 {
		wg.Go(p.Unregister)
	}
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := promscrape.Lines(t, reg, "podblocks_workqueue_"); len(got) != 0 {
		t.Errorf("after Unregister: %q", got)
	}
}
