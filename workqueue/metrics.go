package workqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type poolMetrics struct {
	inflight prometheus.Gauge
	items    *prometheus.CounterVec
	duration prometheus.Histogram
	attempts prometheus.Histogram
	dead     prometheus.Counter
	depth    prometheus.GaugeFunc
}

func newPoolMetrics(reg prometheus.Registerer, p *Pool) (*poolMetrics, error) {
	m := &poolMetrics{
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "podblocks_workqueue_in_flight_items", Help: "Items being handled now."}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_workqueue_items_total",
			Help: "Handled items by outcome (acked, retried, buried, released, lost)."}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podblocks_workqueue_handle_duration_seconds",
			Help: "Time one attempt's handler ran.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "podblocks_workqueue_attempt_number",
			Help: "Attempt number of each lease handled.", Buckets: []float64{1, 2, 3, 5, 10, 20}}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_dead_letters_total", Help: "Items the pool buried."}),
		depth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podblocks_workqueue_depth_items",
			Help: "Items not yet acked or buried (ready, delayed and leased), read from the queue at scrape time."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := p.q.Stats(ctx)
			if err != nil {
				return -1
			}
			return float64(s.Depth())
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.inflight, m.items, m.duration, m.attempts, m.dead, m.depth} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
