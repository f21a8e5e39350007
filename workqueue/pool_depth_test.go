package workqueue_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
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
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// depthNone is what a scrape shows of a pool's depth when the gauge is left out and no Stats
// error was counted.
var depthNone = []string{`podblocks_workqueue_depth_stats_errors_total 0`}

// observedPool is a Pool over q that acks every item, with its metrics on the registry returned
// and its warnings in the logs returned.
func observedPool(t *testing.T, q workqueue.Queue) (*workqueue.Pool, *prometheus.Registry, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg), workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	return p, reg, logs
}

// addThree adds three items to q, open, and checks that a scrape of reg shows a pool's depth of 3.
func addThree(t *testing.T, q workqueue.Queue, reg *prometheus.Registry) {
	t.Helper()
	for range 3 {
		if _, err := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{`podblocks_workqueue_depth_items 3`, depthNone[0]},
		promscrape.Lines(t, reg, "podblocks_workqueue_depth")); diff != "" {
		t.Errorf("three items added to the open queue (-want +got):\n%s", diff)
	}
}

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
	p, reg, logs := observedPool(t, c)
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
	p, reg, logs := observedPool(t, q)
	addThree(t, q, reg)
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

// TestPoolDepthOfQueueClosedAfterRun: a Pool stopped by its ctx (so its Lease never saw
// ErrClosed), whose Memory or bolt queue is closed afterwards, leaves the depth gauge out rather
// than reporting the items the closed queue held, without counting or logging a Stats error. It
// used to report them at every scrape: a closed Memory's Stats still answered.
func TestPoolDepthOfQueueClosedAfterRun(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) workqueue.Queue{
		"memory": func(t *testing.T) workqueue.Queue { return mustMemory(t) },
		"bolt": func(t *testing.T) workqueue.Queue {
			q, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return q
		},
	} {
		t.Run(name, func(t *testing.T) {
			q := open(t)
			p, reg, logs := observedPool(t, q)
			stop := runPool(t, p)
			if err := stop(); err != nil {
				t.Fatalf("Run stopped by its ctx: %v", err)
			}
			addThree(t, q, reg)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if diff := cmp.Diff(depthNone, promscrape.Lines(t, reg, "podblocks_workqueue_depth")); diff != "" {
					t.Fatalf("after Close (-want +got):\n%s", diff)
				}
			}
			if n := logs.Len(); n != 0 {
				t.Errorf("%d warnings, want none: %v", n, logs.All()[0].Message)
			}
		})
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
