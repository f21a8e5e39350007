package workqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The outcomes of an item, indexes of poolMetrics.items and outcomeNames.
const (
	outcomeAcked = iota
	outcomeRetried
	outcomeBuried
	outcomeReleased
	outcomeLost
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"acked", "retried", "buried", "released", "lost"}

type poolMetrics struct {
	inflight prometheus.GaugeFunc
	itemsVec *prometheus.CounterVec
	items    [numOutcomes]prometheus.Counter // itemsVec's children, looked up once
	duration *shardedHistogram
	attempts *shardedHistogram
	dead     prometheus.Counter
	depth    *depthCollector
	reg      *registration // unregistered by the pool's Unregister
}

// newPoolMetrics returns p's metrics, registered with reg unless it is nil, labelled pool="name"
// unless name is "".
func newPoolMetrics(reg prometheus.Registerer, name string, p *Pool) (*poolMetrics, error) {
	m := &poolMetrics{
		inflight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podblocks_workqueue_in_flight_items", Help: "Items being handled now."},
			func() float64 { return float64(p.inflight.Load()) }),
		itemsVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_workqueue_items_total",
			Help: "Handled items by outcome (acked, retried, buried, released, lost)."}, []string{"outcome"}),
		duration: newShardedHistogram("podblocks_workqueue_handle_duration_seconds", "Time one attempt's handler ran.",
			prometheus.ExponentialBuckets(0.001, 4, 10)),
		attempts: newShardedHistogram("podblocks_workqueue_attempt_number", "Attempt number of each lease handled.",
			[]float64{1, 2, 3, 5, 10, 20}),
		dead:  prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_dead_letters_total", Help: "Items the pool buried."}),
		depth: newDepthCollector(p.q.Stats, &p.closed, p.cfg.logger),
	}
	for i, name := range outcomeNames {
		m.items[i] = m.itemsVec.WithLabelValues(name)
	}
	r, err := registerNamed(reg, componentPool, name, m.inflight, m.itemsVec, m.duration, m.attempts, m.dead, m.depth)
	if err != nil {
		return nil, err
	}
	m.reg = r
	return m, nil
}

// component is a kind of component whose metrics carry a label with its name.
type component struct {
	what   string // its kind, as an error names it: "pool"
	label  string // the label of its name: "pool"
	option string // the option that names it: "WithPoolName"
}

var (
	componentPool   = component{"pool", "pool", "WithPoolName"}
	componentStage  = component{"stage", "stage", "WithStageName"}
	componentSource = component{"Source", "source", "WithSourceName"}
	componentQueue  = component{"queue", "queue", "WithQueueName"} // its collector's labels are constant, not wrapped
)

// registerNamed registers the metrics of one component of kind c called name, cs, with reg (nil:
// it does nothing), all or nothing as register does, labelled with the name (c.label="name")
// unless it is "", so that components of one kind with names of their own can share a registerer.
// Its error tells the registerer's refusals apart: the same metrics with the same labels registered
// already (a component of this kind with this name, or unnamed as this one is) from a clash of
// names with other labels or help (a metric of the user's, or a component of this kind named where
// this one is not or the other way around).
// It returns what it registered, for Unregister.
func registerNamed(reg prometheus.Registerer, c component, name string, cs ...prometheus.Collector) (*registration, error) {
	if reg != nil && name != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{c.label: name}, reg)
	}
	col, err := register(reg, cs...)
	if err != nil {
		return nil, registerErr(c, name, err)
	}
	return &registration{reg: reg, col: col, on: reg != nil}, nil
}

// registration is the metrics of one component, as registerNamed registered them: Unregister
// takes them off the registerer (a queue's Close, the Unregister of a Pool, a Source or a stage), so
// that a component made next with the registerer and the name can register its own. A nil
// registerer (nothing registered), or a nil *registration, makes it do nothing. Safe for
// concurrent use.
type registration struct {
	reg prometheus.Registerer // wrapped with the name's label, if any; nil: not registered
	col prometheus.Collector
	mu  sync.Mutex
	on  bool // registered now
}

// Unregister unregisters the metrics, if they are registered.
func (r *registration) Unregister() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.reg.Unregister(r.col)
		r.on = false
	}
}

// registerErr explains err, the registerer's refusal of the metrics of the component of kind c
// called name (nil: nil), as registerNamed says.
func registerErr(c component, name string, err error) error {
	var dup prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &dup):
		return fmt.Errorf("register %s metrics: a metric the registerer holds has the name of one of them but other labels or help: "+
			"one not of a %s (rename it, or use another registerer), or a %s's with a %s label where this one has none or the other way around "+
			"(%ss that share a registerer each need a name of their own: %s): %w", c.what, c.what, c.what, c.label, c.what, c.option, err)
	case name == "":
		return fmt.Errorf("register %s metrics: an unnamed %s is registered already (%ss that share a registerer need names of their own: %s): %w",
			c.what, c.what, c.what, c.option, err)
	default:
		return fmt.Errorf("register %s metrics: a %s named %q is registered already (%ss that share a registerer need names of their own: %s): %w",
			c.what, c.what, name, c.what, c.option, err)
	}
}

// register registers the metrics of one component, cs, with reg (nil: it does nothing), all or
// nothing: as one Collector, which a prometheus.Registry takes or refuses whole, so that a name
// clash of any of them (with a metric the user registered, say) leaves none of them registered,
// and the component can be made again once the clash is gone. It returns the Collector it
// registered (nil if none), for Unregister.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) (prometheus.Collector, error) {
	if reg == nil {
		return nil, nil
	}
	var c prometheus.Collector = collectors(cs)
	if len(cs) == 1 {
		c = cs[0]
	}
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// collectors is one prometheus.Collector of several.
type collectors []prometheus.Collector

// Describe implements prometheus.Collector.
func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// depthCollector exports a pool's podblocks_workqueue_depth_items, read from its queue's Stats at
// each scrape as the queue's own statsCollector reads its counts: a failed read is counted in
// podblocks_workqueue_depth_stats_errors_total and logged at warn level once an outage, and that
// scrape leaves the gauge out, rather than reporting a value that no queue holds. Once the queue
// is closed for good (the pool's Lease or a scrape's Stats returned ErrClosed, as every backend's
// Stats does after its Close, also when the Pool stopped before the queue closed) it is not read
// again, and the gauge is left out without an error: a closed queue holds nothing a pool can lease.
type depthCollector struct {
	stats  func(context.Context) (Stats, error)
	closed *atomic.Bool // the pool's: its queue returned ErrClosed
	log    *zap.Logger
	depth  *prometheus.Desc
	errors prometheus.Counter
	down   outage // of stats, logged once
}

func newDepthCollector(stats func(context.Context) (Stats, error), closed *atomic.Bool, log *zap.Logger) *depthCollector {
	return &depthCollector{
		stats:  stats,
		closed: closed,
		log:    log,
		depth: prometheus.NewDesc("podblocks_workqueue_depth_items",
			"Items not yet acked or buried (ready, delayed and leased), read from the queue at scrape time.", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_depth_stats_errors_total",
			Help: "Scrapes at which reading the queue's Stats failed (they left out podblocks_workqueue_depth_items)."}),
	}
}

// Describe implements prometheus.Collector.
func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.errors.Desc()
}

// Collect implements prometheus.Collector.
func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	if s, ok := scrapeStats(c.stats, c.errors, &c.down, c.closed, c.log, "queue depth for metrics"); ok {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.Depth()))
	}
	ch <- c.errors
}

// maxHistogramBuckets bounds a shardedHistogram's buckets, the +Inf one included.
const maxHistogramBuckets = 16

// shardedHistogram is a histogram into which each pool worker observes through its own shard, so
// that workers handling items at once do not contend on the same counters; Collect sums the shards.
type shardedHistogram struct {
	desc    *prometheus.Desc
	upper   []float64 // the buckets' upper bounds, +Inf excluded
	created time.Time
	mu      sync.Mutex
	shards  []*histogramShard
}

// histogramShard has one writer. Its size, a multiple of 64 bytes, keeps shards on cache lines of
// their own.
type histogramShard struct {
	h      *shardedHistogram
	counts [maxHistogramBuckets]atomic.Uint64 // per bucket, not cumulative; the last used is +Inf
	sum    atomic.Uint64                      // math.Float64bits of the sum
	_      [48]byte
}

func newShardedHistogram(name, help string, upper []float64) *shardedHistogram {
	if len(upper) >= maxHistogramBuckets {
		panic("workqueue: too many histogram buckets")
	}
	return &shardedHistogram{desc: prometheus.NewDesc(name, help, nil, nil), upper: upper, created: time.Now()}
}

// shard returns a new shard of h for one writer.
func (h *shardedHistogram) shard() *histogramShard {
	s := &histogramShard{h: h}
	h.mu.Lock()
	h.shards = append(h.shards, s)
	h.mu.Unlock()
	return s
}

// Observe adds v; only the shard's writer calls it.
func (s *histogramShard) Observe(v float64) {
	i := 0
	for i < len(s.h.upper) && v > s.h.upper[i] {
		i++
	}
	s.counts[i].Add(1)
	s.sum.Store(math.Float64bits(math.Float64frombits(s.sum.Load()) + v))
}

// Describe implements prometheus.Collector.
func (h *shardedHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *shardedHistogram) Collect(ch chan<- prometheus.Metric) {
	var counts [maxHistogramBuckets]uint64
	var sum float64
	h.mu.Lock()
	for _, s := range h.shards {
		for i := range len(h.upper) + 1 {
			counts[i] += s.counts[i].Load()
		}
		sum += math.Float64frombits(s.sum.Load())
	}
	h.mu.Unlock()
	buckets := make(map[float64]uint64, len(h.upper))
	var n uint64
	for i, u := range h.upper {
		n += counts[i]
		buckets[u] = n
	}
	n += counts[len(h.upper)]
	ch <- prometheus.MustNewConstHistogramWithCreatedTimestamp(h.desc, n, sum, buckets, h.created)
}

// The outcomes of a pipeline stage's input item, indexes of stageMetrics.done and
// stageOutcomeNames.
const (
	stagePassed   = iota // acked once its output adds were made
	stageDropped         // acked with nothing to add: a Filter's reject, a Splitter's item without parts
	stageBuried          // split, combine or reduce failed, or the output refused an add for good
	stageReleased        // given back, and taken back by its queue: the stage stopped, or its output closed
	stageLost            // its queue took no ack, bury or release, or a Join's waiting part lost its lease
	numStageOutcomes
)

var stageOutcomeNames = [numStageOutcomes]string{"passed", "dropped", "buried", "released", "lost"}

// The calls a stage counts the errors of, indexes of stageMetrics.errs and stageCallNames.
const (
	callLease  = iota // of an input
	callExtend        // of a held input item's lease
	callAdd           // to an output, one that got no answer in time included
	numStageCalls
)

var stageCallNames = [numStageCalls]string{"lease", "extend", "add"}

// stageMetrics is a pipeline stage's prometheus.Collector, labelled stage="name" when registered.
// An item costs its stage a few atomic adds and no allocation: the counts are plain atomics,
// turned into metrics at scrape time; what a stage holds is what it leased less what it is done
// with; and each stage loop observes its adds' times through a shard of its own of addTime.
type stageMetrics struct {
	leased  atomic.Uint64
	done    [numStageOutcomes]atomic.Uint64
	errs    [numStageCalls]atomic.Uint64
	addTime *shardedHistogram
	created time.Time
	items   *prometheus.Desc
	held    *prometheus.Desc
	errors  *prometheus.Desc
	reg     *registration // unregistered by the stage's Unregister
}

// newStageMetrics returns the metrics of the stage called name, registered with reg unless it is
// nil.
func newStageMetrics(name string, reg prometheus.Registerer) (*stageMetrics, error) {
	m := &stageMetrics{
		addTime: newShardedHistogram("podblocks_workqueue_stage_add_duration_seconds",
			"Time an output add took, of the adds the output took (its count: the items the stage added).",
			prometheus.ExponentialBuckets(0.0001, 4, 10)),
		created: time.Now(),
		items: prometheus.NewDesc("podblocks_workqueue_stage_items_total",
			"Input items the stage is done with, by outcome (passed, dropped, buried, released, lost).", []string{"outcome"}, nil),
		held: prometheus.NewDesc("podblocks_workqueue_stage_held_items",
			"Input items the stage holds: leased, and not yet acked, buried or given back (a Join's waiting parts, a Reduce's filling batch, items whose adds are being made).", nil, nil),
		errors: prometheus.NewDesc("podblocks_workqueue_stage_errors_total",
			"Calls on the stage's queues that failed, by call (lease, extend, add); an add the output left unanswered counts.", []string{"call"}, nil),
	}
	r, err := registerNamed(reg, componentStage, name, m)
	if err != nil {
		return nil, err
	}
	m.reg = r
	return m, nil
}

// lease counts an input item the stage leased.
func (m *stageMetrics) lease() { m.leased.Add(1) }

// finish counts an input item the stage is done with.
func (m *stageMetrics) finish(outcome int) { m.done[outcome].Add(1) }

// fail counts a call that failed.
func (m *stageMetrics) fail(call int) { m.errs[call].Add(1) }

// Describe implements prometheus.Collector.
func (m *stageMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.items
	ch <- m.held
	ch <- m.errors
	m.addTime.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *stageMetrics) Collect(ch chan<- prometheus.Metric) {
	// The outcomes are read before the leases, each counted after its lease: so held is never
	// negative, if a little high at times.
	var done uint64
	for i := range m.done {
		n := m.done[i].Load()
		done += n
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(m.items, prometheus.CounterValue, float64(n), m.created, stageOutcomeNames[i])
	}
	ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, float64(m.leased.Load()-done))
	for i := range m.errs {
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(m.errors, prometheus.CounterValue, float64(m.errs[i].Load()), m.created, stageCallNames[i])
	}
	m.addTime.Collect(ch)
}

// The requests a Source makes, indexes of sourceMetrics' arrays and fetchNames.
const (
	fetchList = iota // GET /api/v1/items
	fetchItem        // GET /api/v1/items/{name}
	numFetches
)

var fetchNames = [numFetches]string{"list", "item"}

// sourceMetrics are a Source's metrics.
type sourceMetrics struct {
	addedItems prometheus.Counter
	addErrors  prometheus.Counter
	errors     [numFetches]prometheus.Counter  // by request
	duration   [numFetches]prometheus.Observer // by request
	reg        *registration                   // unregistered by the Source's Unregister
}

// newSourceMetrics returns the metrics of the Source called name, registered with reg unless it
// is nil.
func newSourceMetrics(reg prometheus.Registerer, name string) (*sourceMetrics, error) {
	added := prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_source_added_items_total",
		Help: "Items the Source added to its queue."})
	addErrs := prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_workqueue_source_add_errors_total",
		Help: "Adds of fetched items that the queue refused (closed, unavailable, ...); a later Poll tries the item again."})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_workqueue_source_fetch_errors_total",
		Help: "GETs of the source that failed (no answer, a status other than 200, or an answer that is not the interface), by request (list, item)."},
		[]string{"request"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "podblocks_workqueue_source_fetch_duration_seconds",
		Help: "Time a GET of the source took, failed ones included, by request (list, item).", Buckets: prometheus.DefBuckets},
		[]string{"request"})
	m := &sourceMetrics{addedItems: added, addErrors: addErrs}
	for i, name := range fetchNames {
		m.errors[i] = errs.WithLabelValues(name)
		m.duration[i] = dur.WithLabelValues(name)
	}
	r, err := registerNamed(reg, componentSource, name, added, addErrs, errs, dur)
	if err != nil {
		return nil, err
	}
	m.reg = r
	return m, nil
}

// stopped reports whether a call under ctx that failed with err (nil: it did not) was cut off by the
// Source's stop, and so counts neither way: it failed, and ctx has ended.
func stopped(ctx context.Context, err error) bool { return err != nil && ctx.Err() != nil }

// observe counts a GET of kind fetch that took d and failed with err (nil: it did not): all of its
// metrics, or none if the Source's stop cut it off.
func (m *sourceMetrics) observe(ctx context.Context, fetch int, d time.Duration, err error) {
	if stopped(ctx, err) {
		return
	}
	m.duration[fetch].Observe(d.Seconds())
	if err != nil {
		m.errors[fetch].Inc()
	}
}

// added counts an add of an item to the queue that failed with err (nil: it did not), unless the
// Source's stop cut it off.
func (m *sourceMetrics) added(ctx context.Context, err error) {
	switch {
	case err == nil:
		m.addedItems.Inc()
	case !stopped(ctx, err):
		m.addErrors.Inc()
	}
}
