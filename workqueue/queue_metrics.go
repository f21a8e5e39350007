package workqueue

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// statsTimeout bounds how long a scrape waits for a queue's Stats.
const statsTimeout = 2 * time.Second

// stateNames are the values of the state label of podblocks_workqueue_queue_items, in Stats' order.
var stateNames = [...]string{"ready", "delayed", "leased", "dead"}

// statsCollector is a prometheus.Collector of a queue's counts, read from the queue when collected
// (a scrape), so that the queue's calls pay nothing for it.
type statsCollector struct {
	stats  func(context.Context) (Stats, error)
	log    *zap.Logger
	items  *prometheus.Desc
	errors prometheus.Counter
	down   outage      // of stats, logged once
	closed atomic.Bool // stats returned ErrClosed: the queue is closed for good
	// more, if set, sends the backend's own metrics after the items (more's descs, for Describe,
	// are moreDescs).
	more      func(ch chan<- prometheus.Metric)
	moreDescs []*prometheus.Desc
}

// NewStatsCollector returns a prometheus.Collector of a queue's counts that calls stats (a
// Queue's Stats method, say) each time it is collected, with a timeout of 2s, so that the queue
// pays nothing between scrapes. It exports
//
//	podblocks_workqueue_queue_items{state="ready|delayed|leased|dead"}  gauge, Stats' fields
//	podblocks_workqueue_queue_stats_errors_total                      counter, failed stats calls
//
// with the constant label queue=name, unless name is "". A failed stats call is counted, and that
// scrape leaves the gauges out; it neither fails the scrape nor waits more than the timeout. It is
// logged at warn level to log (nil: not logged) once a run of failures, and the run's end at info
// level. A stats call that fails with ErrClosed says the queue is closed for good (Close, or a
// workqueue/jetstream queue's NATS connection closed): it is neither counted nor logged, stats is
// not called again, and every scrape from then on leaves the gauges out and keeps the error count
// as it was. Two collectors with the same name, or an unnamed one beside another, collide on one
// registerer (Register returns an error).
//
// NewMemory (and so workqueue/bolt) and workqueue/jetstream register one with WithRegisterer;
// it is for Queue implementations of other packages.
func NewStatsCollector(name string, stats func(context.Context) (Stats, error), log *zap.Logger) prometheus.Collector {
	return newStatsCollector(name, stats, log)
}

func newStatsCollector(name string, stats func(context.Context) (Stats, error), log *zap.Logger) *statsCollector {
	if log == nil {
		log = zap.NewNop()
	}
	labels := queueLabels(name)
	return &statsCollector{
		stats: stats,
		log:   log,
		items: prometheus.NewDesc("podblocks_workqueue_queue_items",
			"Items in the queue by state (ready, delayed, leased, dead), read from the queue's Stats at scrape time.",
			[]string{"state"}, labels),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_queue_stats_errors_total",
			Help: "Scrapes at which reading the queue's Stats failed (they left out podblocks_workqueue_queue_items).", ConstLabels: labels}),
	}
}

// queueLabels are the constant labels of the metrics of queue name.
func queueLabels(name string) prometheus.Labels {
	if name == "" {
		return nil
	}
	return prometheus.Labels{"queue": name}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.items
	ch <- c.errors.Desc()
	for _, d := range c.moreDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	if s, ok := scrapeStats(c.stats, c.errors, &c.down, &c.closed, c.log, "queue stats for metrics"); ok {
		for i, v := range [...]int64{s.Ready, s.Delayed, s.Leased, s.Dead} {
			ch <- prometheus.MustNewConstMetric(c.items, prometheus.GaugeValue, float64(v), stateNames[i])
		}
	}
	ch <- c.errors
	if c.more != nil {
		c.more(ch)
	}
}

// newMemoryCollector is q's statsCollector, with the counters Memory keeps off its hot path.
func newMemoryCollector(q *Memory) *statsCollector {
	c := newStatsCollector(q.cfg.name, q.Stats, q.cfg.logger)
	labels := queueLabels(q.cfg.name)
	added := prometheus.NewDesc("podblocks_workqueue_queue_added_total",
		"Items the queue created since it started (workqueue/bolt: since Open): an add absorbed by a waiting item with its key is not counted, one whose journal commit failed is.",
		nil, labels)
	expired := prometheus.NewDesc("podblocks_workqueue_queue_expired_leases_total",
		"Leases that ran out without an ack, nack, release or bury; their items became ready again.",
		nil, labels)
	c.moreDescs = []*prometheus.Desc{added, expired}
	c.more = func(ch chan<- prometheus.Metric) {
		a, e := q.counts()
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(added, prometheus.CounterValue, float64(a), q.base)
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(expired, prometheus.CounterValue, float64(e), q.base)
	}
	return c
}

// scrapeStats reads stats for a scrape, bounded by statsTimeout, and reports whether it did, so
// that the scrape leaves its gauges out if not. A failed read is counted in errs, at every scrape,
// and logged as what at warn level once an outage (down), and the outage's end at info level. A
// read that fails with ErrClosed sets closed and is neither counted nor logged, and once closed is
// set (by such a read, or by whoever else learnt that the queue closed) no more reads are made: a
// queue closed for good holds nothing to report.
func scrapeStats(stats func(context.Context) (Stats, error), errs prometheus.Counter, down *outage, closed *atomic.Bool, log *zap.Logger, what string) (Stats, bool) {
	if closed.Load() {
		return Stats{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	s, err := stats(ctx)
	switch {
	case errors.Is(err, ErrClosed):
		closed.Store(true)
		return Stats{}, false
	case err != nil:
		errs.Inc()
		down.fail(log, what, err)
		return Stats{}, false
	}
	down.ok(log, what+" read again")
	return s, true
}
