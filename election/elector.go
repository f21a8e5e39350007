package election

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// LeaderFunc is the work done while leading. leaderCtx ends when the term ends (lost, renewal not
// confirmed within the TTL, Resign, or Run's ctx ended); the Elector waits for the func to return
// before it releases the lock, so leader work never outlives the term as far as this process can
// tell. Use t.Token to fence writes to shared resources (see Fence).
//
// Returning nil ends the term early: the Elector releases the lock and campaigns again. Returning a
// non-nil error while the term still holds ends the term and makes Run return that error.
type LeaderFunc func(leaderCtx context.Context, t Term) error

// Leader is the leader as one candidate sees it. The zero value means there is no leader.
type Leader struct {
	ID    string `json:"leader"` // "" when there is no leader
	Token uint64 `json:"token"`  // the leader's fencing token; 0 when there is no leader
	Self  bool   `json:"self"`   // true while this candidate holds the term and its LeaderFunc runs
}

// Elector campaigns for leadership through a Backend, runs a LeaderFunc for each term it wins, and
// campaigns again after each term ends, until its Run's ctx ends. Its methods are safe for
// concurrent use.
type Elector struct {
	backend Backend
	id      string
	fn      LeaderFunc
	cfg     config
	m       *metrics

	running   atomic.Bool
	ready     chan struct{}
	readyOnce sync.Once

	mu          sync.Mutex
	observed    Term          // the backend's leader, from Observe
	shown       Term          // observed, except one naming this candidate's id held back while it campaigns
	campaigning bool          // a Campaign call is in flight
	held        Term          // the observation held back, if any
	holdTimer   *time.Timer   // shows held once ownKeyGrace has passed
	cur         *termState    // the term this candidate holds, or nil
	over        map[Term]bool // this candidate's own terms that lead nothing (the backend may report them a while longer)
	subs        map[*sub]bool // Observe subscriptions, also those made before Run started
	last        Leader        // the value last sent to subscribers
	terms       uint64        // terms won
	returned    bool          // a Run has returned and no Run has started since
}

type termState struct {
	term     Term
	lease    Lease
	resign   chan struct{} // closed by Resign
	once     sync.Once
	released chan struct{} // closed once the term ended and the lock was released
}

type sub struct {
	ch   chan Leader
	done bool
}

// New returns an Elector for candidate id that campaigns through b and runs fn while leading.
// It starts nothing; call Run.
func New(b Backend, id string, fn LeaderFunc, opts ...Option) (*Elector, error) {
	if b == nil {
		return nil, errors.New("election: nil backend")
	}
	if id == "" {
		return nil, errors.New("election: empty candidate id")
	}
	if fn == nil {
		return nil, errors.New("election: nil leader func")
	}
	cfg := config{log: zap.NewNop(), backoff: DefaultBackoff, releaseTimeout: 2 * time.Second, margin: DefaultStepDownMargin}
	for _, o := range opts {
		o.apply(&cfg)
	}
	m, err := newMetrics(cfg.reg)
	if err != nil {
		return nil, fmt.Errorf("election: register metrics: %w", err)
	}
	return &Elector{
		backend: b, id: id, fn: fn, cfg: cfg, m: m,
		ready: make(chan struct{}),
		subs:  make(map[*sub]bool),
		over:  make(map[Term]bool),
	}, nil
}

// ID returns the candidate ID.
func (e *Elector) ID() string { return e.id }

// Ready is closed once Run has seen the backend's leader for the first time (so Leader answers
// from knowledge, not from the zero value). It is never closed if Run is never called.
func (e *Elector) Ready() <-chan struct{} { return e.ready }

// Run campaigns, leads and campaigns again until ctx ends; then it ends the current term (waiting
// for the LeaderFunc to return and releasing the lock) and returns nil. It returns an error only if
// the LeaderFunc returned one while leading, or with ErrRunning if Run is already running. It
// returns after every goroutine it started has exited.
func (e *Elector) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer e.running.Store(false)
	e.mu.Lock()
	e.returned = false
	e.mu.Unlock()
	log := e.cfg.log.Named("election").With(zap.String("id", e.id))

	octx, ocancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.observe(octx, log) })
	defer func() {
		ocancel()
		wg.Wait()
		e.mu.Lock()
		e.observed = Term{}
		e.shown = Term{}
		e.campaigning = false
		e.stopHoldLocked()
		clear(e.over)
		e.last = Leader{}
		e.m.token.Set(0)
		for s := range e.subs {
			s.done = true
			close(s.ch)
			delete(e.subs, s)
		}
		e.returned = true
		e.mu.Unlock()
	}()

	// Leases whose Release failed (a term's, or a failed Campaign's) are released again in the
	// background under rctx, until that succeeds, Run returns, or this candidate wins a new term
	// (which it can only do once its old leases stand in nobody's way).
	rctx, stopRetry := context.WithCancel(octx)
	defer func() { stopRetry() }()
	retry := func(l Lease) {
		ctx := rctx
		wg.Go(func() { e.release(ctx, l, log) })
	}
	attempt := 0
	for ctx.Err() == nil {
		e.mu.Lock()
		e.campaigning = true
		e.mu.Unlock()
		lease, err := e.backend.Campaign(ctx, e.id)
		if err != nil {
			ue := (*UnreleasedError)(nil)
			unreleased := errors.As(err, &ue)
			e.mu.Lock()
			if unreleased {
				// Its key may come to lead (etcd restores leases when it restarts): it leads
				// nothing. Marked before the held-back observation is shown, in the same lock, so
				// that no subscriber sees that key as a leader.
				e.over[ue.Lease.Term()] = true
			}
			e.campaignedLocked()
			e.mu.Unlock()
			if ctx.Err() != nil {
				return nil
			}
			if unreleased {
				retry(ue.Lease)
			}
			attempt++
			e.m.campaignErrors.Inc()
			log.Warn("campaign", zap.Error(err), zap.Int("attempt", attempt))
			if !sleep(ctx, e.cfg.backoff(attempt)) {
				return nil
			}
			continue
		}
		attempt = 0
		stopRetry() // this candidate won again: its old leases no longer stand in anyone's way
		var cancel context.CancelFunc
		rctx, cancel = context.WithCancel(octx)
		stopRetry = cancel
		unreleased, err := e.lead(ctx, lease, log)
		if err != nil {
			return err
		}
		if unreleased != nil {
			retry(unreleased)
		}
	}
	return nil
}

// ownKeyGrace is how long, while a Campaign call is in flight, an observed leader with this
// candidate's id is held back: it may be the candidate's own key, which the backend can report a
// moment before Campaign returns, and Leader would answer "me, Self false". A backend's Campaign
// returns within a round trip or two once its key leads, so an observation still there after
// ownKeyGrace is someone else's: another process with the same id (a restarted pod whose old
// incarnation still holds the term), which is shown as it is.
const ownKeyGrace = time.Second

// campaignedLocked records that the Campaign call returned: an observation held back while it ran
// is shown now.
func (e *Elector) campaignedLocked() {
	e.campaigning = false
	e.stopHoldLocked()
	e.shown = e.observed
	e.notifyLocked()
}

// observedLocked records the backend's leader t, holding it back for up to ownKeyGrace if it names
// this candidate's id while a Campaign call is in flight.
func (e *Elector) observedLocked(t Term) {
	e.observed = t
	if !e.campaigning || t.ID != e.id {
		e.stopHoldLocked()
		e.shown = t
	} else if t != e.held {
		e.stopHoldLocked()
		e.held = t
		e.holdTimer = time.AfterFunc(ownKeyGrace, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.campaigning && e.held == t && e.observed == t {
				e.shown = t
				e.notifyLocked()
			}
		})
	}
	e.notifyLocked()
}

func (e *Elector) stopHoldLocked() {
	if e.holdTimer != nil {
		e.holdTimer.Stop()
		e.holdTimer = nil
	}
	e.held = Term{}
}

// release retries, in the background while Run campaigns again, the Release of a lease that failed
// when its term ended or when its Campaign failed (see UnreleasedError), until it succeeds or ctx
// ends (Run returns, or this candidate wins a new term, which it can only do once the old lease
// stands in nobody's way). A lock service that was
// unreachable may still hold the lease when it comes back (etcd restores leases with a fresh TTL
// on restart), and every observer would go on naming this candidate until the lease expired.
func (e *Elector) release(ctx context.Context, l Lease, log *zap.Logger) {
	for attempt := 1; sleep(ctx, e.cfg.backoff(attempt)); attempt++ {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.releaseTimeout)
		err := l.Release(rctx)
		cancel()
		if err == nil {
			log.Info("released after retrying", zap.Uint64("token", l.Term().Token), zap.Int("attempt", attempt))
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("release", zap.Error(err), zap.Uint64("token", l.Term().Token), zap.Int("attempt", attempt))
	}
}

// lead runs one term: it starts the LeaderFunc and ends the term on the first of ctx ending, the
// lease being lost, renewal not confirmed in time, Resign, or the func returning. It returns the
// lease if its Release failed, for Run to retry.
func (e *Elector) lead(ctx context.Context, lease Lease, log *zap.Logger) (unreleased Lease, err error) {
	term := lease.Term()
	if !e.holds(lease) {
		// The campaign outlived the last confirmed renewal: the term may already be over.
		e.mu.Lock()
		clear(e.over)
		e.over[term] = true
		e.campaignedLocked()
		e.mu.Unlock()
		e.m.stepdowns.WithLabelValues("renewal_timeout").Inc()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.releaseTimeout)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			log.Warn("release", zap.Error(err), zap.Uint64("token", term.Token))
			return lease, nil
		}
		return nil, nil
	}
	ts := &termState{term: term, lease: lease, resign: make(chan struct{}), released: make(chan struct{})}
	defer close(ts.released)

	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	e.mu.Lock()
	e.cur = ts
	e.terms++
	e.campaignedLocked()
	e.mu.Unlock()
	e.m.terms.Inc()
	e.m.isLeader.Set(1)
	log.Info("elected", zap.Uint64("token", term.Token))

	done := make(chan error, 1)
	go func() { done <- e.fn(lctx, term) }()

	var deadline <-chan time.Time
	var timer *time.Timer
	if v := lease.ValidUntil(); !v.IsZero() {
		timer = time.NewTimer(time.Until(v.Add(-e.cfg.margin)))
		defer timer.Stop()
		deadline = timer.C
	}

	var reason string
	var fnErr error
	fnDone := false
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "shutdown"
		case <-lease.Lost():
			reason = "lost"
		case <-ts.resign:
			reason = "resign"
		case fnErr = <-done:
			fnDone = true
			reason = "returned"
		case <-deadline:
			// Renewals move ValidUntil forward; step down only once it has really passed.
			if d := time.Until(lease.ValidUntil().Add(-e.cfg.margin)); d > 0 {
				timer.Reset(d)
				continue
			}
			reason = "renewal_timeout"
		}
	}

	// Step down: from here on this candidate does not claim the term.
	e.mu.Lock()
	e.cur = nil
	clear(e.over) // the Campaign that won term could do so only once the leases before it were gone
	e.over[term] = true
	e.notifyLocked()
	e.mu.Unlock()
	e.m.isLeader.Set(0)
	e.m.stepdowns.WithLabelValues(reason).Inc()
	lcancel()
	if !fnDone {
		fnErr = <-done
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.releaseTimeout)
	if err := lease.Release(rctx); err != nil {
		log.Warn("release", zap.Error(err), zap.Uint64("token", term.Token))
		unreleased = lease
	}
	cancel()
	log.Info("stepped down", zap.String("reason", reason), zap.Uint64("token", term.Token))
	if reason == "returned" && fnErr != nil {
		return nil, fmt.Errorf("election: leader func (token %d): %w", term.Token, fnErr)
	}
	return unreleased, nil
}

// holds reports whether lease is known held now, by the local monotonic clock: its ValidUntil,
// less the step-down margin, is still ahead (or it has no expiry).
func (e *Elector) holds(lease Lease) bool {
	v := lease.ValidUntil()
	return v.IsZero() || time.Now().Before(v.Add(-e.cfg.margin))
}

// observe keeps e.observed current until ctx ends.
func (e *Elector) observe(ctx context.Context, log *zap.Logger) {
	attempt := 0
	for {
		err := e.backend.Observe(ctx, func(t Term) {
			attempt = 0
			e.mu.Lock()
			if t != e.observed {
				e.m.leaderChanges.Inc()
			}
			e.observedLocked(t)
			e.mu.Unlock()
			e.readyOnce.Do(func() { close(e.ready) })
		})
		if ctx.Err() != nil {
			return
		}
		attempt++
		e.m.campaignErrors.Inc()
		log.Warn("observe", zap.Error(err), zap.Int("attempt", attempt))
		if !sleep(ctx, e.cfg.backoff(attempt)) {
			return
		}
	}
}

// Leader returns the leader as this candidate sees it: itself while it holds a term, else the
// backend's leader as last observed (the zero Leader when there is none, or when the backend cannot
// tell: see the Backend's Observe). A term this candidate has stepped down from is over, also while
// the backend still reports it (its lock not released yet, the backend unreachable): then Leader
// reports no leader rather than the candidate itself with Self false.
//
// Holding a term is checked against the clock on every call: once the lease's ValidUntil (less the
// step-down margin) has passed, Leader stops reporting Self even if the goroutine that ends the
// term has not run yet (a process resumed after a pause). While a Campaign call is in flight, an
// observed leader with this candidate's own id (perhaps its own key, before Campaign returns) is
// not reported at once: Leader goes on reporting the leader seen before it until Campaign returns,
// or for at most a second, after which it is another process with the same id and is reported
// (Self false). A lease this candidate could not release after a failed Campaign (see
// UnreleasedError) leads nothing either: Leader reports no leader while the backend names it.
func (e *Elector) Leader() Leader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaderLocked()
}

func (e *Elector) leaderLocked() Leader {
	if e.cur != nil {
		if e.holds(e.cur.lease) {
			return Leader{ID: e.id, Token: e.cur.term.Token, Self: true}
		}
		if e.shown == e.cur.term { // expired, not yet stepped down: over all the same
			return Leader{}
		}
	}
	if e.over[e.shown] {
		return Leader{}
	}
	return Leader{ID: e.shown.ID, Token: e.shown.Token}
}

func (e *Elector) notifyLocked() {
	l := e.leaderLocked()
	if l == e.last {
		return
	}
	e.last = l
	e.m.token.Set(float64(l.Token))
	for s := range e.subs {
		push(s.ch, l)
	}
}

// push replaces whatever is buffered in ch (capacity 1) with l, so a slow reader skips to the
// latest value instead of blocking the Elector.
func push(ch chan Leader, l Leader) {
	select {
	case <-ch:
	default:
	}
	ch <- l
}

// Observe returns a channel that receives the leader as Leader reports it at once (the zero Leader
// until Ready is closed) and then every change (including to the zero Leader: no leader). A slow
// reader skips intermediate values and sees the latest. The channel is closed when ctx ends or Run
// returns.
//
// Observe may be called before Run, for example right after go e.Run(ctx): the channel then stays
// open and Run serves it once it runs. After a Run has returned (and until Run is called again)
// the Elector is done: the channel is closed right after the current value.
func (e *Elector) Observe(ctx context.Context) <-chan Leader {
	s := &sub{ch: make(chan Leader, 1)} // capacity 1: holds the latest value only
	e.mu.Lock()
	s.ch <- e.leaderLocked()
	if ctx.Err() != nil || e.returned {
		close(s.ch)
		e.mu.Unlock()
		return s.ch
	}
	e.subs[s] = true
	e.mu.Unlock()
	context.AfterFunc(ctx, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if !s.done {
			s.done = true
			close(s.ch)
			delete(e.subs, s)
		}
	})
	return s.ch
}

// Resign ends the current term at once so another candidate can take over: it cancels the
// LeaderFunc's ctx, waits for the func to return and for the lock to be released, then returns
// nil. The Elector then campaigns again (behind the candidates already waiting). It returns
// ErrNotLeader if no term is held, or ctx.Err() if ctx ends first (the hand-over continues).
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	ts := e.cur
	e.mu.Unlock()
	if ts == nil {
		return ErrNotLeader
	}
	ts.once.Do(func() { close(ts.resign) })
	select {
	case <-ts.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Statusz returns a key/value snapshot for a /statusz page.
func (e *Elector) Statusz() (title string, header []string, rows [][]string) {
	e.mu.Lock()
	l := e.leaderLocked()
	terms := e.terms
	e.mu.Unlock()
	leader := l.ID
	if leader == "" {
		leader = "(none)"
	}
	return "election", []string{"key", "value"}, [][]string{
		{"id", e.id},
		{"leader", leader},
		{"token", strconv.FormatUint(l.Token, 10)},
		{"self", strconv.FormatBool(l.Self)},
		{"terms won", strconv.FormatUint(terms, 10)},
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
