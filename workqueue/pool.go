package workqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Handler processes one item. It returns nil to ack; an error to retry (or bury once the attempts
// are used up); an error wrapped with Permanent to bury at once. Its ctx ends when the item's timeout
// passes, when the lease is lost, or when the pool's drain budget runs out.
type Handler interface {
	Handle(ctx context.Context, it *Item) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, it *Item) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, it *Item) error { return f(ctx, it) }

// Backoff is how long a failed item waits before its next attempt (attempt is the one that failed).
type Backoff func(attempt int) time.Duration

// DefaultBackoff doubles from 100ms per attempt up to one minute.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := 100 * time.Millisecond * time.Duration(math.Pow(2, float64(min(attempt-1, 20))))
	return min(d, time.Minute)
}

// PermanentError marks a handler error that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the pool buries the item instead of retrying it.
func Permanent(err error) error { return &PermanentError{Err: err} }

// PoolOption configures a Pool.
type PoolOption interface{ applyPool(*poolConfig) }

type poolConfig struct {
	logger      *zap.Logger
	reg         prometheus.Registerer
	concurrency int
	timeout     time.Duration
	backoff     Backoff
	maxAttempts int
	drain       time.Duration
	progress    time.Duration
	limiter     RateLimiter
}

type poolOptionFunc func(*poolConfig)

func (f poolOptionFunc) applyPool(c *poolConfig) { f(c) }

// WithConcurrency sets the number of workers. Default 1.
func WithConcurrency(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.concurrency = n })
}

// WithItemTimeout bounds one attempt; 0 (the default) means no bound.
func WithItemTimeout(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.timeout = d })
}

// WithBackoff sets the retry delay policy. Default DefaultBackoff.
func WithBackoff(b Backoff) PoolOption { return poolOptionFunc(func(c *poolConfig) { c.backoff = b }) }

// WithPoolMaxAttempts buries an item whose attempt n failed. Default 0: the queue's own limit decides.
func WithPoolMaxAttempts(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.maxAttempts = n })
}

// WithDrainTimeout is how long in-flight items may still run after Run's ctx ends; then their
// handlers are cancelled and the items released (nacked without delay). Default 10s.
func WithDrainTimeout(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.drain = d })
}

// WithProgressEvery logs the pool's counts at this interval. Default 30s; 0 turns it off.
func WithProgressEvery(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.progress = d })
}

// Pool runs a Handler over a Queue with N workers. Each leased item's lease is extended while its
// handler runs (at a third of the lease length), so a slow handler keeps its item and a crashed
// process gives it back when the lease expires.
type Pool struct {
	q       Queue
	h       Handler
	cfg     poolConfig
	m       *poolMetrics
	ready   chan struct{}
	started atomic.Bool

	acked, retried, buried, released, lost atomic.Int64
	inflight                               atomic.Int64
}

// NewPool validates its arguments and returns a pool that starts on Run.
func NewPool(q Queue, h Handler, opts ...PoolOption) (*Pool, error) {
	cfg := poolConfig{logger: zap.NewNop(), concurrency: 1, backoff: DefaultBackoff, drain: 10 * time.Second, progress: 30 * time.Second}
	for _, o := range opts {
		o.applyPool(&cfg)
	}
	switch {
	case q == nil || h == nil:
		return nil, fmt.Errorf("%w: nil queue or handler", ErrInvalid)
	case cfg.concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency %d", ErrInvalid, cfg.concurrency)
	case cfg.timeout < 0 || cfg.drain < 0 || cfg.progress < 0 || cfg.maxAttempts < 0:
		return nil, fmt.Errorf("%w: negative timeout, drain, progress or max attempts", ErrInvalid)
	case cfg.backoff == nil:
		return nil, fmt.Errorf("%w: nil backoff", ErrInvalid)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	p := &Pool{q: q, h: h, cfg: cfg, ready: make(chan struct{})}
	m, err := newPoolMetrics(cfg.reg, p)
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}

// Ready is closed once the workers are running.
func (p *Pool) Ready() <-chan struct{} { return p.ready }

// Run leases and handles items until ctx ends, then drains: in-flight handlers get the drain budget
// to finish, and items still running after it are released. It returns nil when ctx ended it, or
// ErrClosed if the queue closed under it, after every worker has exited. A Pool runs once.
func (p *Pool) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("workqueue: pool already ran")
	}
	// Handlers run under work, which outlives ctx by the drain budget.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.drain, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopDrain()

	var wg sync.WaitGroup
	var closedErr atomic.Bool
	for i := range p.cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.worker(ctx, work, i); errors.Is(err, ErrClosed) {
				closedErr.Store(true)
			}
		}()
	}
	if p.cfg.progress > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(p.cfg.progress)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					p.cfg.logger.Info("progress", zap.Int64("acked", p.acked.Load()), zap.Int64("retried", p.retried.Load()),
						zap.Int64("buried", p.buried.Load()), zap.Int64("in_flight", p.inflight.Load()))
				}
			}
		}()
	}
	close(p.ready)
	wg.Wait()
	if closedErr.Load() && ctx.Err() == nil {
		return ErrClosed
	}
	return nil
}

func (p *Pool) worker(ctx, work context.Context, n int) error {
	log := p.cfg.logger.With(zap.Int("worker", n))
	for {
		it, err := p.q.Lease(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrClosed) {
				return err
			}
			log.Warn("lease failed", zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		p.process(ctx, work, it, log)
	}
}

// process runs one item to its outcome.
func (p *Pool) process(ctx, work context.Context, it *Item, log *zap.Logger) {
	p.inflight.Add(1)
	p.m.inflight.Inc()
	defer func() {
		p.inflight.Add(-1)
		p.m.inflight.Dec()
	}()
	p.m.attempts.Observe(float64(it.Attempt))
	hctx, cancel := context.WithCancelCause(work)
	defer cancel(nil)
	if p.cfg.timeout > 0 {
		var c context.CancelFunc
		hctx, c = context.WithTimeoutCause(hctx, p.cfg.timeout, errTimeout)
		defer c()
	}
	// Keep the lease alive while the handler runs.
	var lost atomic.Bool
	extDone := make(chan struct{})
	stopExt := make(chan struct{})
	go func() {
		defer close(extDone)
		every := time.Until(it.Deadline) / 3
		if every < 10*time.Millisecond {
			every = 10 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stopExt:
				return
			case <-t.C:
				ectx, c := context.WithTimeout(work, every)
				_, err := p.q.Extend(ectx, it.Lease)
				c()
				if errors.Is(err, ErrLeaseLost) {
					lost.Store(true)
					cancel(ErrLeaseLost)
					return
				}
				if err != nil {
					log.Warn("extend failed", zap.String("id", it.ID), zap.Error(err))
				}
			}
		}
	}()
	start := time.Now()
	err := p.call(hctx, it)
	close(stopExt)
	<-extDone
	p.m.duration.Observe(time.Since(start).Seconds())

	// Outcomes are reported with a fresh, bounded ctx: Run's ctx may have ended.
	octx, c := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer c()
	var oerr error
	outcome := ""
	switch {
	case lost.Load():
		outcome = "lost"
		p.lost.Add(1)
		log.Warn("lease lost while handling", zap.String("id", it.ID), zap.Int("attempt", it.Attempt))
	case err == nil:
		outcome = "acked"
		oerr = p.q.Ack(octx, it.Lease)
		p.acked.Add(1)
		if p.cfg.limiter != nil {
			p.cfg.limiter.Forget(limiterKey(it))
		}
	case work.Err() != nil:
		outcome = "released"
		oerr = p.q.Nack(octx, it.Lease, 0)
		p.released.Add(1)
	default:
		var perm *PermanentError
		if errors.As(err, &perm) || (p.cfg.maxAttempts > 0 && it.Attempt >= p.cfg.maxAttempts) {
			outcome = "buried"
			oerr = p.q.Bury(octx, it.Lease, err.Error())
			p.buried.Add(1)
			p.m.dead.Inc()
		} else {
			outcome = "retried"
			delay := p.cfg.backoff(it.Attempt)
			if p.cfg.limiter != nil {
				delay = p.cfg.limiter.When(limiterKey(it))
			}
			oerr = p.q.Nack(octx, it.Lease, delay)
			p.retried.Add(1)
		}
		log.Info("item failed", zap.String("id", it.ID), zap.Int("attempt", it.Attempt), zap.String("outcome", outcome), zap.Error(err))
	}
	p.m.items.WithLabelValues(outcome).Inc()
	if oerr != nil {
		log.Warn("report outcome", zap.String("id", it.ID), zap.String("outcome", outcome), zap.Error(oerr))
	}
}

var errTimeout = errors.New("workqueue: item timeout")

func limiterKey(it *Item) string {
	if it.Key != "" {
		return it.Key
	}
	return it.ID
}

// call runs the handler, turning a panic into an error.
func (p *Pool) call(ctx context.Context, it *Item) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return p.h.Handle(ctx, it)
}

// Statusz reports the pool's counts for a status page.
func (p *Pool) Statusz() (title string, header []string, rows [][]string) {
	f := func(n int64) string { return strconv.FormatInt(n, 10) }
	return "workqueue pool", []string{"key", "value"}, [][]string{
		{"workers", strconv.Itoa(p.cfg.concurrency)}, {"in_flight", f(p.inflight.Load())},
		{"acked", f(p.acked.Load())}, {"retried", f(p.retried.Load())}, {"buried", f(p.buried.Load())},
		{"released", f(p.released.Load())}, {"lease_lost", f(p.lost.Load())},
	}
}

// Counts is a snapshot of a pool's outcome counters.
type Counts struct{ Acked, Retried, Buried, Released, Lost int64 }

// Counts returns the pool's outcome counters.
func (p *Pool) Counts() Counts {
	return Counts{p.acked.Load(), p.retried.Load(), p.buried.Load(), p.released.Load(), p.lost.Load()}
}
