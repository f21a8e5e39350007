package workqueue

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures a Memory queue.
type Option interface{ apply(*memConfig) }

type memConfig struct {
	lease       time.Duration
	maxAttempts int
	journal     Journal
	recovered   []Record
	lastID      uint64
	logger      *zap.Logger
	reg         prometheus.Registerer
	name        string
}

type optionFunc func(*memConfig)

func (f optionFunc) apply(c *memConfig) { f(c) }

// WithLeaseDuration sets how long a lease lasts without Extend. Default 30s. A duration longer than
// about 146 years (math.MaxInt64/2) is taken as that long: a lease that never runs out.
func WithLeaseDuration(d time.Duration) Option {
	return optionFunc(func(c *memConfig) { c.lease = d })
}

// WithMaxAttempts buries an item instead of leasing it for attempt n+1. Default 0: unlimited.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *memConfig) { c.maxAttempts = n })
}

// WithJournal makes the queue durable through j, starting from the recovered records (what j
// stored before, dead ones included) and numbering new items after lastID. Used by workqueue/bolt.
func WithJournal(j Journal, recovered []Record, lastID uint64) Option {
	return optionFunc(func(c *memConfig) { c.journal = j; c.recovered = recovered; c.lastID = lastID })
}

// WithQueueName names the queue: its metrics carry the label queue="name" and its log lines the
// field queue, so that several queues can register with one registerer. Queues that share a
// registerer must all be named (workqueue/jetstream's are, by their stream's name), each
// differently: NewMemory returns the registerer's error for an unnamed one beside another queue,
// or a name taken. Default "".
func WithQueueName(name string) Option {
	return optionFunc(func(c *memConfig) { c.name = name })
}

// CommonOption is an option that every constructor of this package but NewClient takes:
// NewMemory, NewPool, NewExecWorker, NewAPI, NewSource and every pipeline stage's (NewCopier,
// NewFilter, NewSplitter, NewSharder, NewMerger, NewJoin, NewReduce).
type CommonOption interface {
	Option
	PoolOption
	ExecOption
	APIOption
	StageOption
	SourceOption
}

type loggerOption struct{ l *zap.Logger }

func (o loggerOption) apply(c *memConfig)          { c.logger = o.l }
func (o loggerOption) applyPool(c *poolConfig)     { c.logger = o.l }
func (o loggerOption) applyExec(c *execConfig)     { c.logger = o.l }
func (o loggerOption) applyAPI(c *apiConfig)       { c.logger = o.l }
func (o loggerOption) applyStage(c *stageConfig)   { c.logger = o.l }
func (o loggerOption) applySource(c *sourceConfig) { c.logger = o.l }

// WithLogger sets the logger. Default zap.NewNop() (nil too). An ExecWorker logs its command's
// output to it, one entry per line ("command output", with fields stream and line): give it a
// named one (l.Named("cmd")) to tell that output from the pool's own lines. A pipeline stage's
// lines carry the field stage (see WithStageName).
func WithLogger(l *zap.Logger) CommonOption { return loggerOption{l} }

type registererOption struct{ r prometheus.Registerer }

func (o registererOption) apply(c *memConfig)          { c.reg = o.r }
func (o registererOption) applyPool(c *poolConfig)     { c.reg = o.r }
func (o registererOption) applyStage(c *stageConfig)   { c.reg = o.r }
func (o registererOption) applySource(c *sourceConfig) { c.reg = o.r }

// ExecWorker and API have no metrics of their own (the Pool that runs an ExecWorker and the queue
// that an API serves have theirs): for them WithRegisterer changes nothing.
func (o registererOption) applyExec(*execConfig) {}
func (o registererOption) applyAPI(*apiConfig)   {}

// WithRegisterer registers the component's metrics with r. Default nil: metrics exist but are not
// registered. The package doc lists them. A constructor registers a component's metrics all or
// nothing: if r refuses one (a name clash), it returns r's error and leaves none of them
// registered. They stay registered, Run or no Run, until a queue's Close or the Unregister of a
// Pool, a Source or a pipeline stage (see the package doc's Metrics). A Memory queue's are read
// from the queue when r's gatherer is scraped (see NewStatsCollector) and cost its calls nothing.
// ExecWorker and API have none of their own: for them it changes nothing.
func WithRegisterer(r prometheus.Registerer) CommonOption { return registererOption{r} }

// badOption is the error of option opt given value v, which it does not take: want says what it
// takes.
func badOption(opt string, v any, want string) error {
	return fmt.Errorf("%w: %s(%v): %s", ErrInvalid, opt, v, want)
}
