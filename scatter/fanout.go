package scatter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Fanout scatters a request to a fixed list of shards and gathers their answers. It is safe for
// concurrent use; each Do is independent apart from the shared hedge budget and replica statistics.
type Fanout[Req, Resp, Out any] struct {
	leaves   []Leaf[Req, Resp]
	shards   []shardCaller[Req, Resp] // nil when no leaf is a replica set
	merge    Merge[Resp, Out]
	cfg      config
	early    int  // Do returns once this many shards answered (n: wait for all)
	required int  // fewer answers than this is an error
	cancels  bool // Do may end before every leaf finished, so leaves get a cancelable context
	pol      *policy
	m        *metrics
	log      *zap.Logger
	wg       sync.WaitGroup
	rotate   atomic.Uint32
	// base is New's clock reading: Do measures latencies as offsets from it, because time.Since
	// (monotonic only) costs a third of time.Now (which also reads the wall clock).
	base time.Time
}

// shardCaller is implemented by replica sets: a shard that reports which replica answered and
// whether it hedged.
type shardCaller[Req, Resp any] interface {
	callShard(ctx context.Context, req Req, p *policy, rep *Report) (Resp, error)
}

// New returns a fan-out over leaves (one per shard; a *ReplicaSet is a shard with replicas) that
// merges answers with merge. It validates the options and starts nothing.
func New[Req, Resp, Out any](leaves []Leaf[Req, Resp], merge Merge[Resp, Out], opts ...Option) (*Fanout[Req, Resp, Out], error) {
	cfg := config{log: zap.NewNop()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	if len(leaves) == 0 {
		return nil, ErrNoLeaves
	}
	n := len(leaves)
	f := &Fanout[Req, Resp, Out]{leaves: append([]Leaf[Req, Resp](nil), leaves...), merge: merge, cfg: cfg,
		log: cfg.log.Named("scatter"), base: time.Now()}
	for i, l := range f.leaves {
		if l == nil {
			return nil, fmt.Errorf("leaf %d is nil: %w", i, ErrNoLeaves)
		}
		if sc, ok := l.(shardCaller[Req, Resp]); ok {
			if f.shards == nil {
				f.shards = make([]shardCaller[Req, Resp], n)
			}
			f.shards[i] = sc
		}
	}
	f.early = n
	if cfg.quorum > 0 {
		f.early = min(cfg.quorum, n)
	}
	if cfg.coverage > 0 {
		// The epsilon keeps exact fractions exact (0.7*10 is 7.000000000000001 in floating point);
		// any coverage above 0 needs at least one shard.
		f.early = min(n, max(1, int(math.Ceil(cfg.coverage*float64(n)-1e-9))))
	}
	switch {
	case cfg.quorum > 0 || cfg.coverage > 0:
		f.required = f.early
	case cfg.failFast:
		f.required = n
	default:
		f.required = 1
	}
	if cfg.canary >= n {
		cfg.canary = 0 // nothing would be left to protect
		f.cfg.canary = 0
	}
	f.cancels = cfg.failFast || f.early < n || cfg.canary > 0
	m, err := newMetrics(cfg.reg, cfg.name)
	if err != nil {
		return nil, err
	}
	f.m = m
	f.pol = &policy{hedge: cfg.hedge, probation: cfg.probation, selection: cfg.selection,
		leafTimeout: cfg.leafTimeout, wg: &f.wg, m: m, log: f.log}
	if cfg.hedge != nil {
		f.pol.budget = newBudget(cfg.hedge.Budget, cfg.hedge.Burst)
	}
	return f, nil
}

// Wait blocks until every leaf call started by a Do that has returned has returned too, including
// the calls Do abandoned when it returned early. Use it at shutdown, after the last Do: the calls
// of a Do still running are that Do's to wait for.
func (f *Fanout[Req, Resp, Out]) Wait() { f.wg.Wait() }

// Shards returns the number of shards.
func (f *Fanout[Req, Resp, Out]) Shards() int { return len(f.leaves) }

// call is the state of one Do: one allocation holding the result and all slots' bookkeeping.
type call[Req, Resp, Out any] struct {
	res        Result[Resp, Out]
	f          *Fanout[Req, Resp, Out]
	ctx        context.Context // the leaves' context
	req        Req
	slots      []Slot[Resp]  // where leaves write; res.Slots is a copy if Do ended early
	start      time.Duration // since f.base
	dispatched bool          // Do started the non-canary shards
	gated      bool          // one goroutine per shard, not counted in f.wg (see gate)
	done       chan struct{}
	canaryDone chan struct{}
	n, canaryN int32
	early      int32
	end        int32 // worker dispatch: one past the last position
	first      int   // shard index of position 0 (rotates with canaries)
	signalled  atomic.Bool
	why        atomic.Uint32
	failed     atomic.Int32 // first failing shard under fail-fast
	_          [64]byte     // keep gate and next, written by every leaf, off the line of the fields leaves only read
	// gate counts the shards that finished (low 32 bits); bit 63 says Do returned early. A leaf
	// publishes its slot with an atomic store to Slot.state, then adds one here: one shared atomic
	// add per leaf. Gated leaves (one goroutine per shard) are not counted in f.wg one by one: if
	// Do ends early it adds 1 to f.wg for the leaves still running, and the leaf whose add brings
	// the count to tracked (the number of goroutines started) releases it.
	gate atomic.Uint64
	// next is the next position to take: each gated goroutine takes one when it starts (so that
	// all of them run one func value, which costs no allocation per goroutine), and each worker
	// under WithConcurrency takes positions until none are left.
	next    atomic.Int32
	ok      atomic.Int32
	tracked uint32     // written by Do before it closes the gate
	mu      sync.Mutex // serialises Fold
	closed  bool       // under mu: Do ended early, no more folds
}

func (c *call[Req, Resp, Out]) signal(w Why) {
	if c.signalled.CompareAndSwap(false, true) {
		c.why.Store(uint32(w))
		close(c.done)
	}
}

// Do scatters req to every shard and gathers the answers. It returns when every shard finished,
// when the quorum answered, on the first error under fail-fast, when a canary failed, or when ctx
// or the fan-out's timeout ends, whichever comes first; shards still running are cancelled and
// their late answers dropped. The Result is never nil; its slots report every shard. The error is
// a *CoverageError, a *LeafError (fail-fast), an ErrCanary-wrapping error, or Merge.Final's.
//
// When nothing but the leaves can end the fan-out (ctx is never done, and there is no timeout,
// quorum, fail-fast, canary or concurrency cap), Do calls the last shard on its own goroutine
// instead of starting one for it: it would only wait otherwise.
func (f *Fanout[Req, Resp, Out]) Do(ctx context.Context, req Req) (*Result[Resp, Out], error) {
	n := len(f.leaves)
	c := &call[Req, Resp, Out]{f: f, req: req, n: int32(n), done: make(chan struct{})}
	if f.early < n {
		c.early = int32(f.early) // else 0, which a count after Add never equals
	}
	c.failed.Store(-1)
	c.slots = make([]Slot[Resp], n)
	c.res.Slots = c.slots
	if f.merge.Init != nil {
		c.res.Out = f.merge.Init()
	}
	lctx := ctx
	var cancel context.CancelFunc
	if f.cfg.timeout > 0 {
		lctx, cancel = context.WithTimeout(ctx, f.cfg.timeout)
	} else if f.cancels {
		lctx, cancel = context.WithCancel(ctx)
	}
	c.ctx = lctx
	lim := f.cfg.concurrency
	c.gated = f.shards == nil && (lim <= 0 || lim >= n-f.cfg.canary)
	c.start = time.Since(f.base)
	pos := 0
	if k := f.cfg.canary; k > 0 {
		c.first = int(f.rotate.Add(uint32(k))-uint32(k)) % n
		c.canaryN = int32(k)
		c.canaryDone = make(chan struct{})
		c.spawn(k)
		pos = k
		if !c.awaitCanary(lctx) {
			c.signal(EndCanary)
		}
	}
	if !c.signalled.Load() {
		c.dispatched = true
		if d := lctx.Done(); d == nil {
			// Nothing can end the fan-out but its leaves: Do would only wait, so it calls the
			// last shard itself instead of starting a goroutine for it.
			if c.gated && pos == 0 { // n > 0: New refuses no leaves
				c.spawn(n - 1)
				c.runNext()
			} else {
				c.dispatch(pos)
			}
			<-c.done
		} else {
			c.dispatch(pos)
			select {
			case <-c.done:
			case <-d:
				c.signal(EndContext)
			}
		}
	}
	ended := lctx.Err() != nil // before cancel: did the deadline or the caller end it?
	if cancel != nil {
		cancel()
	}
	return c.finish(ctx, ended)
}

// awaitCanary waits for the canary shards and reports whether they all answered in time.
func (c *call[Req, Resp, Out]) awaitCanary(ctx context.Context) bool {
	var timeout <-chan time.Time
	if w := c.f.cfg.canaryWait; w > 0 {
		t := time.NewTimer(w)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-c.canaryDone:
	case <-c.done: // fail-fast error from a canary
		return false
	case <-ctx.Done():
		c.signal(EndContext)
		return false
	case <-timeout:
		return false
	}
	for j := 0; j < int(c.canaryN); j++ {
		if c.slots[(c.first+j)%len(c.slots)].Status != StatusOK {
			return false
		}
	}
	return true
}

// dispatch starts the shards at positions pos.. (position j is shard (first+j) mod n).
func (c *call[Req, Resp, Out]) dispatch(pos int) {
	n := int(c.n)
	lim := c.f.cfg.concurrency
	if c.gated || lim <= 0 || lim >= n-pos {
		c.spawn(n - pos)
		return
	}
	c.next.Store(int32(pos))
	c.end = int32(n)
	c.f.wg.Add(lim)
	work := c.work
	for range lim {
		go work()
	}
}

// spawn starts k shard goroutines, each of which takes the next position; gated ones are not
// counted in f.wg. They all run one func value: a go statement with arguments would allocate a
// closure per goroutine.
func (c *call[Req, Resp, Out]) spawn(k int) {
	run := c.runNext
	if !c.gated {
		c.f.wg.Add(k)
		run = c.runTracked
	}
	for range k {
		go run()
	}
}

// runNext is a gated shard's goroutine: it takes the next position and calls its shard.
func (c *call[Req, Resp, Out]) runNext() {
	c.runOne(c.shardAt(int(c.next.Add(1)-1)), c.start)
}

// shardAt is the shard index of position j: positions start at shard first (canaries rotate it).
func (c *call[Req, Resp, Out]) shardAt(j int) int {
	if c.first == 0 {
		return j
	}
	return (c.first + j) % int(c.n)
}

// runTracked is the goroutine of a shard counted in f.wg: it takes the next position and calls
// its shard.
func (c *call[Req, Resp, Out]) runTracked() {
	defer c.f.wg.Done()
	c.runNext()
}

// work is a dispatch worker under WithConcurrency: it takes positions until none are left or the
// fan-out ended.
func (c *call[Req, Resp, Out]) work() {
	defer c.f.wg.Done()
	for !c.signalled.Load() && c.ctx.Err() == nil {
		j := c.next.Add(1) - 1
		if j >= c.end {
			return
		}
		c.runOne(c.shardAt(int(j)), time.Since(c.f.base))
	}
}

// count adds a finished (gateOne) or skipped (gateSkip) shard to the gate and, if Do already
// returned and this was the last gated leaf, releases Do's hold on f.wg.
func (c *call[Req, Resp, Out]) count(delta uint64) uint64 {
	g := c.gate.Add(delta)
	if g&gateClosed != 0 && c.gated && gateLeft(g) == c.tracked {
		c.f.wg.Done()
	}
	return g
}

// gateLeft is how many shard goroutines are done with the call: finished plus skipped.
func gateLeft(g uint64) uint32 { return uint32(g&gateCount) + uint32(g>>32&gateSkips) }

func (c *call[Req, Resp, Out]) runOne(i int, start time.Duration) {
	// The fan-out ended before this shard's turn, or it ended and abandon claimed the slot as
	// skipped: the leaf is not called. A slot marked called is reported called by abandon.
	if c.signalled.Load() || !atomic.CompareAndSwapUint32(&c.slots[i].state, 0, slotCalled) {
		c.count(gateSkip)
		return
	}
	var (
		rep  Report
		resp Resp
		err  error
	)
	if c.f.shards != nil && c.f.shards[i] != nil {
		resp, rep, err = c.f.invokeShard(c.ctx, i, c.req)
	} else {
		resp, err = c.f.invoke(c.ctx, i, c.req)
		rep.Attempts = 1
	}
	if !c.f.cfg.noLatency {
		rep.Latency = time.Since(c.f.base) - start
	}
	rep.Err = err
	rep.Status = statusOf(err)
	s := &c.slots[i]
	if fold := c.f.merge.Fold; fold != nil {
		// The fold and the slot are published together, so that Out and the slots agree. The
		// unlock is deferred: a panicking Fold on the inline last leaf unwinds into Do's caller,
		// and the other leaves must not then block on mu.
		func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if !c.closed {
				if err == nil {
					s.Resp = resp
					c.res.Out = fold(c.res.Out, i, resp)
				}
				s.Report = rep
				atomic.StoreUint32(&s.state, slotDone)
			}
		}()
	} else {
		if err == nil {
			s.Resp = resp
		}
		s.Report = rep
		atomic.StoreUint32(&s.state, slotDone)
	}
	g := c.count(gateOne)
	if g&gateClosed != 0 {
		return // Do already returned; the answer was dropped
	}
	if err == nil {
		if c.early > 0 && c.ok.Add(1) == c.early {
			c.signal(EndQuorum)
		}
	} else if c.f.cfg.failFast {
		if c.failed.CompareAndSwap(-1, int32(i)) {
			w := EndFailFast
			if (i-c.first+int(c.n))%int(c.n) < int(c.canaryN) {
				w = EndCanary // a failed canary: the canary's verdict, as WithCanary says
			}
			c.signal(w)
		}
	}
	d := int32(g & gateCount)
	if d == c.n {
		c.signal(EndAll)
	}
	if d == c.canaryN {
		close(c.canaryDone)
	}
}

const (
	gateOne    = 1
	gateCount  = 1<<32 - 1 // finished shards
	gateSkip   = 1 << 32
	gateSkips  = 1<<31 - 1 // after >> 32: shards skipped because the fan-out had ended
	gateClosed = 1 << 63
)

func statusOf(err error) Status {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, context.DeadlineExceeded):
		return StatusTimeout
	case errors.Is(err, context.Canceled):
		return StatusCanceled
	}
	return StatusError
}

func (f *Fanout[Req, Resp, Out]) invoke(ctx context.Context, i int, req Req) (resp Resp, err error) {
	defer func() {
		if v := recover(); v != nil {
			resp, err = f.recovered(i, v)
		}
	}()
	if d := f.cfg.leafTimeout; d > 0 {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return f.leaves[i].Call(ctx, req)
	}
	return f.leaves[i].Call(ctx, req)
}

// invokeShard calls a replica-set shard, which fills in the report (kept off the plain path,
// where a report pointer through an interface call would cost an allocation per leaf).
func (f *Fanout[Req, Resp, Out]) invokeShard(ctx context.Context, i int, req Req) (resp Resp, rep Report, err error) {
	r := new(Report)
	defer func() {
		if v := recover(); v != nil {
			resp, err = f.recovered(i, v)
		}
		rep = *r
	}()
	resp, err = f.shards[i].callShard(ctx, req, f.pol, r)
	return resp, *r, err
}

func (f *Fanout[Req, Resp, Out]) recovered(i int, v any) (Resp, error) {
	var zero Resp
	f.log.Warn("leaf panicked", zap.Int("shard", i), zap.Any("value", v))
	return zero, &PanicError{Value: v, Stack: debug.Stack()}
}

// finish abandons the shards still running, reports, merges and picks the error.
func (c *call[Req, Resp, Out]) finish(ctx context.Context, ended bool) (*Result[Resp, Out], error) {
	f := c.f
	why := Why(c.why.Load())
	if int32(c.gate.Load()&gateCount) != c.n {
		c.abandon(why, ctx)
	}
	slots := c.res.Slots
	m := f.m
	var (
		batch  latencyBatch
		counts [len(statusNames)]int
		hedges int
	)
	timed := m.on && !f.cfg.noLatency
	for i := range slots {
		s := &slots[i]
		counts[s.Status]++
		if timed && s.Status != StatusSkipped {
			batch.add(s.Latency)
		}
		if s.Hedged {
			hedges += s.Attempts - 1
		}
	}
	c.res.Answered = counts[StatusOK]
	if why == EndAll && ended && c.res.Answered < len(slots) {
		why = EndContext // the last leaves returned because the deadline passed
	}
	c.res.Hedges = hedges
	c.res.Why = why
	if m.on {
		m.leafLatency.add(&batch)
		for st, k := range counts {
			if k > 0 {
				m.leafResults[st].Add(float64(k))
			}
		}
		m.fanouts[why].Inc()
		m.coverage.Observe(c.res.Coverage())
	}
	m.nFanouts.Add(1)

	var err error
	switch {
	case why == EndCanary:
		err = ErrCanary
		if i := int(c.failed.Load()); i >= 0 { // fail-fast: the canary that failed first
			err = fmt.Errorf("%w: shard %d %s: %w", ErrCanary, i, slots[i].Status, orNil(slots[i].Err))
			break
		}
		for j := 0; j < int(c.canaryN); j++ {
			i := (c.first + j) % len(slots)
			if s := &slots[i]; s.Status != StatusOK {
				err = fmt.Errorf("%w: shard %d %s: %w", ErrCanary, i, s.Status, orNil(s.Err))
				break
			}
		}
	case why == EndFailFast:
		i := int(c.failed.Load())
		err = &LeafError{Shard: i, Err: slots[i].Err}
	case c.res.Answered < f.required:
		var cause error
		if why == EndContext {
			cause = ctx.Err()
			if cause == nil {
				cause = context.DeadlineExceeded // the fan-out's own timeout
			}
		} else {
			cause = causeOf(slots)
		}
		err = &CoverageError{Answered: c.res.Answered, Shards: len(slots), Required: f.required, Cause: cause}
	}
	if final := f.merge.Final; final != nil {
		out, ferr := final(c.res.Out, slots)
		c.res.Out = out
		if err == nil {
			err = ferr
		}
	}
	if ce := f.log.Check(zap.DebugLevel, "fan-out ended"); ce != nil {
		ce.Write(zap.Stringer("end", why), zap.Int("answered", c.res.Answered), zap.Int("shards", len(slots)),
			zap.Int("hedges", hedges), zap.Duration("took", time.Since(f.base)-c.start), zap.Error(err))
	}
	return &c.res, err
}

type nilErr struct{}

func (nilErr) Error() string { return "no error" }

func orNil(err error) error {
	if err == nil {
		return nilErr{}
	}
	return err
}

// abandon closes the gate and gives the result a copy of the slots: the answers published so far,
// and a report for every shard that did not finish. Late leaves write to the old slots, which
// nobody reads, and their answers are dropped.
func (c *call[Req, Resp, Out]) abandon(why Why, ctx context.Context) {
	running := StatusCanceled
	if why == EndContext && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		running = StatusTimeout
	}
	if why == EndCanary && ctx.Err() == nil && c.failed.Load() < 0 {
		running = StatusTimeout // a late canary
	}
	now := time.Since(c.f.base) - c.start
	old := c.slots
	n := len(old)
	if c.f.merge.Fold != nil {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}
	if c.gated {
		// Hold f.wg for the leaves still running; the last of them releases it (count).
		c.f.wg.Add(1)
		c.tracked = uint32(c.canaryN)
		if c.dispatched {
			c.tracked = uint32(n)
		}
	}
	if g := c.gate.Or(gateClosed); c.gated && gateLeft(g) == c.tracked {
		c.f.wg.Done() // they all finished meanwhile
	}
	slots := make([]Slot[Resp], n)
	for i := range old {
		s := &slots[i]
		st := &old[i].state
		if atomic.CompareAndSwapUint32(st, 0, slotSkipped) {
			// Never called: its goroutine had not reached the leaf, or there was none; it
			// will not call it now.
			s.Status = StatusSkipped
			continue
		}
		if atomic.LoadUint32(st) == slotDone {
			*s = old[i]
			continue
		}
		s.Status, s.Latency = running, now
		s.Attempts = 1 // its first call; hedges and failovers it sent meanwhile are not known here
		s.Err = context.Canceled
		if running == StatusTimeout {
			s.Err = context.DeadlineExceeded
		}
	}
	c.res.Slots = slots
}

// Statusz reports the fan-out's counters for a status page.
func (f *Fanout[Req, Resp, Out]) Statusz() (string, []string, [][]string) {
	m := f.m
	rows := [][]string{
		{"shards", strconv.Itoa(len(f.leaves))},
		{"quorum", strconv.Itoa(f.early)},
		{"fan-outs", strconv.FormatInt(m.nFanouts.Load(), 10)},
		{"hedges sent", strconv.FormatInt(m.nHedges.Load(), 10)},
		{"hedges won", strconv.FormatInt(m.nHedgesWon.Load(), 10)},
		{"hedge budget exhausted", strconv.FormatInt(m.nExhausted.Load(), 10)},
		{"replicas put on probation", strconv.FormatInt(m.nProbations.Load(), 10)},
	}
	if f.pol.budget != nil {
		rows = append(rows, []string{"hedge tokens", strconv.FormatFloat(f.pol.budget.tokens(), 'f', 2, 64)})
	}
	title := "scatter"
	if f.cfg.name != "" {
		title += " " + f.cfg.name
	}
	return title, []string{"key", "value"}, rows
}
