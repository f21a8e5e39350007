package scattertest

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrInjected is the error a Leaf returns for its injected failures.
var ErrInjected = errors.New("scattertest: injected failure")

// Latency draws one call's latency.
type Latency interface {
	Sample(r *rand.Rand) time.Duration
}

// LatencyFunc adapts a function to Latency.
type LatencyFunc func(r *rand.Rand) time.Duration

// Sample calls f(r).
func (f LatencyFunc) Sample(r *rand.Rand) time.Duration { return f(r) }

// Constant is always d.
func Constant(d time.Duration) Latency {
	return LatencyFunc(func(*rand.Rand) time.Duration { return d })
}

// Uniform is uniform in [lo, hi).
func Uniform(lo, hi time.Duration) Latency {
	return LatencyFunc(func(r *rand.Rand) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)))
	})
}

// Bimodal is fast, except with probability pSlow, when it is slow: "The Tail at Scale"'s leaf
// (fast 1ms, slow 1s, pSlow 0.01). fast and slow are themselves distributions.
func Bimodal(fast, slow Latency, pSlow float64) Latency {
	return LatencyFunc(func(r *rand.Rand) time.Duration {
		if r.Float64() < pSlow {
			return slow.Sample(r)
		}
		return fast.Sample(r)
	})
}

// LogNormal is lognormal with the given median and sigma (of the underlying normal).
func LogNormal(median time.Duration, sigma float64) Latency {
	return LatencyFunc(func(r *rand.Rand) time.Duration {
		return time.Duration(float64(median) * math.Exp(sigma*r.NormFloat64()))
	})
}

// Stats counts a Leaf's calls.
type Stats struct {
	Calls     int // calls started
	Completed int // calls that ran their full latency (answered or failed by injection)
	Failed    int // injected failures
	Canceled  int // calls that ended because their context did
	Inflight  int // calls running now
	// Lingered is the total time calls kept running after their context was done: the work a
	// fan-out failed to stop. A leaf honouring its context has 0 under synctest.
	Lingered time.Duration
}

// Leaf is a scatter leaf (it has the Call method of scatter.Leaf) that waits a latency drawn from
// its distribution and then answers with Respond, or fails with ErrInjected at FailRate. It honours
// its context unless IgnoreContext is set, which makes it a hanging leaf. Safe for concurrent use;
// draws come from one seeded generator, so a leaf called in the same order gives the same latencies.
type Leaf[Req, Resp any] struct {
	mu            sync.Mutex
	rng           *rand.Rand
	latency       Latency
	failRate      float64
	ignoreContext bool
	respond       func(Req) Resp
	fn            func(context.Context, Req) (Resp, error)
	stats         Stats
}

// NewLeaf returns a leaf drawing latencies from lat with a generator seeded with seed, answering
// with respond (nil: the zero Resp).
func NewLeaf[Req, Resp any](seed uint64, lat Latency, respond func(Req) Resp) *Leaf[Req, Resp] {
	return &Leaf[Req, Resp]{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), latency: lat, respond: respond}
}

// SetLatency changes the latency distribution for later calls.
func (l *Leaf[Req, Resp]) SetLatency(lat Latency) {
	l.mu.Lock()
	l.latency = lat
	l.mu.Unlock()
}

// SetFunc makes later calls answer with fn(ctx, req) once their latency has passed (instead of
// the respond func given to NewLeaf); fn's error is the call's.
func (l *Leaf[Req, Resp]) SetFunc(fn func(ctx context.Context, req Req) (Resp, error)) {
	l.mu.Lock()
	l.fn = fn
	l.mu.Unlock()
}

// SetFailRate makes a fraction p of later calls fail with ErrInjected after their latency.
func (l *Leaf[Req, Resp]) SetFailRate(p float64) {
	l.mu.Lock()
	l.failRate = p
	l.mu.Unlock()
}

// SetIgnoreContext makes later calls run their full latency whatever their context says.
func (l *Leaf[Req, Resp]) SetIgnoreContext(ignore bool) {
	l.mu.Lock()
	l.ignoreContext = ignore
	l.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (l *Leaf[Req, Resp]) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Call waits the drawn latency (or until ctx is done) and answers.
func (l *Leaf[Req, Resp]) Call(ctx context.Context, req Req) (Resp, error) {
	l.mu.Lock()
	d := l.latency.Sample(l.rng)
	fail := l.failRate > 0 && l.rng.Float64() < l.failRate
	ignore := l.ignoreContext
	fn := l.fn
	l.stats.Calls++
	l.stats.Inflight++
	l.mu.Unlock()

	var doneAt time.Time
	var doneMu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		doneMu.Lock()
		doneAt = time.Now()
		doneMu.Unlock()
	})
	t := time.NewTimer(d)
	var zero Resp
	var err error
	canceled := false
	if ignore {
		<-t.C
	} else {
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			canceled, err = true, ctx.Err()
		}
	}
	stop()
	doneMu.Lock()
	at := doneAt
	doneMu.Unlock()

	if !canceled && !fail && fn != nil {
		resp, ferr := fn(ctx, req)
		l.account(at, false, false)
		return resp, ferr
	}
	l.account(at, canceled, fail)
	switch {
	case canceled:
		return zero, err
	case fail:
		return zero, ErrInjected
	case l.respond == nil:
		return zero, nil
	}
	return l.respond(req), nil
}

func (l *Leaf[Req, Resp]) account(doneAt time.Time, canceled, fail bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Inflight--
	if !doneAt.IsZero() {
		l.stats.Lingered += time.Since(doneAt)
	}
	switch {
	case canceled:
		l.stats.Canceled++
	case fail:
		l.stats.Completed++
		l.stats.Failed++
	default:
		l.stats.Completed++
	}
}
