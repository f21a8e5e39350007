package workqueue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Pipeline stages move items between queues ("Designing Distributed Systems", ch. 11-12: event-driven
// batch processing). Each is a Component: Run leases from its input(s) until ctx ends, adds what it
// produces to its output(s), and acks the input only after every add succeeded, so a crash between
// the two repeats the add (at least once). While a stage makes the adds of an input item, it keeps
// the item's lease alive, so an output that answers slowly is simply waited for. An add that fails,
// or that gets no answer for long (a server that hangs without closing; see WithStageRetry), is
// tried again while the stage holds the input item, so an outage of the output uses up none of the
// input's attempts; a closed output ends Run with ErrClosed. A lease lost meanwhile ends the work
// on its item, which comes again with its adds (at least once). When ctx ends, an add in flight is
// waited for 1s more, so that its input item is acked rather than added again if it is answered;
// then the stage gives back what it holds. The calls a stage makes on its inputs after ctx ended
// give up 2s after it ended, so Run returns within about 2s even if input and output both hang
// (but for a Queue that ignores ctx). An input item's Key is kept on what a Copier,
// Filter, Sharder, Merger or Join produces, so the output queue's key rules apply to it as to any
// keyed Add (an add absorbed by a waiting item of its key ends there; use keyless items where every
// item must travel on); a Splitter's parts and a Reduce's result are keyless items of their own.
// Stages compose by sharing queues: one stage's output is the next one's input.

// StageOption configures a pipeline stage. WithLogger and WithRegisterer are StageOptions too.
type StageOption interface{ applyStage(*stageConfig) }

type stageConfig struct {
	logger  *zap.Logger
	reg     prometheus.Registerer
	name    string
	named   bool // WithStageName was given
	retry   time.Duration
	maxWait time.Duration
}

type stageOptionFunc func(*stageConfig)

func (f stageOptionFunc) applyStage(c *stageConfig) { f(c) }

// WithStageName names a stage: its metrics carry the label stage="name" and its log lines the
// field stage. Default: the stage's kind ("copier", "filter", "splitter", "sharder", "merger",
// "join" or "reduce"). Stages that share a registerer need names of their own, so two of one kind
// need WithStageName: the second one's constructor returns the registerer's error otherwise. The
// constructors refuse "".
func WithStageName(name string) StageOption {
	return stageOptionFunc(func(c *stageConfig) { c.name, c.named = name, true })
}

// WithStageRetry is how long a stage waits before it tries again an output add that failed (then
// twice as long each time, up to 8 times this), or a lease that failed. An output add the output
// has not answered within 8 times this, or twice as long as it took to answer its last add if that
// is longer, is given up as hung and tried again, each time with twice the wait. While adds are made
// the stage extends the leases of the input items it holds at a third of their length, but at most
// this apart for a lease whose deadline tells it nothing: none, or past, or by another machine's
// clock (a Client's from a server that writes no ttl); so keep it under a third of such an input's
// lease. Default 1s; the constructors refuse less than 1ms, which would retry a failing queue in a
// busy loop.
func WithStageRetry(d time.Duration) StageOption {
	return stageOptionFunc(func(c *stageConfig) { c.retry = d })
}

// minStageRetry is the least WithStageRetry a stage takes.
const minStageRetry = time.Millisecond

// WithFlushAfter bounds how long Reduce holds a partial batch before it emits it. Default 1s; the
// constructors (every stage's, though only Reduce uses it) refuse d <= 0.
func WithFlushAfter(d time.Duration) StageOption {
	return stageOptionFunc(func(c *stageConfig) { c.maxWait = d })
}

// stageCfg is the config opts make for a stage of kind, or the error that names an option they
// give a value it does not take.
func stageCfg(kind string, opts []StageOption) (stageConfig, error) {
	c := stageConfig{logger: zap.NewNop(), retry: time.Second, maxWait: time.Second}
	for _, o := range opts {
		o.applyStage(&c)
	}
	switch {
	case c.retry < minStageRetry:
		return c, badOption("WithStageRetry", c.retry, "want a duration of at least "+minStageRetry.String())
	case c.maxWait <= 0:
		return c, badOption("WithFlushAfter", c.maxWait, "want a positive duration")
	case c.named && c.name == "":
		return c, badOption("WithStageName", `""`, "want a name")
	}
	if !c.named {
		c.name = kind
	}
	if c.logger == nil {
		c.logger = zap.NewNop()
	}
	c.logger = c.logger.With(zap.String("stage", c.name))
	return c, nil
}

// emit is one add a stage makes.
type emit struct {
	q       Queue
	payload []byte
	key     string
}

// mover is the loop every one-input stage shares: lease, map to adds, add, ack.
type mover struct {
	in Queue
	o  *outlet
	f  func(it *Item) ([]emit, error) // an error buries the input item
}

func (m *mover) run(ctx context.Context) error {
	sc, end := newStageCtx(ctx)
	defer end()
	k := m.o.newKeeper(sc)
	defer k.close()
	for {
		it, err := m.o.lease(sc.run, sc, m.in)
		if it == nil {
			return err
		}
		if err := m.handle(sc, k, it); err != nil {
			return err
		}
	}
}

func (m *mover) handle(sc stageCtx, k *keeper, it *Item) error {
	outs, err := m.f(it)
	if err != nil {
		m.o.bury(sc.in, []heldItem{{m.in, it}}, err.Error())
		return nil
	}
	return m.o.deliver(sc, k, []heldItem{{m.in, it}}, outs)
}

// errOutputClosed ends a stage whose output queue was closed.
var errOutputClosed = fmt.Errorf("stage output: %w", ErrClosed)

// errInputLost ends the work on input items one of whose leases was lost.
var errInputLost = errors.New("input lease lost")

const (
	// backoffCap is how many times the stage's retry delay deliver waits at most between two tries,
	// and at first for an add's answer.
	backoffCap = 8
	// maxAddWait bounds how long deliver waits for an add's answer.
	maxAddWait = time.Hour
	// stopGrace is how long after a stage's ctx ended an output add in flight is still waited for;
	// the calls on the inputs that finish what the stage holds give up stopGrace after that.
	stopGrace = time.Second
)

// outlet makes a stage's output adds for the input items it holds, and acks the items.
type outlet struct {
	cfg      stageConfig
	m        *stageMetrics
	down     outage       // of the output's adds
	inDown   outage       // of the Extends of held input items
	answered atomic.Int64 // how long the output took to answer the last add it made (a Duration)
}

// newOutlet returns the outlet of a stage of kind, with its metrics registered, or the error that
// names a bad option.
func newOutlet(kind string, opts []StageOption) (*outlet, error) {
	cfg, err := stageCfg(kind, opts)
	if err != nil {
		return nil, err
	}
	m, err := newStageMetrics(cfg.name, cfg.reg)
	if err != nil {
		return nil, err
	}
	return &outlet{cfg: cfg, m: m}, nil
}

// unregister is the Unregister of the stage whose outlet o is.
func (o *outlet) unregister() { o.m.reg.Unregister() }

// stageCtx is what a stage's calls run under: run is Run's ctx (leases and pauses end with it);
// adds, for output adds, ends stopGrace after run, so that an add in flight then may still be
// answered and its input acked rather than added again; in, for the calls on the inputs that
// finish the items held (extends while adds run, acks, releases, buries), ends 2*stopGrace after
// run, so that a stopped stage returns soon even if its input hangs.
type stageCtx struct{ run, adds, in context.Context }

// newStageCtx returns the stageCtx of a Run with ctx, and a func that ends it, to call before Run
// returns.
func newStageCtx(ctx context.Context) (stageCtx, func()) {
	adds, endAdds := outlive(ctx, stopGrace)
	in, endIn := outlive(ctx, 2*stopGrace)
	return stageCtx{ctx, adds, in}, func() { endAdds(); endIn() }
}

// outlive returns a ctx that ends grace after ctx ends, and a func that ends it at once and waits
// for the goroutine that counts the grace, if it started.
func outlive(ctx context.Context, grace time.Duration) (context.Context, func()) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	exited := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(exited)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-c.Done():
		}
	})
	return c, func() {
		cancel()
		if !stop() {
			<-exited
		}
	}
}

// deliver makes the adds outs, in order, for the input items held, and acks the items once all are
// made. It does not nack an item whose add failed: that would use up one of its attempts, and a
// short outage of the output would send the input to the dead letters. It holds the items instead,
// and tries the adds not made yet again (see addAll). While it works it keeps their leases alive
// (see keeper), so that an output that answers slowly is waited for, however long the adds of an
// item take together. It ends
//   - when every add is made: it acks the items;
//   - when the stage stops (its ctx ended and an add in flight got stopGrace more) or a lease is
//     lost: it gives the items back (where the queue can, without counting the attempt);
//   - when the output refuses an add for good (ErrTooLarge, ErrInvalid): it buries the items;
//   - when the output is closed: it gives the items back and returns errOutputClosed.
//
// Adds made before it gave up are made again with the items' next delivery, as after a crash; an
// item is never acked before all its adds were made.
func (o *outlet) deliver(sc stageCtx, k *keeper, held []heldItem, outs []emit) error {
	var work context.Context
	if len(outs) > 0 {
		work = k.start(held)
	}
	return o.deliverHeld(sc, k, work, held, outs)
}

// deliverHeld is deliver once k keeps the leases of held (with outs to add), under work, the ctx
// k.start returned.
func (o *outlet) deliverHeld(sc stageCtx, k *keeper, work context.Context, held []heldItem, outs []emit) error {
	if len(outs) > 0 {
		err := context.Cause(work) // a lease lost before the adds (a Reduce's, as its batch filled)
		if err == nil {
			err = o.addAll(sc.run, work, outs, k.times)
		}
		k.end()
		switch {
		case errors.Is(err, errOutputClosed):
			o.giveBack(sc.in, held)
			return err
		case errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalid):
			o.bury(sc.in, held, "output add: "+err.Error())
			return nil
		case err != nil: // stopped, or a lease lost
			o.giveBack(sc.in, held)
			return nil
		}
	}
	outcome := stagePassed
	if len(outs) == 0 {
		outcome = stageDropped
	}
	for _, x := range held {
		if err := x.q.Ack(sc.in, x.it.Lease); err != nil {
			o.cfg.logger.Warn("ack failed; the item may be processed again", zap.String("id", x.it.ID), zap.Error(err))
			o.m.finish(stageLost)
			continue
		}
		o.m.finish(outcome)
	}
	return nil
}

// addAll makes the adds outs, in order, under work. An add that fails, or that the output has not
// answered within addWait (a server that stopped answering without closing), is tried again after
// the stage's retry delay (doubled each time, up to backoffCap times it), with twice the wait after
// an add that got no answer: so an output slower than any one wait still gets its adds through,
// and one that hangs is asked again. An outage is logged once, and its end. addAll returns nil once
// every add is made; errOutputClosed, or the output's refusal for good (ErrTooLarge, ErrInvalid);
// or, once work ends (or run ends between two tries), why.
func (o *outlet) addAll(run, work context.Context, outs []emit, times *histogramShard) error {
	base := o.cfg.retry
	pause, wait := base, o.addWait(base)
	for {
		var err error
		hung := false
		for len(outs) > 0 {
			if hung, err = o.add(work, outs[0], wait, times); err != nil {
				break
			}
			outs = outs[1:]
		}
		switch {
		case err == nil:
			o.down.ok(o.cfg.logger, "output add works again")
			return nil
		case work.Err() != nil:
			return context.Cause(work)
		case hung: // the output's outage, whatever error the queue made of it
			wait = min(2*wait, maxAddWait)
		case errors.Is(err, ErrClosed):
			return errOutputClosed
		case errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalid):
			return err
		}
		o.down.fail(o.cfg.logger, "output add failed; holding the input until it works", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-run.Done():
			t.Stop()
			return run.Err()
		case <-work.Done():
			t.Stop()
			return context.Cause(work)
		}
		pause = min(mulDur(pause, 2), mulDur(base, backoffCap))
	}
}

// addWait is how long addAll first waits for an add's answer: backoffCap times the retry delay
// base, or twice as long as the output took to answer the last add it made, whichever is longer.
func (o *outlet) addWait(base time.Duration) time.Duration {
	return min(max(mulDur(base, backoffCap), 2*time.Duration(o.answered.Load())), maxAddWait)
}

// add makes the add e under work, and gives it up as hung (true) if the output has not answered
// within wait. It observes the time an add took in times, the shard of the loop that makes it.
func (o *outlet) add(work context.Context, e emit, wait time.Duration, times *histogramShard) (hung bool, err error) {
	actx, cancel := context.WithTimeout(work, wait)
	defer cancel()
	start := time.Now()
	if _, err = e.q.Add(actx, e.payload, AddOptions{Key: e.key}); err == nil {
		took := time.Since(start)
		o.answered.Store(int64(took))
		times.Observe(took.Seconds())
		return false, nil
	}
	if work.Err() != nil { // given up by the stage, not failed by the output
		return false, err
	}
	o.m.fail(callAdd)
	if actx.Err() != nil {
		return true, fmt.Errorf("no answer within %v: %w", wait, err)
	}
	return false, err
}

// keeper keeps the leases of the input items a stage loop's deliver holds alive while it makes their
// adds. A loop has one, reused from item to item, so that keeping the leases of an item whose adds
// are answered soon costs no timer, goroutine or context of its own: one timer (armed lazily, as a
// Pool worker's) fires when the first held lease is due; one armed to fire by then already is left
// alone, so a loop of quick adds touches it about once a third of a lease rather than once an item.
// Firing between items, it is not set again. The adds' ctx is kept from item to item until a lost
// lease (or the end of an Extend in flight) cancels it.
type keeper struct {
	o     *outlet
	ctx   context.Context // the loop's stageCtx's adds
	times *histogramShard // the loop's shard of the times its adds take
	t     *time.Timer     // runs fire
	work  context.Context // the adds' and Extends', reused until it ends: with ctx, or cancelled by lose
	lose  context.CancelCauseFunc
	// mu guards the rest; fire does not hold it through its Extends (see end).
	mu        sync.Mutex
	held      []heldItem // nil between items
	due       []time.Time
	lost      bool      // a lease of held was lost: keep no more
	fireAt    time.Time // when t fires; zero when it is stopped or fired
	scheduled int       // firings of t that have not taken mu yet
	extending bool      // fire makes Extends, without mu
	idle      chan struct{}
	closed    bool
}

// newKeeper returns the keeper of one stage loop, which calls close before it returns.
func (o *outlet) newKeeper(sc stageCtx) *keeper {
	k := &keeper{o: o, ctx: sc.adds, times: o.m.addTime.shard()}
	k.t = time.AfterFunc(time.Hour, k.fire)
	k.t.Stop()
	return k
}

// close stops the timer and waits for a firing that started.
func (k *keeper) close() {
	k.mu.Lock()
	k.closed = true
	if k.t.Stop() {
		k.scheduled--
	}
	if k.lose != nil {
		k.lose(nil)
	}
	wait := k.scheduled > 0
	if wait {
		k.idle = make(chan struct{})
	}
	idle := k.idle
	k.mu.Unlock()
	if wait {
		<-idle
	}
}

// start keeps the leases of held, each when renewIn says, until end, and returns the ctx of their
// adds. A lease lost (or its queue closed) ends it with errInputLost, so that deliver gives up the
// add in flight and gives the items back: the item may be leased to another holder by now, and it is
// not acked without its adds; they are made again with its next delivery (at least once). A failed
// Extend is tried again after the stage's retry delay. The Extends use the returned ctx.
func (k *keeper) start(held []heldItem) context.Context {
	now := time.Now()
	k.mu.Lock()
	if k.work == nil || k.work.Err() != nil {
		k.work, k.lose = context.WithCancelCause(k.ctx)
	}
	k.held, k.lost = held, false
	k.due = k.due[:0]
	for _, x := range held {
		k.due = append(k.due, now.Add(k.o.renewIn(now, x.it.Deadline)))
	}
	if first := earliest(k.due); k.fireAt.IsZero() || k.fireAt.After(first) {
		k.arm(first.Sub(now), first)
	}
	k.mu.Unlock()
	return k.work
}

// hold keeps the lease of x too, from now until end, as start does those it was given: a Reduce
// holds each item of a batch from its lease on, as the batch fills. It is called between start
// and end.
func (k *keeper) hold(x heldItem) {
	now := time.Now()
	due := now.Add(k.o.renewIn(now, x.it.Deadline))
	k.mu.Lock()
	k.held = append(k.held, x) // past the held that a fire in flight extends: it reads none of x
	k.due = append(k.due, due)
	if !k.extending && (k.fireAt.IsZero() || k.fireAt.After(due)) { // else fire sets t after its Extends
		k.arm(due.Sub(now), due)
	}
	k.mu.Unlock()
}

// end stops keeping the leases start (and hold) was given, giving up an Extend in flight and
// waiting for it.
func (k *keeper) end() {
	k.mu.Lock()
	k.held = nil
	wait := k.extending
	if wait {
		k.lose(nil) // the next start takes a new work
		k.idle = make(chan struct{})
	}
	idle := k.idle
	k.mu.Unlock()
	if wait {
		<-idle
	}
}

// arm sets t to fire after d, at fireAt; k.mu is held.
func (k *keeper) arm(d time.Duration, fireAt time.Time) {
	k.fireAt = fireAt
	if !k.t.Reset(d) {
		k.scheduled++
	}
}

// fire extends the held leases that are due and sets t for the next; it runs on t's goroutine.
// A firing meant for an earlier item only sets t for the current one's first.
func (k *keeper) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.scheduled--
	if k.closed {
		if k.scheduled == 0 && k.idle != nil {
			close(k.idle)
		}
		return
	}
	k.fireAt = time.Time{}
	if k.held == nil || k.lost {
		return
	}
	// extend writes due without mu: a copy, since hold may append to k.due meanwhile, which
	// reads its array as it grows it.
	held, due, work := k.held, slices.Clone(k.due), k.work
	k.extending = true
	k.mu.Unlock()
	lost := k.extend(work, held, due)
	k.mu.Lock()
	k.extending = false
	if k.held == nil { // end waits
		close(k.idle)
		k.idle = nil
		return
	}
	if lost {
		k.lost = true
		k.lose(errInputLost)
		return
	}
	copy(k.due, due) // hold may have moved k.due to a larger array meanwhile
	if work.Err() == nil {
		next := earliest(k.due)
		k.arm(time.Until(next), next)
	}
}

// extend extends the leases of held that are due (by due, fire's copy of the keeper's, which it
// updates without k.mu and fire copies back) under work, and reports whether one was lost.
func (k *keeper) extend(work context.Context, held []heldItem, due []time.Time) (lost bool) {
	o, log := k.o, k.o.cfg.logger
	for i, x := range held {
		if time.Now().Before(due[i]) {
			continue
		}
		d, err := x.q.Extend(work, x.it.Lease)
		now := time.Now()
		switch {
		case err == nil:
			due[i] = now.Add(o.renewIn(now, d))
			o.inDown.ok(log, "extend held input works again")
		case work.Err() != nil:
			return false
		case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrClosed):
			o.m.fail(callExtend)
			log.Warn("input lease lost; giving the input back", zap.String("id", x.it.ID), zap.Error(err))
			return true
		default:
			o.m.fail(callExtend)
			due[i] = now.Add(max(o.cfg.retry, minRenew))
			o.inDown.fail(log, "extend held input failed; trying again", err)
		}
	}
	return false
}

// earliest is the earliest of ts (not empty).
func earliest(ts []time.Time) time.Time {
	e := ts[0]
	for _, t := range ts[1:] {
		if t.Before(e) {
			e = t
		}
	}
	return e
}

// renewIn is how long after now a stage (deliver's keeper, a Join's holder) extends a held lease
// that runs until deadline: a third of the time left (at least minRenew), so that leases of any
// length hold; but at most the stage's retry delay when deadline is not by this process's clock (it
// has no monotonic reading: it came over the wire, as a Client's from a server that writes no ttl,
// and the two clocks may disagree by more than a lease), and the retry delay when it tells nothing
// (zero, or past: the next Extend says whether the lease is lost).
func (o *outlet) renewIn(now, deadline time.Time) time.Duration {
	every := max(o.cfg.retry, minRenew)
	left := deadline.Sub(now)
	switch {
	case deadline.IsZero() || left <= 0:
		return every
	case deadline == deadline.Round(0): // no monotonic reading
		return max(min(left/3, every), minRenew)
	}
	return max(left/3, minRenew)
}

// lease leases an item from q under ctx (sc.run, or one that ends sooner: a Reduce's flush delay),
// again after the stage's retry delay while Lease fails, but for ErrClosed, which it returns, and
// the end of ctx (no item, no error). An item a Queue hands out after the stage stopped (sc.run
// ended: a Client whose answer crossed the end, or a Queue that ignores ctx) is given back under
// sc.in, not processed: else a stopped stage would go on while its input has items. One handed out
// as a shorter ctx ends while the stage runs is the stage's, and returned.
func (o *outlet) lease(ctx context.Context, sc stageCtx, q Queue) (*Item, error) {
	for {
		it, err := q.Lease(ctx)
		switch {
		case err == nil && sc.run.Err() != nil:
			_ = releaseLease(sc.in, q, it.Lease)
			return nil, nil
		case err == nil:
			o.m.lease()
			return it, nil
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, ErrClosed):
			return nil, err
		}
		o.m.fail(callLease)
		o.cfg.logger.Warn("lease failed", zap.Error(err))
		if !sleepCtx(ctx, o.cfg.retry) {
			return nil, nil
		}
	}
}

// bury buries the held items for reason, logging a Bury that fails.
func (o *outlet) bury(ctx context.Context, held []heldItem, reason string) {
	for _, x := range held {
		if err := x.q.Bury(ctx, x.it.Lease, reason); err != nil {
			o.cfg.logger.Warn("bury failed", zap.String("id", x.it.ID), zap.Error(err))
			o.m.finish(stageLost)
			continue
		}
		o.m.finish(stageBuried)
	}
}

// giveBack returns the items held to their queues, without counting the attempt where it can.
func (o *outlet) giveBack(ctx context.Context, held []heldItem) {
	for _, x := range held {
		o.release(ctx, x)
	}
}

// release returns x to its queue, without counting the attempt where it can.
func (o *outlet) release(ctx context.Context, x heldItem) {
	if err := releaseLease(ctx, x.q, x.it.Lease); err != nil {
		o.m.finish(stageLost) // the queue did not take it back: it comes back when its lease ends
		return
	}
	o.m.finish(stageReleased)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func runMover(ctx context.Context, m *mover) error {
	err := m.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func checkQueues(qs ...Queue) error {
	for _, q := range qs {
		if q == nil {
			return fmt.Errorf("%w: nil queue", ErrInvalid)
		}
	}
	return nil
}

// Copier adds a copy of every input item to each output queue.
type Copier struct{ m mover }

// NewCopier returns a copier from in to outs.
func NewCopier(in Queue, outs []Queue, opts ...StageOption) (*Copier, error) {
	if err := checkQueues(append([]Queue{in}, outs...)...); err != nil || len(outs) == 0 {
		return nil, fmt.Errorf("%w: copier needs an input and at least one output", ErrInvalid)
	}
	outs = append([]Queue(nil), outs...)
	o, err := newOutlet("copier", opts)
	if err != nil {
		return nil, err
	}
	return &Copier{mover{in: in, o: o, f: func(it *Item) ([]emit, error) {
		e := make([]emit, len(outs))
		for i, q := range outs {
			e[i] = emit{q, it.Payload, it.Key}
		}
		return e, nil
	}}}, nil
}

// Run implements lifecycle.Component.
func (c *Copier) Run(ctx context.Context) error { return runMover(ctx, &c.m) }

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (c *Copier) Unregister() { c.m.o.unregister() }

// Filter passes the input items that keep accepts to out and drops (acks) the others.
type Filter struct{ m mover }

// NewFilter returns a filter from in to out.
func NewFilter(in, out Queue, keep func(*Item) bool, opts ...StageOption) (*Filter, error) {
	if err := checkQueues(in, out); err != nil || keep == nil {
		return nil, fmt.Errorf("%w: filter needs an input, an output and a predicate", ErrInvalid)
	}
	o, err := newOutlet("filter", opts)
	if err != nil {
		return nil, err
	}
	return &Filter{mover{in: in, o: o, f: func(it *Item) ([]emit, error) {
		if keep(it) {
			return []emit{{out, it.Payload, it.Key}}, nil
		}
		return nil, nil
	}}}, nil
}

// Run implements lifecycle.Component.
func (f *Filter) Run(ctx context.Context) error { return runMover(ctx, &f.m) }

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (f *Filter) Unregister() { f.m.o.unregister() }

// Splitter turns each input item into any number of parts and adds each part to the output that
// route picks (a negative index drops the part) as a keyless item. split returning an error buries
// the input item.
type Splitter struct{ m mover }

// NewSplitter returns a splitter from in to outs.
func NewSplitter(in Queue, outs []Queue, split func(*Item) ([][]byte, error), route func(part []byte) int, opts ...StageOption) (*Splitter, error) {
	if err := checkQueues(append([]Queue{in}, outs...)...); err != nil || len(outs) == 0 || split == nil || route == nil {
		return nil, fmt.Errorf("%w: splitter needs an input, outputs, split and route", ErrInvalid)
	}
	outs = append([]Queue(nil), outs...)
	o, err := newOutlet("splitter", opts)
	if err != nil {
		return nil, err
	}
	return &Splitter{mover{in: in, o: o, f: func(it *Item) ([]emit, error) {
		parts, err := split(it)
		if err != nil {
			return nil, err
		}
		var e []emit
		for _, p := range parts {
			i := route(p)
			if i < 0 {
				continue
			}
			if i >= len(outs) {
				return nil, fmt.Errorf("route picked output %d of %d", i, len(outs))
			}
			e = append(e, emit{outs[i], p, ""}) // a part is an item of its own: with the input's key, parts would absorb each other
		}
		return e, nil
	}}}, nil
}

// Run implements lifecycle.Component.
func (s *Splitter) Run(ctx context.Context) error { return runMover(ctx, &s.m) }

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (s *Splitter) Unregister() { s.m.o.unregister() }

// Sharder adds each input item to one output picked by a hash (FNV-1a) of its key, or of its ID
// when it has none, so all items of one key go to the same shard.
type Sharder struct{ m mover }

// ShardOf is the output index Sharder picks for key among n shards.
func ShardOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// NewSharder returns a sharder from in to outs.
func NewSharder(in Queue, outs []Queue, opts ...StageOption) (*Sharder, error) {
	if err := checkQueues(append([]Queue{in}, outs...)...); err != nil || len(outs) == 0 {
		return nil, fmt.Errorf("%w: sharder needs an input and at least one output", ErrInvalid)
	}
	outs = append([]Queue(nil), outs...)
	o, err := newOutlet("sharder", opts)
	if err != nil {
		return nil, err
	}
	return &Sharder{mover{in: in, o: o, f: func(it *Item) ([]emit, error) {
		k := it.Key
		if k == "" {
			k = it.ID
		}
		return []emit{{outs[ShardOf(k, len(outs))], it.Payload, it.Key}}, nil
	}}}, nil
}

// Run implements lifecycle.Component.
func (s *Sharder) Run(ctx context.Context) error { return runMover(ctx, &s.m) }

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (s *Sharder) Unregister() { s.m.o.unregister() }

// Merger adds the items of every input queue to one output.
type Merger struct{ ms []*mover }

// NewMerger returns a merger from ins to out.
func NewMerger(ins []Queue, out Queue, opts ...StageOption) (*Merger, error) {
	if err := checkQueues(append([]Queue{out}, ins...)...); err != nil || len(ins) == 0 {
		return nil, fmt.Errorf("%w: merger needs inputs and an output", ErrInvalid)
	}
	o, err := newOutlet("merger", opts) // one output, one outage to log
	if err != nil {
		return nil, err
	}
	m := &Merger{}
	for _, in := range ins {
		m.ms = append(m.ms, &mover{in: in, o: o, f: func(it *Item) ([]emit, error) { return []emit{{out, it.Payload, it.Key}}, nil }})
	}
	return m, nil
}

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (m *Merger) Unregister() { m.ms[0].o.unregister() }

// Run implements lifecycle.Component: one loop per input; it returns when all have. A closed input
// ends its loop; a closed output ends them all.
func (m *Merger) Run(ctx context.Context) error {
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, len(m.ms))
	for i, mv := range m.ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = runMover(mctx, mv); errors.Is(errs[i], errOutputClosed) {
				stop()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// heldItem is an input item a stage holds (leased) until its output adds are made.
type heldItem struct {
	q  Queue
	it *Item
}

// holder keeps the leases of held items alive: each is extended when the stage's renewIn says, so
// that leases of any length hold, and deadlines that came over the wire too. It keeps each held
// Item's Deadline up to date (under mu), so that after remove it is the lease's. It keeps items by
// *Item, not by lease token: the inputs are different queues, and two queues may hand out the same
// token (two Memory queues' first items are both "1.1"). An item whose Extend says its lease is
// lost (or its queue closed) it no longer extends: it calls lost with it (see extendLoop).
type holder struct {
	o     *outlet
	lost  func(heldItem) // called without mu
	mu    sync.Mutex
	items map[*Item]heldItem
	due   map[*Item]time.Time // when to extend the item next
	wake  chan struct{}       // an item came: extendLoop looks at its due time
}

func newHolder(o *outlet, lost func(heldItem)) *holder {
	return &holder{o: o, lost: lost, items: map[*Item]heldItem{}, due: map[*Item]time.Time{}, wake: make(chan struct{}, 1)}
}

// minRenew bounds how often a held item is extended.
const minRenew = 10 * time.Millisecond

func (h *holder) add(x heldItem) {
	h.mu.Lock()
	h.items[x.it] = x
	now := time.Now()
	h.due[x.it] = now.Add(h.o.renewIn(now, x.it.Deadline))
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// remove holds its no more, and reports whether each of them was still held.
func (h *holder) remove(its ...*Item) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := true
	for _, it := range its {
		_, held := h.items[it]
		all = all && held
		delete(h.items, it)
		delete(h.due, it)
	}
	return all
}

// extendLoop extends each held lease when it is due until ctx ends; it looks at least once a
// second. A failed Extend is logged and tried again a second later, but for one that says the
// lease is lost or its queue closed: for such an item, if it is still held, lost is called, which
// is to take it off the holder with remove (a Join takes it off its barrier too).
func (h *holder) extendLoop(ctx context.Context, log *zap.Logger) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var xs []heldItem
	for ctx.Err() == nil {
		now := time.Now()
		next := now.Add(time.Second)
		xs = xs[:0]
		h.mu.Lock()
		for k, d := range h.due {
			if !d.After(now) {
				xs = append(xs, h.items[k])
			} else if d.Before(next) {
				next = d
			}
		}
		h.mu.Unlock()
		for _, x := range xs {
			deadline, err := x.q.Extend(ctx, x.it.Lease)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				h.o.m.fail(callExtend)
				log.Warn("extend held item", zap.String("id", x.it.ID), zap.Error(err))
			}
			gone := errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrClosed)
			h.mu.Lock()
			_, held := h.items[x.it]
			if held {
				switch {
				case gone: // lost takes it off
				case err != nil:
					h.due[x.it] = time.Now().Add(time.Second)
				default:
					now := time.Now()
					h.due[x.it] = now.Add(h.o.renewIn(now, deadline))
					x.it.Deadline = deadline // for deliver, once the item is removed
				}
			}
			h.mu.Unlock()
			if held && gone {
				h.lost(x)
			}
		}
		if len(xs) > 0 {
			continue // their new due times may be the next
		}
		t.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
	}
}

// release gives back what is still held (at shutdown) so that it is redelivered at once; it was
// only held, so where the queue can, the attempt is not counted.
func (h *holder) release(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, x := range h.items {
		h.o.release(ctx, x)
		delete(h.items, k)
		delete(h.due, k)
	}
}

// Join is a barrier: it holds items from each of its inputs until every input has delivered an item
// with the same join key, then adds combine(payloads, in input order) to out and acks the parts.
// An item whose input already has one waiting at its key's barrier waits behind it: each input's
// items of a key join in the order they were leased, the first with the first of every other input,
// and so on. Held items' leases are extended while they wait, however many wait and for however
// long; at shutdown they are released, so waiting uses up none of their attempts. A waiting item
// whose lease is found lost (or whose input closed) waits no more: the barrier waits for its next
// delivery, and the other parts of its key are neither joined with it nor acked. (With Item.Key as
// join key, a Memory or bolt input never leases a second item of a key while the Join holds one, so
// there only a custom key func or another backend makes items wait behind each other.)
type Join struct {
	ins     []Queue
	out     Queue
	key     func(*Item) string
	combine func(parts [][]byte) ([]byte, error)
	o       *outlet
}

// NewJoin returns a join of ins into out. key nil joins on Item.Key.
func NewJoin(ins []Queue, out Queue, key func(*Item) string, combine func(parts [][]byte) ([]byte, error), opts ...StageOption) (*Join, error) {
	if err := checkQueues(append([]Queue{out}, ins...)...); err != nil || len(ins) < 2 || combine == nil {
		return nil, fmt.Errorf("%w: join needs two or more inputs, an output and combine", ErrInvalid)
	}
	if key == nil {
		key = func(it *Item) string { return it.Key }
	}
	o, err := newOutlet("join", opts)
	if err != nil {
		return nil, err
	}
	return &Join{ins: append([]Queue(nil), ins...), out: out, key: key, combine: combine, o: o}, nil
}

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (j *Join) Unregister() { j.o.unregister() }

// Run implements lifecycle.Component: one lease loop per input. It returns when ctx ends (nil) or
// when a loop ends by itself (an input or the output closed: ErrClosed); a barrier needs all its
// inputs, so then the other loops are stopped too. Either way the items still held are given back.
func (j *Join) Run(ctx context.Context) error {
	var mu sync.Mutex // guards pending, and the holder's items with it
	pending := barriers{n: len(j.ins), keys: map[string][][]*Item{}}
	var h *holder
	h = newHolder(j.o, func(x heldItem) { // its lease lost: the barrier waits for its next delivery
		k := j.key(x.it)
		mu.Lock()
		if h.remove(x.it) { // not taken by a set meanwhile
			pending.drop(k, x.it)
			j.o.m.finish(stageLost)
		}
		mu.Unlock()
	})
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	sc, end := newStageCtx(lctx)
	defer end()
	var loops, ext sync.WaitGroup
	ext.Add(1)
	go func() { defer ext.Done(); h.extendLoop(lctx, j.o.cfg.logger) }()
	errs := make([]error, len(j.ins))
	for i, in := range j.ins {
		loops.Add(1)
		go func() {
			defer loops.Done()
			defer stop()
			kp := j.o.newKeeper(sc)
			defer kp.close()
			for {
				it, err := j.o.lease(sc.run, sc, in)
				if it == nil {
					errs[i] = err
					return
				}
				k := j.key(it)
				mu.Lock()
				h.add(heldItem{in, it})
				slots := pending.arrive(k, i, it)
				if slots != nil {
					h.remove(slots...)
				}
				mu.Unlock()
				if slots != nil {
					if errs[i] = j.emit(sc, kp, slots); errs[i] != nil {
						return
					}
				}
			}
		}()
	}
	loops.Wait()
	stop()
	ext.Wait()
	h.release(sc.in)
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// barriers are a Join's barriers: for each join key, the items of each input that wait at it, in
// lease order.
type barriers struct {
	n    int                  // inputs
	keys map[string][][]*Item // join key -> per input, the items waiting
}

// arrive puts it, from input i, at key k's barrier. Once every input has an item there it takes
// the first of each off and returns them, in input order; else nil. An arrival completes at most one
// set: before it, some input had none, and only input i gained one.
func (b barriers) arrive(k string, i int, it *Item) []*Item {
	w := b.keys[k]
	if w == nil {
		w = make([][]*Item, b.n)
		b.keys[k] = w
	}
	w[i] = append(w[i], it)
	for _, q := range w {
		if len(q) == 0 {
			return nil
		}
	}
	slots := make([]*Item, b.n)
	left := false
	for x, q := range w {
		slots[x] = q[0]
		q[0] = nil // not kept by the array
		w[x] = q[1:]
		left = left || len(w[x]) > 0
	}
	if !left {
		delete(b.keys, k)
	}
	return slots
}

// drop takes it off key k's barrier, if it waits there.
func (b barriers) drop(k string, it *Item) {
	w := b.keys[k]
	left := false
	for x, q := range w {
		if y := slices.Index(q, it); y >= 0 {
			w[x] = slices.Delete(q, y, y+1)
		}
		left = left || len(w[x]) > 0
	}
	if w != nil && !left {
		delete(b.keys, k)
	}
}

func (j *Join) emit(sc stageCtx, k *keeper, slots []*Item) error {
	xs := make([]heldItem, len(slots))
	parts := make([][]byte, len(slots))
	for i, it := range slots {
		xs[i] = heldItem{j.ins[i], it}
		parts[i] = it.Payload
	}
	payload, err := j.combine(parts)
	if err != nil {
		j.o.bury(sc.in, xs, "join combine: "+err.Error())
		return nil
	}
	return j.o.deliver(sc, k, xs, []emit{{j.out, payload, slots[0].Key}})
}

// Reduce collects up to n input items (or whatever arrived within WithFlushAfter of the first one),
// adds reduce(payloads) to out as one item, and acks the batch. The leases of a batch's items are
// extended from the moment each is leased, as the batch fills and while its result is added; a
// lease lost while the batch fills ends the filling, and the batch is given back.
type Reduce struct {
	in     Queue
	out    Queue
	n      int
	reduce func(payloads [][]byte) ([]byte, error)
	o      *outlet
}

// NewReduce returns a reduce stage from in to out.
func NewReduce(in, out Queue, n int, reduce func(payloads [][]byte) ([]byte, error), opts ...StageOption) (*Reduce, error) {
	if err := checkQueues(in, out); err != nil || n < 1 || reduce == nil {
		return nil, fmt.Errorf("%w: reduce needs an input, an output, n >= 1 and a function", ErrInvalid)
	}
	o, err := newOutlet("reduce", opts)
	if err != nil {
		return nil, err
	}
	return &Reduce{in: in, out: out, n: n, reduce: reduce, o: o}, nil
}

// Unregister takes the stage's metrics off its registerer (see WithRegisterer). Idempotent.
func (r *Reduce) Unregister() { r.o.unregister() }

// Run implements lifecycle.Component. A Lease that fails is tried again after the stage's retry
// delay (while a batch fills, until its flush delay is up), as in every stage.
func (r *Reduce) Run(ctx context.Context) error {
	sc, end := newStageCtx(ctx)
	defer end()
	k := r.o.newKeeper(sc)
	defer k.close()
	for {
		it, err := r.o.lease(sc.run, sc, r.in)
		if it == nil {
			return err
		}
		batch := []*Item{it}
		work := k.start([]heldItem{{r.in, it}})
		fctx, cancel := context.WithTimeout(ctx, r.o.cfg.maxWait)
		stop := context.AfterFunc(work, cancel) // a lease lost: the batch goes back as it is
		for len(batch) < r.n {
			if it, err = r.o.lease(fctx, sc, r.in); it == nil {
				break
			}
			batch = append(batch, it)
			k.hold(heldItem{r.in, it})
			if fctx.Err() != nil { // leased as the flush delay ran out: the batch goes now
				break
			}
		}
		stop()
		cancel()
		if err := r.emit(sc, k, work, batch); err != nil && ctx.Err() == nil {
			return err
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil: // the input closed
			return err
		}
	}
}

func (r *Reduce) emit(sc stageCtx, k *keeper, work context.Context, batch []*Item) error {
	payloads := make([][]byte, len(batch))
	held := make([]heldItem, len(batch))
	for i, it := range batch {
		payloads[i] = it.Payload
		held[i] = heldItem{r.in, it}
	}
	out, err := r.reduce(payloads)
	if err != nil {
		k.end()
		r.o.bury(sc.in, held, "reduce: "+err.Error())
		return nil
	}
	return r.o.deliverHeld(sc, k, work, held, []emit{{r.out, out, ""}})
}
