package workqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
	name        string
	outcome     time.Duration // the outcome budget (outcomeBudget; tests shorten it)
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

// WithPoolName names the pool: its metrics carry the label pool="name" and its log lines the field
// pool, so that several pools can register with one registerer (unnamed, the second one's metrics
// collide with the first's).
func WithPoolName(name string) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.name = name })
}

// WithDrainTimeout is how long in-flight items may still run after Run's ctx ends; then their
// handlers are cancelled and the items released: given back, ready at once, without counting the
// attempt where the queue can release (Memory, workqueue/bolt, and a Client of a server over one of
// them), else nacked without delay. Default 10s. A call that reports an item's outcome (the
// releases among them) ends at the latest outcomeGrace (2s) after the budget, so Run returns by
// then unless a handler goes on past its ctx.
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

	counts   [numOutcomes]atomic.Int64 // by outcome, as reported to the queue
	inflight atomic.Int64
	outage   outage       // of Lease
	closed   atomic.Bool  // Lease returned ErrClosed: the queue is closed for good
	errLogAt atomic.Int64 // unix nanos when another Lease error was last logged
}

// outage logs a run of failures once, as it starts, and its end.
type outage struct{ on atomic.Bool }

func (o *outage) fail(log *zap.Logger, msg string, err error) {
	if o.on.CompareAndSwap(false, true) {
		log.Warn(msg, zap.Error(err))
	}
}

func (o *outage) ok(log *zap.Logger, msg string) {
	if o.on.Load() && o.on.CompareAndSwap(true, false) {
		log.Info(msg)
	}
}

// leaseErrLogEvery bounds how often a pool logs a Lease error other than an outage's (a variable for
// tests).
var leaseErrLogEvery = 10 * time.Second

// NewPool validates its arguments and returns a pool that starts on Run.
func NewPool(q Queue, h Handler, opts ...PoolOption) (*Pool, error) {
	cfg := poolConfig{logger: zap.NewNop(), concurrency: 1, backoff: DefaultBackoff, drain: 10 * time.Second, progress: 30 * time.Second,
		outcome: outcomeBudget}
	for _, o := range opts {
		o.applyPool(&cfg)
	}
	switch {
	case q == nil || h == nil:
		return nil, fmt.Errorf("%w: nil queue or handler", ErrInvalid)
	case cfg.concurrency < 1:
		return nil, badOption("WithConcurrency", cfg.concurrency, "want 1 or more")
	case cfg.timeout < 0:
		return nil, badOption("WithItemTimeout", cfg.timeout, "want 0 (none) or more")
	case cfg.drain < 0:
		return nil, badOption("WithDrainTimeout", cfg.drain, "want 0 or more")
	case cfg.progress < 0:
		return nil, badOption("WithProgressEvery", cfg.progress, "want 0 (no progress lines) or more")
	case cfg.maxAttempts < 0:
		return nil, badOption("WithPoolMaxAttempts", cfg.maxAttempts, "want 0 (no limit) or more")
	case cfg.backoff == nil:
		return nil, fmt.Errorf("%w: nil backoff", ErrInvalid)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	if cfg.name != "" {
		cfg.logger = cfg.logger.With(zap.String("pool", cfg.name))
	}
	p := &Pool{q: q, h: h, cfg: cfg, ready: make(chan struct{})}
	m, err := newPoolMetrics(cfg.reg, cfg.name, p)
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}

// Ready is closed once the workers are running.
func (p *Pool) Ready() <-chan struct{} { return p.ready }

// Unregister takes the pool's metrics off the registerer that NewPool registered them with (see
// WithRegisterer), so that a Pool made next with the registerer and the pool's name can register
// its own; call it once done with the pool, after its Run returned or if it never ran. It changes
// nothing else: a Run under way goes on, its counts no longer scraped. Idempotent; without a
// registerer it does nothing.
func (p *Pool) Unregister() { p.m.reg.Unregister() }

// Run leases and handles items until ctx ends, then drains: in-flight handlers get the drain budget
// to finish, and items still running after it are released. It returns nil when ctx ended it, or
// the first Lease error that wraps ErrClosed if the queue closed under it (Close or Shutdown, or a
// workqueue/jetstream queue whose NATS connection closed for good), as each worker stops at its
// next Lease, after every worker has exited. Any other Lease error is retried, with a backoff of up
// to 5s, until the queue answers: ErrUnavailable (a Client's server restarts, a jetstream queue's
// NATS server is down) is logged once an outage, others every 10s. An item's Ack, Nack or Bury that
// gets ErrUnavailable, or no answer within its call's budget (30s), is made again the same way
// while the item's lease lasts (as the last Extend left it) and not past the drain budget, so work
// finished during an outage shorter than the lease is not done again; if the lease ends first, the
// Pool logs that it gave the outcome up, and the item counts as lost. A Pool runs once. Its
// metrics stay registered after Run returns, with the final counts, until Unregister; the depth
// gauge is left out once the queue is closed.
func (p *Pool) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("workqueue: pool already ran")
	}
	// Handlers run under work, which outlives ctx by the drain budget.
	// Outcome calls outlive ctx, not work by more than outcomeGrace: the items the budget cut off
	// are released in that time, and a call in flight to a queue that hangs ends then.
	outcomes, cancelOutcomes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOutcomes()
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.drain, cancelWork)
		g := time.AfterFunc(addDur(p.cfg.drain, outcomeGrace), cancelOutcomes)
		context.AfterFunc(outcomes, func() { t.Stop(); g.Stop() }) // Run returned, or g fired
	})
	defer stopDrain()

	var wg sync.WaitGroup
	var closedErr atomic.Pointer[error] // the first worker's ErrClosed
	for i := range p.cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.worker(ctx, work, outcomes, i); errors.Is(err, ErrClosed) {
				closedErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	// The progress logger stops when ctx ends or when every worker has exited (the queue closed).
	workersDone := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if p.cfg.progress > 0 {
			p.logProgress(ctx, workersDone)
		}
	}()
	close(p.ready)
	wg.Wait()
	close(workersDone)
	<-progressDone
	if err := closedErr.Load(); err != nil && ctx.Err() == nil {
		return *err
	}
	return nil
}

// logProgress logs the pool's counts every progress interval until ctx ends or stop is closed.
func (p *Pool) logProgress(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(p.cfg.progress)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
			p.cfg.logger.Info("progress", zap.Int64("acked", p.counts[outcomeAcked].Load()), zap.Int64("retried", p.counts[outcomeRetried].Load()),
				zap.Int64("buried", p.counts[outcomeBuried].Load()), zap.Int64("in_flight", p.inflight.Load()))
		}
	}
}

// leaseRetryMin and leaseRetryMax bound how long a worker waits before it leases again after a
// failed Lease (a Client whose server is down or restarting): the wait doubles from the first to
// the second, each wait drawn at random from its upper half so that many workers do not come back
// at once.
const (
	leaseRetryMin = 250 * time.Millisecond
	leaseRetryMax = 5 * time.Second
)

func (p *Pool) worker(ctx, work, outcomes context.Context, n int) error {
	w := newPoolWorker(p, work, outcomes, p.cfg.logger.With(zap.Int("worker", n)))
	defer w.close()
	retry := time.Duration(0)
	for {
		it, err := p.q.Lease(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				p.closed.Store(true) // for the depth gauge too, whether or not ctx ended
				return err           // Run returns it unless ctx ended
			}
			if ctx.Err() != nil {
				return nil
			}
			// The queue is unreachable: retry until it answers, and say so once per outage (for
			// the pool, not per worker). Another error (a wrong URL's 404, a 500, a deleted
			// consumer) is said again every leaseErrLogEvery, so that it stays seen.
			if !errors.Is(err, ErrUnavailable) {
				now, last := time.Now().UnixNano(), p.errLogAt.Load()
				if now-last >= int64(leaseErrLogEvery) && p.errLogAt.CompareAndSwap(last, now) {
					w.log.Warn("lease failed; retrying", zap.Error(err))
				}
			} else {
				p.outage.fail(w.log, "lease failed; retrying until the queue answers", err)
			}
			retry = min(max(2*retry, leaseRetryMin), leaseRetryMax)
			if !sleepCtx(ctx, retry/2+rand.N(retry/2+1)) {
				return nil
			}
			continue
		}
		retry = 0
		p.outage.ok(w.log, "lease works again")
		w.process(it)
	}
}

// outcomeBudget bounds each call that reports an item's outcome (Ack, Nack, Bury); a worker renews
// its outcome ctx once less than five sixths of it (25s) is left, so every call gets between the
// two.
const (
	outcomeBudget = 30 * time.Second
	outcomeGrace  = 2 * time.Second // after the drain budget
)

// poolWorker is one worker's state, reused from item to item so that an item costs no goroutine,
// ticker or channel. Leases are extended by one timer per worker. The timer must fire at the latest
// a third of the lease after the current item started; an item that starts while it is set to fire
// by then leaves it alone, so a worker of short items touches the timer about once a third of a
// lease rather than once an item. When it fires it extends an item that has run for at least half
// of that third, or else sets itself for the item's third; firing between items, it is not set again.
type poolWorker struct {
	p    *Pool
	log  *zap.Logger
	work context.Context
	// epoch is when the worker started; its times are durations since then (see since).
	epoch time.Time
	// Items' contexts derive from detached, work without its cancellation, so that making and
	// ending one does not take work's lock to (un)register it: when work ends, stopDrain's
	// AfterFunc cancels the item in hand (and process cancels an item that starts later).
	detached    context.Context
	stopDrain   func() bool
	base        context.Context // for outcomes: Run's ctx without its cancellation, ended outcomeGrace after work
	octx        context.Context // bounded outcome ctx, renewed before its budget runs low
	cancelOctx  context.CancelFunc
	octxExpires time.Duration   // since epoch
	duration    *histogramShard // of p.m.duration
	attempts    *histogramShard // of p.m.attempts

	ext *time.Timer // fires extend
	// mu guards the rest; extend holds it through a call of Extend, so that the worker, taking it
	// when the handler returns, waits for an extension in flight (as it must before it reads lost
	// and reports the outcome).
	mu     sync.Mutex
	it     *Item         // nil between items
	start  time.Duration // since epoch
	every  time.Duration // a third of the item's lease when it started
	cancel context.CancelCauseFunc
	lost   bool
	// deadline is the current item's lease deadline, as Lease or the last Extend left it.
	deadline time.Time
	fireAt   time.Duration // since epoch, when ext fires; 0 when it is stopped
}

func newPoolWorker(p *Pool, work, outcomes context.Context, log *zap.Logger) *poolWorker {
	w := &poolWorker{p: p, log: log, work: work, epoch: time.Now(), base: outcomes,
		duration: p.m.duration.shard(), attempts: p.m.attempts.shard()}
	w.detached = context.WithoutCancel(work)
	w.stopDrain = context.AfterFunc(work, func() {
		w.mu.Lock()
		if w.cancel != nil {
			w.cancel(context.Cause(work))
		}
		w.mu.Unlock()
	})
	w.ext = time.AfterFunc(time.Hour, w.extend)
	w.ext.Stop()
	return w
}

func (w *poolWorker) close() {
	w.ext.Stop()
	w.stopDrain()
	if w.cancelOctx != nil {
		w.cancelOctx()
	}
}

// since is the monotonic time since epoch: one clock read where time.Now makes two (the wall
// clock's and the monotonic clock's), and plain arithmetic after it.
func (w *poolWorker) since() time.Duration { return time.Since(w.epoch) }

// leaseLeft is how much of a lease with deadline d is left at start (since epoch). A deadline with a
// monotonic reading (one made in this process: Memory, bolt, jetstream, and Client from the lease's
// ttl) is compared on the monotonic clock with no further clock read; one without (it came over the
// wire: a Client of a server that sends no ttl) on the wall clock, read now, since the system clock
// may have stepped since epoch.
func (w *poolWorker) leaseLeft(d time.Time, start time.Duration) time.Duration {
	if d != d.Round(0) { // Round(0) strips only the monotonic reading, so they differ if it has one
		return d.Sub(w.epoch) - start
	}
	return time.Until(d)
}

// extend renews the current item's lease and re-arms the timer; it runs on the timer's goroutine.
// A firing that was meant for an earlier item renews the current one early, which does no harm.
func (w *poolWorker) extend() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fireAt = 0
	if w.it == nil || w.lost {
		return
	}
	if now := w.since(); now-w.start < w.every/2 {
		w.arm(w.start+w.every-now, now)
		return
	}
	ectx, c := context.WithTimeout(w.work, w.every)
	d, err := w.p.q.Extend(ectx, w.it.Lease)
	c()
	if errors.Is(err, ErrLeaseLost) {
		w.lost = true
		w.cancel(ErrLeaseLost)
		return
	}
	if err != nil {
		w.log.Warn("extend failed", zap.String("id", w.it.ID), zap.Error(err))
	} else if d.After(w.deadline) {
		w.deadline = d
	}
	w.arm(w.every, w.since())
}

// arm sets ext to fire after d, at now (since epoch); w.mu is held.
func (w *poolWorker) arm(d, now time.Duration) {
	w.fireAt = now + d
	w.ext.Reset(d)
}

// outcomeCtx returns a ctx with at least five sixths of the outcome budget left, for reporting an
// outcome at now: Run's ctx may have ended.
func (w *poolWorker) outcomeCtx(now time.Duration) context.Context {
	if budget := w.p.cfg.outcome; w.octx == nil || w.octxExpires-now < budget-budget/6 {
		if w.cancelOctx != nil {
			w.cancelOctx()
		}
		w.octxExpires = now + budget
		w.octx, w.cancelOctx = context.WithDeadline(w.base, w.epoch.Add(w.octxExpires))
	}
	return w.octx
}

// process runs one item to its outcome.
func (w *poolWorker) process(it *Item) {
	p := w.p
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	w.attempts.Observe(float64(it.Attempt))
	hctx, cancel := context.WithCancelCause(w.detached)
	defer cancel(nil)
	if p.cfg.timeout > 0 {
		var c context.CancelFunc
		hctx, c = context.WithTimeoutCause(hctx, p.cfg.timeout, errTimeout)
		defer c()
	}
	// Keep the lease alive while the handler runs.
	start := w.since()
	every := max(w.leaseLeft(it.Deadline, start)/3, 10*time.Millisecond)
	w.mu.Lock()
	w.it, w.start, w.every, w.cancel, w.lost, w.deadline = it, start, every, cancel, false, it.Deadline
	if w.work.Err() != nil { // the drain budget ran out before this item started
		cancel(context.Cause(w.work))
	}
	if w.fireAt == 0 || w.fireAt-start > every {
		w.arm(every, start)
	}
	w.mu.Unlock()
	err := p.call(hctx, it)
	now := w.since()
	w.duration.Observe((now - start).Seconds())
	if !w.mu.TryLock() {
		// An Extend is running: wait for it, then read the clock again, as the outcome ctx counts
		// from the end of that wait (the handler's duration above does not include it).
		w.mu.Lock()
		now = w.since()
	}
	lost, deadline := w.lost, w.deadline
	w.it, w.cancel = nil, nil
	w.mu.Unlock()

	octx := w.outcomeCtx(now)
	log := w.log
	var oerr error
	var outcome int
	switch {
	case lost:
		outcome = outcomeLost
		log.Warn("lease lost while handling", zap.String("id", it.ID), zap.Int("attempt", it.Attempt))
	case err == nil:
		outcome = outcomeAcked
		oerr = w.report(octx, deadline, func(ctx context.Context) error { return p.q.Ack(ctx, it.Lease) })
	case w.work.Err() != nil:
		// Abandoned, not failed: where the queue can release, the attempt is not counted.
		outcome = outcomeReleased
		oerr = releaseLease(octx, p.q, it.Lease)
	default:
		var perm *PermanentError
		if errors.As(err, &perm) || (p.cfg.maxAttempts > 0 && it.Attempt >= p.cfg.maxAttempts) {
			outcome = outcomeBuried
			oerr = w.report(octx, deadline, func(ctx context.Context) error { return p.q.Bury(ctx, it.Lease, err.Error()) })
		} else {
			outcome = outcomeRetried
			delay := p.cfg.backoff(it.Attempt)
			if p.cfg.limiter != nil {
				delay = p.cfg.limiter.When(limiterKey(it))
			}
			oerr = w.report(octx, deadline, func(ctx context.Context) error { return p.q.Nack(ctx, it.Lease, delay) })
		}
		lvl := zap.InfoLevel
		if outcome == outcomeBuried {
			lvl = zap.WarnLevel // given up on: an operator must see it at the default level
		}
		log.Log(lvl, "item failed", zap.String("id", it.ID), zap.Int("attempt", it.Attempt), zap.String("outcome", outcomeNames[outcome]), zap.Error(err))
	}
	if oerr != nil {
		var ended *leaseEndedError // here, not for every item: errors.As moves it to the heap
		if errors.As(oerr, &ended) {
			log.Warn("outcome not taken before the lease ended; the queue hands the item out again", zap.String("id", it.ID),
				zap.String("outcome", outcomeNames[outcome]), zap.Int("calls", ended.calls), zap.Error(ended.err))
		} else {
			log.Warn("report outcome", zap.String("id", it.ID), zap.String("outcome", outcomeNames[outcome]), zap.Error(oerr))
		}
		// The queue did not take the outcome (lease lost, or no answer): the item comes back when
		// its lease ends.
		outcome = outcomeLost
	}
	if p.cfg.limiter != nil && (outcome == outcomeAcked || outcome == outcomeBuried) {
		p.cfg.limiter.Forget(limiterKey(it)) // the item is gone: its failures need no keeping
	}
	if outcome == outcomeBuried {
		p.m.dead.Inc()
	}
	p.counts[outcome].Add(1)
	p.m.items[outcome].Inc()
}

// report makes an outcome call, and makes it again while the queue cannot take it for now: it is
// unavailable (ErrUnavailable: a Client whose server restarts, a jetstream queue whose NATS server
// is down) or the call got no answer within its budget (context.DeadlineExceeded of its ctx: a
// server that stopped answering). It waits leaseRetryMin, doubling up to leaseRetryMax, between
// calls, each under a ctx of the outcome budget (outcomeCtx), while the item's lease lasts (until
// deadline; a zero deadline, unknown, counts as one outcome budget from the first failure) and the
// drain budget has not run out. Otherwise the item would be done again once its lease ran out. A
// lease that ends first gives a *leaseEndedError.
func (w *poolWorker) report(ctx context.Context, deadline time.Time, call func(context.Context) error) error {
	wait := leaseRetryMin
	for calls := 1; ; calls++ {
		err := call(ctx)
		if err == nil || w.work.Err() != nil ||
			!errors.Is(err, ErrUnavailable) && !(errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(w.p.cfg.outcome)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &leaseEndedError{calls: calls, err: err}
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-w.work.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if !time.Now().Before(deadline) {
			return &leaseEndedError{calls: calls, err: err}
		}
		wait = min(2*wait, leaseRetryMax)
		ctx = w.outcomeCtx(w.since())
	}
}

// leaseEndedError is an outcome that the queue did not take, calls made, before the item's lease
// ended: err is the last call's.
type leaseEndedError struct {
	calls int
	err   error
}

func (e *leaseEndedError) Error() string {
	return "lease ended after " + strconv.Itoa(e.calls) + " calls that the queue did not take: " + e.err.Error()
}

func (e *leaseEndedError) Unwrap() error { return e.err }

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
		{"acked", f(p.counts[outcomeAcked].Load())}, {"retried", f(p.counts[outcomeRetried].Load())}, {"buried", f(p.counts[outcomeBuried].Load())},
		{"released", f(p.counts[outcomeReleased].Load())}, {"lease_lost", f(p.counts[outcomeLost].Load())},
	}
}

// Counts is a snapshot of a pool's outcome counters. An outcome counts once the queue took it: an
// item whose lease was lost while it was handled, or whose Ack, Nack, Bury or release the queue did
// not take (ErrLeaseLost, or no answer), counts as Lost (the queue hands it out again when the
// lease ends).
type Counts struct{ Acked, Retried, Buried, Released, Lost int64 }

// Counts returns the pool's outcome counters.
func (p *Pool) Counts() Counts {
	c := &p.counts
	return Counts{c[outcomeAcked].Load(), c[outcomeRetried].Load(), c[outcomeBuried].Load(), c[outcomeReleased].Load(), c[outcomeLost].Load()}
}
