package scatter

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// policy is what a fan-out tells its replica sets: hedging, budget, probation and selection.
type policy struct {
	hedge       *Hedge
	budget      *budget
	probation   *Probation
	selection   Selection
	leafTimeout time.Duration
	wg          *sync.WaitGroup // tracks attempt and shadow goroutines
	m           *metrics        // nil for a replica set called on its own
	log         *zap.Logger
}

// ReplicaSet is a shard served by several interchangeable replicas. Used as a leaf of a Fanout it
// picks replicas (C3-style ranking by default), hedges and fails over as the fan-out's options say,
// and keeps per-replica latency statistics and a latency sketch for adaptive hedging. A replica
// whose last attempts failed is ranked last, and tried first again after 2, 4, 8, ... up to 1024
// calls of the set, until it answers. Called on its own (Call), or in a fan-out without
// WithHedge, it tries replicas in ranked order until one answers (failovers are then not
// budgeted). An error matching ErrBadRequest is returned at once, without a failover. Safe for
// concurrent use.
type ReplicaSet[Req, Resp any] struct {
	replicas []Leaf[Req, Resp]
	stats    []replicaStat
	sketch   Sketch
	rr       atomic.Uint32
	calls    atomic.Uint64
	alone    policy
	wg       sync.WaitGroup // attempts of standalone calls

	delayMu   sync.Mutex
	delay     time.Duration // cached adaptive delay
	delayAt   int64         // sketch count when delay was computed
	delayPctl float64

	mu   sync.Mutex // guards the ewma, samples and probation fields of stats, and nBad
	nBad int        // replicas failing (errRun > 0) or on probation
}

type replicaStat struct {
	outstanding atomic.Int64
	ewma        float64 // ns
	okEWMA      float64 // ns, successful attempts only: the base of the error penalty
	samples     int
	probation   bool
	errRun      int    // consecutive errors (not counting cancelled attempts)
	errAt       uint32 // the set's call counter (rr) at the last error
}

// NewReplicaSet returns a shard served by replicas.
func NewReplicaSet[Req, Resp any](replicas ...Leaf[Req, Resp]) (*ReplicaSet[Req, Resp], error) {
	if len(replicas) == 0 {
		return nil, ErrNoReplicas
	}
	for i, r := range replicas {
		if r == nil {
			return nil, fmt.Errorf("replica %d is nil: %w", i, ErrNoReplicas)
		}
	}
	s := &ReplicaSet[Req, Resp]{replicas: append([]Leaf[Req, Resp](nil), replicas...), stats: make([]replicaStat, len(replicas))}
	s.alone = policy{log: zap.NewNop(), wg: &s.wg}
	return s, nil
}

// Len returns the number of replicas.
func (s *ReplicaSet[Req, Resp]) Len() int { return len(s.replicas) }

// Call tries the replicas in ranked order until one answers, and returns the last error if none did.
func (s *ReplicaSet[Req, Resp]) Call(ctx context.Context, req Req) (Resp, error) {
	var rep Report
	return s.callShard(ctx, req, &s.alone, &rep)
}

// ReplicaStat is a snapshot of one replica's statistics.
type ReplicaStat struct {
	EWMA        time.Duration // smoothed latency of recent attempts
	Outstanding int64         // calls in flight
	Samples     int           // attempts observed
	Probation   bool          // ranked after the others (a last resort), getting shadow requests
}

// Stats returns a snapshot of every replica's statistics.
func (s *ReplicaSet[Req, Resp]) Stats() []ReplicaStat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ReplicaStat, len(s.stats))
	for i := range s.stats {
		st := &s.stats[i]
		out[i] = ReplicaStat{EWMA: time.Duration(st.ewma), Outstanding: st.outstanding.Load(), Samples: st.samples, Probation: st.probation}
	}
	return out
}

// Sketch returns the set's latency sketch: its primary attempts (the first of each call), which
// an adaptive hedge delay is a quantile of.
func (s *ReplicaSet[Req, Resp]) Sketch() *Sketch { return &s.sketch }

// order appends every replica to buf, best first: a failing replica due for another try (see
// rank), the healthy ones (ranked C3-style, or rotating), then those on probation, then the
// failing ones. Probation and failing replicas stay in the order as the last resort of a failover
// or hedge when the better ones fail or stall. probe reports that buf's first replica is such a
// failing replica's try.
func (s *ReplicaSet[Req, Resp]) order(buf []int, p *policy) (_ []int, probe bool) {
	n := len(s.replicas)
	tick := s.rr.Add(1) - 1
	start := int(tick % uint32(n))
	var (
		scores [16]float64
		ranks  [16]uint8
	)
	rk := ranks[:0]
	if n > len(ranks) {
		rk = make([]uint8, 0, n)
	}
	s.mu.Lock()
	first, healthy := len(buf), 0
	if s.nBad == 0 { // every replica healthy: one pass, in rotation
		for k := 0; k < n; k++ {
			buf = append(buf, (start+k)%n)
		}
		healthy = n
	}
	for k := 0; k < n && s.nBad > 0; k++ {
		rk = append(rk, s.stats[(start+k)%n].rank(tick))
	}
	for pass := uint8(rankProbe); pass <= rankFailing && s.nBad > 0; pass++ {
		for k, c := range rk {
			if c != pass {
				continue
			}
			if c == rankHealthy {
				healthy++
			}
			buf = append(buf, (start+k)%n)
		}
		if pass == rankProbe {
			probe = len(buf) > first
			first = len(buf)
		}
	}
	seg := buf[first : first+healthy]
	c3 := p.selection == SelectC3 && len(seg) > 1 && len(seg) <= len(scores)
	if c3 {
		for k, r := range seg {
			st := &s.stats[r]
			q := 1 + float64(st.outstanding.Load())
			scores[k] = st.ewma * q * q * q
		}
	}
	s.mu.Unlock()
	if c3 { // insertion sort: stable, so equal scores keep the rotation
		for i := 1; i < len(seg); i++ {
			for j := i; j > 0 && scores[j] < scores[j-1]; j-- {
				scores[j], scores[j-1] = scores[j-1], scores[j]
				seg[j], seg[j-1] = seg[j-1], seg[j]
			}
		}
	}
	return buf, probe
}

// A replica's rank class in an order, best first.
const (
	rankProbe   = iota // failing, and due for another try
	rankHealthy        // selectable
	rankProbation
	rankFailing
)

// maxErrBackoff caps, in calls of the set, how long a failing replica is ranked last.
const maxErrBackoff = 1024

// rank returns the replica's class in the order of the set's call number tick. After e
// consecutive errors a replica is failing: ranked last for 2^e calls of its set (at most
// maxErrBackoff), then tried first by one call (the order that sees it due takes the try) and
// ranked last again until that try's outcome. Ticks are compared by signed difference: an order
// whose tick was taken before the last error was recorded (or before another order took the try)
// sees the replica failing, and errAt never moves back. A replica that fails at once thus stops being a
// primary however fast its errors are, and one that recovered is back after a bounded number of
// calls, whatever its errors did to its average. s.mu must be held.
func (st *replicaStat) rank(tick uint32) uint8 {
	switch {
	case st.errRun > 0:
		if int32(tick-st.errAt) < int32(min(1<<min(st.errRun, 16), maxErrBackoff)) {
			return rankFailing
		}
		st.errAt = tick
		return rankProbe
	case st.probation:
		return rankProbation
	}
	return rankHealthy
}

// failed records an error at the set's call counter now. errAt only moves forward: an order may
// have taken a later tick (and the replica's try) before now was read. s.mu must be held.
func (st *replicaStat) failed(now uint32) {
	if st.errRun == 0 || int32(now-st.errAt) > 0 {
		st.errAt = now
	}
	st.errRun++
}

// hedgeDelay is the delay before a backup request; 0 means no hedge timer.
func (s *ReplicaSet[Req, Resp]) hedgeDelay(h *Hedge) time.Duration {
	if h.Percentile == 0 || s.sketch.Count() < int64(h.MinSamples) {
		return h.Delay
	}
	s.delayMu.Lock()
	defer s.delayMu.Unlock()
	if c := s.sketch.Count(); c-s.delayAt >= 16 || s.delay == 0 || s.delayPctl != h.Percentile {
		s.delay = max(s.sketch.Quantile(h.Percentile), h.MinDelay)
		s.delayAt, s.delayPctl = c, h.Percentile
	}
	return s.delay
}

// attemptKind says what an attempt is, and so what its latency tells the shard's sketch.
type attemptKind uint8

const (
	// attemptPrimary is a shard call's first attempt. The adaptive hedge delay is a quantile of
	// these alone: it is the time after which the first attempt is given up on.
	attemptPrimary attemptKind = iota
	// attemptBackup is a hedge or a failover. Backups are a selected sample (a winning backup is
	// the faster of two, a losing one is cut short when the primary answers), so they stay out
	// of the sketch; they would pull its quantiles down and hedge more than the percentile says.
	attemptBackup
	// attemptShadow is a probe of a replica on probation; its answer is dropped.
	attemptShadow
)

// attempt calls replica r, recovering a panic as its error, and records its latency from start,
// the moment the attempt was launched (so that a goroutine waiting for a CPU counts, as it does
// for the hedge timer).
func (s *ReplicaSet[Req, Resp]) attempt(ctx context.Context, req Req, r int, p *policy, kind attemptKind, start time.Time) (resp Resp, err error) {
	st := &s.stats[r]
	st.outstanding.Add(1)
	cancelled := false // the attempt's context had ended when Call returned
	defer func() {
		if v := recover(); v != nil {
			var zero Resp
			resp, err = zero, &PanicError{Value: v, Stack: debug.Stack()}
			p.log.Warn("replica panicked", zap.Int("replica", r), zap.Any("value", v))
		}
		st.outstanding.Add(-1)
		s.observe(r, time.Since(start), err, cancelled, p, kind)
	}()
	callCtx := ctx
	if d := p.leafTimeout; d > 0 && kind != attemptShadow {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	resp, err = s.replicas[r].Call(callCtx, req)
	// Read before the deferred cancel runs: after it, callCtx is always done.
	cancelled = callCtx.Err() != nil
	return resp, err
}

const ewmaAlpha = 0.2

// observe records one attempt's latency. The sketch takes primary attempts only; a primary
// cancelled (a backup won, the fan-out ended, the leaf timeout passed) is known only to take
// longer than its elapsed time and is recorded as such, so that hedging does not hide the tail
// from the sketch. In the replica's average (C3 ranking) every attempt counts with its elapsed
// time, and an error counts as at least twice the average of its successful attempts (twice the
// whole average while it has had none), so a replica that fails fast is not mistaken for a fast
// one, and once it has answered, a run of errors does not compound the penalty without bound. An
// error matching ErrBadRequest (the replica refused the request) is not observed at all: its
// latency says nothing of how fast the replica answers, and it neither fails the replica nor ends
// a run of its errors.
func (s *ReplicaSet[Req, Resp]) observe(r int, d time.Duration, err error, cancelled bool, p *policy, kind attemptKind) {
	if err != nil && errors.Is(err, ErrBadRequest) {
		return
	}
	if kind == attemptPrimary {
		if err != nil && cancelled {
			s.sketch.observeAtLeast(d) // cancelled: it would have taken longer
		} else {
			s.sketch.Observe(d)
		}
	}
	v := float64(d)
	s.mu.Lock()
	st := &s.stats[r]
	wasBad := st.errRun > 0 || st.probation
	defer func() {
		if bad := st.errRun > 0 || st.probation; bad != wasBad {
			if bad {
				s.nBad++
			} else {
				s.nBad--
			}
		}
		s.mu.Unlock()
	}()
	fresh := false
	switch {
	case err == nil:
		if st.errRun > 0 {
			// The first answer after a run of errors: the average is made of error penalties,
			// which say nothing of how fast the replica answers now. Start it afresh.
			st.errRun, fresh = 0, true
		}
		if st.okEWMA == 0 {
			st.okEWMA = v
		} else {
			st.okEWMA += ewmaAlpha * (v - st.okEWMA)
		}
	case cancelled:
	case st.okEWMA > 0:
		st.failed(s.rr.Load())
		v = max(v, 2*st.okEWMA)
	default:
		st.failed(s.rr.Load())
		// No success yet to compare with: twice the average so far, as before the first success.
		v = max(v, 2*st.ewma)
	}
	if st.samples == 0 || fresh {
		st.ewma = v
	} else {
		st.ewma += ewmaAlpha * (v - st.ewma)
	}
	st.samples++
	pr := p.probation
	if pr == nil || len(s.stats) < 2 {
		return
	}
	// The median is of the other selectable replicas that answer: the average of one whose last
	// attempt failed is made of errors, and says nothing of how fast a healthy replica is.
	var others [16]float64
	k := 0
	for i := range s.stats {
		o := &s.stats[i]
		if i != r && !o.probation && o.errRun == 0 && o.samples > 0 && k < len(others) {
			others[k] = o.ewma
			k++
		}
	}
	if k == 0 {
		if st.probation && err == nil {
			// No other replica answers: this one, slow as it may be, is the set's best.
			st.probation = false
			p.log.Info("replica off probation: no other replica answers", zap.Int("replica", r))
		}
		return
	}
	med := median(others[:k])
	switch {
	case !st.probation && st.samples >= pr.MinSamples && st.ewma > float64(pr.MinLatency) && st.ewma > pr.Factor*med:
		st.probation = true
		if p.m != nil {
			p.m.probations.Inc()
			p.m.nProbations.Add(1)
		}
		p.log.Info("replica on probation", zap.Int("replica", r), zap.Duration("ewma", time.Duration(st.ewma)), zap.Duration("median", time.Duration(med)))
	case st.probation && (st.ewma < pr.Factor/2*med || st.ewma < float64(pr.MinLatency)):
		st.probation = false
		p.log.Info("replica off probation", zap.Int("replica", r), zap.Duration("ewma", time.Duration(st.ewma)))
	}
}

func median(v []float64) float64 {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// shadow sends copies of req to the replicas on probation, every ShadowEvery calls of the set.
func (s *ReplicaSet[Req, Resp]) shadow(ctx context.Context, req Req, p *policy) {
	pr := p.probation
	if pr == nil || s.calls.Add(1)%uint64(pr.ShadowEvery) != 0 {
		return
	}
	s.mu.Lock()
	var on [16]int
	k := 0
	for i := range s.stats {
		if s.stats[i].probation && k < len(on) {
			on[k] = i
			k++
		}
	}
	s.mu.Unlock()
	for _, r := range on[:k] {
		if p.m != nil {
			p.m.shadows.Inc()
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pr.ShadowTimeout)
			defer cancel()
			_, _ = s.attempt(sctx, req, r, p, attemptShadow, time.Now())
		}()
	}
}

type attemptResult[Resp any] struct {
	resp    Resp
	err     error
	replica int
	backup  bool
}

func (s *ReplicaSet[Req, Resp]) callShard(ctx context.Context, req Req, p *policy, rep *Report) (Resp, error) {
	var buf [16]int
	order, probe := s.order(buf[:0], p)
	s.shadow(ctx, req, p)
	if p.budget != nil {
		p.budget.earn()
	}
	if p.hedge == nil || len(order) < 2 {
		return s.sequential(ctx, req, order, probe, p, rep)
	}
	var zero Resp
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan attemptResult[Resp], len(order)) // every attempt can send without blocking
	launch := func(k int, backup bool) {
		r := order[k]
		kind := attemptPrimary
		if backup {
			kind = attemptBackup
		}
		p.wg.Add(1)
		start := time.Now()
		go func() {
			defer p.wg.Done()
			resp, err := s.attempt(ctx, req, r, p, kind, start)
			ch <- attemptResult[Resp]{resp, err, r, backup}
		}()
	}
	// backup accounts for a backup attempt, taking budget when charge is set.
	backup := func(charge bool) bool {
		if charge && !p.budget.take() {
			if p.m != nil {
				p.m.budgetExhausted.Inc()
				p.m.nExhausted.Add(1)
			}
			return false
		}
		if p.m != nil {
			p.m.hedgesSent.Inc()
			p.m.nHedges.Add(1)
		}
		rep.Attempts++
		rep.Hedged = true
		return true
	}
	launch(0, false)
	rep.Attempts, rep.Replica = 1, order[0]
	sent, outstanding, backups := 1, 1, 0
	var timeout <-chan time.Time
	delay := s.hedgeDelay(p.hedge)
	if delay > 0 && p.hedge.Max > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timeout = t.C
	}
	var lastErr error
	// take handles one attempt's result; done reports that callShard returns (resp, err).
	take := func(a attemptResult[Resp]) (done bool, resp Resp, err error) {
		outstanding--
		if a.err == nil {
			rep.Replica, rep.HedgeWon = a.replica, a.backup
			if a.backup && p.m != nil {
				p.m.hedgesWon.Inc()
				p.m.nHedgesWon.Add(1)
			}
			return true, a.resp, nil
		}
		lastErr, rep.Replica = a.err, a.replica
		if errors.Is(a.err, ErrBadRequest) {
			return true, zero, a.err // another replica would refuse it too
		}
		// Fail over at once. The failover after a failing replica's try is not budgeted: the set,
		// not the request, chose that try.
		if ctx.Err() == nil && sent < len(order) && backup(!probe || a.backup || sent > 1) {
			launch(sent, true)
			sent++
			outstanding++
		}
		return outstanding == 0, zero, lastErr
	}
	for {
		select {
		case a := <-ch:
			if done, resp, err := take(a); done {
				return resp, err
			}
		case <-timeout:
			timeout = nil
			// An answer may be ready and only waiting for a CPU (timers that expired together
			// after a stall wake in any order): let it through before paying for a backup.
			runtime.Gosched()
			select {
			case a := <-ch:
				if done, resp, err := take(a); done {
					return resp, err
				}
				if a.err == nil || outstanding > 1 {
					continue // answered, or a failover is already on its way
				}
			default:
			}
			if sent < len(order) && backups < p.hedge.Max && backup(true) {
				launch(sent, true)
				sent++
				outstanding++
				backups++
				if sent < len(order) && backups < p.hedge.Max {
					t := time.NewTimer(delay)
					defer t.Stop()
					timeout = t.C
				}
			}
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// sequential tries the replicas one after the other (no hedging); failovers spend hedge budget
// when there is one, except the one after a failing replica's try (probe: order[0] is one).
func (s *ReplicaSet[Req, Resp]) sequential(ctx context.Context, req Req, order []int, probe bool, p *policy, rep *Report) (Resp, error) {
	var (
		resp Resp
		err  error
	)
	for k, r := range order {
		if k > 0 {
			if ctx.Err() != nil {
				break
			}
			if (k > 1 || !probe) && p.budget != nil && !p.budget.take() {
				if p.m != nil {
					p.m.budgetExhausted.Inc()
					p.m.nExhausted.Add(1)
				}
				break
			}
			if p.m != nil {
				p.m.hedgesSent.Inc()
				p.m.nHedges.Add(1)
			}
			rep.Hedged = true
		}
		rep.Attempts++
		rep.Replica = r
		kind := attemptPrimary
		if k > 0 {
			kind = attemptBackup
		}
		resp, err = s.attempt(ctx, req, r, p, kind, time.Now())
		if err == nil {
			rep.HedgeWon = k > 0
			return resp, nil
		}
		if errors.Is(err, ErrBadRequest) {
			break // another replica would refuse it too
		}
	}
	return resp, err
}
