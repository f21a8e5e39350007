package scatter

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// leafBuckets are the upper bounds of the per-leaf latency histogram.
var leafBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// batchHistogram is a Prometheus histogram that takes a whole fan-out's leaf latencies at once:
// one atomic add per touched bucket per fan-out instead of one Observe per leaf, which keeps the
// per-leaf cost of metrics out of the fan-out's hot path.
type batchHistogram struct {
	desc    *prometheus.Desc
	buckets [len(leafBuckets) + 1]atomic.Uint64 // last: above the largest bound
	sumNs   atomic.Int64
	count   atomic.Uint64
}

type latencyBatch struct {
	counts [len(leafBuckets) + 1]uint64
	sumNs  int64
	n      uint64
}

func (b *latencyBatch) add(d time.Duration) {
	i := 0
	for i < len(leafBuckets) && d > leafBuckets[i] {
		i++
	}
	b.counts[i]++
	b.sumNs += int64(d)
	b.n++
}

func (h *batchHistogram) add(b *latencyBatch) {
	for i, c := range b.counts {
		if c != 0 {
			h.buckets[i].Add(c)
		}
	}
	h.sumNs.Add(b.sumNs)
	h.count.Add(b.n)
}

func (h *batchHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *batchHistogram) Collect(ch chan<- prometheus.Metric) {
	cum := make(map[float64]uint64, len(leafBuckets))
	var acc uint64
	for i, ub := range leafBuckets {
		acc += h.buckets[i].Load()
		cum[ub.Seconds()] = acc
	}
	acc += h.buckets[len(leafBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(h.desc, acc, float64(h.sumNs.Load())/1e9, cum)
}

type metrics struct {
	fanouts         [len(whyNames)]prometheus.Counter
	leafResults     [len(statusNames)]prometheus.Counter
	leafLatency     *batchHistogram
	coverage        prometheus.Histogram
	hedgesSent      prometheus.Counter
	hedgesWon       prometheus.Counter
	budgetExhausted prometheus.Counter
	probations      prometheus.Counter
	shadows         prometheus.Counter

	// on: the metrics were registered. Unregistered metrics cannot be read, so a fan-out then
	// skips its per-fan-out updates (leaf results, latency and coverage histograms).
	on bool

	// plain counts for Statusz
	nFanouts, nHedges, nHedgesWon, nExhausted, nProbations atomic.Int64
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	if reg != nil && name != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"fanout": name}, reg)
	}
	m := &metrics{}
	fan := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_scatter_fanouts_total", Help: "Fan-outs, by why they ended (all, quorum, failfast, context, canary).",
	}, []string{"end"})
	for i, w := range whyNames {
		m.fanouts[i] = fan.WithLabelValues(w)
	}
	res := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_scatter_leaf_results_total", Help: "Shard outcomes, by status.",
	}, []string{"status"})
	for i, s := range statusNames {
		m.leafResults[i] = res.WithLabelValues(s)
	}
	m.leafLatency = &batchHistogram{desc: prometheus.NewDesc("podblocks_scatter_leaf_duration_seconds",
		"Latency of each shard from dispatch to answer (or to the end of the fan-out).", nil, nil)}
	m.coverage = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "podblocks_scatter_coverage_ratio", Help: "Fraction of shards that answered, per fan-out.",
		Buckets: []float64{0.5, 0.8, 0.9, 0.95, 0.99, 1},
	})
	m.hedgesSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_scatter_hedges_sent_total", Help: "Backup requests sent (hedges and failovers)."})
	m.hedgesWon = prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_scatter_hedges_won_total", Help: "Backup requests whose answer was used."})
	m.budgetExhausted = prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_scatter_hedge_budget_exhausted_total", Help: "Hedges not sent because the hedge budget was empty."})
	m.probations = prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_scatter_probations_total", Help: "Replicas put on latency probation."})
	m.shadows = prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_scatter_shadow_requests_total", Help: "Shadow requests sent to replicas on probation."})
	if reg != nil {
		m.on = true
		for _, c := range []prometheus.Collector{fan, res, m.leafLatency, m.coverage, m.hedgesSent, m.hedgesWon, m.budgetExhausted, m.probations, m.shadows} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
