package scatter

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Sketch is a streaming latency quantile sketch: a log-bucketed histogram (each bucket 4% wider
// than the previous; a quantile is its bucket's upper bound, so it is at most 4% above the
// observed value and never below it, to the 1µs floor) from 1µs
// to about 2 minutes, whose counts are halved every Window observations so that it follows recent
// behaviour. Counts are fractional, so halving keeps every bucket's share: rounding halves down
// would empty the sparse buckets of the tail first and pull the upper quantiles down (a p95 about
// 15% low on a lognormal leaf). The zero value is ready to use with a window of 1000. Safe for
// concurrent use.
type Sketch struct {
	// Window is how many observations pass between two halvings (0: 1000). Set it before the
	// sketch is shared: it is read without the lock, so changing it while another goroutine
	// observes is a data race.
	Window int

	mu     sync.Mutex
	counts [sketchBuckets]float64
	total  float64
	since  int
	seen   atomic.Int64
}

const (
	sketchGamma   = 1.04
	sketchMin     = float64(time.Microsecond)
	sketchBuckets = 480 // 1.04^480 µs is about 150 s
)

var sketchLogGamma = math.Log(sketchGamma)

func sketchIndex(d time.Duration) int {
	if float64(d) <= sketchMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/sketchMin) / sketchLogGamma))
	return min(i, sketchBuckets-1)
}

// Observe adds one latency.
func (s *Sketch) Observe(d time.Duration) { s.observe(d, false) }

// observeAtLeast adds a latency known only to exceed d: a call cancelled after d. Its weight is
// spread over the buckets above d in proportion to what they hold (Efron's redistribution to the
// right, which is how the Kaplan-Meier estimator treats a censored observation); with nothing
// above d, it counts as d. Recording it as d instead would put the tail's weight below the
// quantile a hedge delay is taken from whenever that delay grows.
func (s *Sketch) observeAtLeast(d time.Duration) { s.observe(d, true) }

func (s *Sketch) observe(d time.Duration, censored bool) {
	i := sketchIndex(d)
	s.mu.Lock()
	var above float64
	if censored {
		for _, c := range s.counts[i+1:] {
			above += c
		}
	}
	if above > 0 {
		for j, c := range s.counts[i+1:] {
			s.counts[i+1+j] += c / above
		}
	} else {
		s.counts[i]++
	}
	s.total++
	s.since++
	w := s.Window
	if w <= 0 {
		w = 1000
	}
	if s.since >= w {
		s.since = 0
		var t float64
		for j, c := range s.counts {
			if c < 1e-6 {
				c = 0 // long gone; keep the sums exact
			}
			s.counts[j] = c / 2
			t += c / 2
		}
		s.total = t
	}
	s.mu.Unlock()
	s.seen.Add(1)
}

// Count is how many latencies were observed in total (not decayed).
func (s *Sketch) Count() int64 { return s.seen.Load() }

// Quantile returns the latency at quantile q in [0, 1] of the recent observations (0 when there
// are none), weighted by their decay. The answer is a bucket's upper bound: at most 4% above the
// true value.
func (s *Sketch) Quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total == 0 {
		return 0
	}
	// The first bucket whose cumulative weight reaches q of the total (less a rounding margin).
	rank := max(q*s.total, 0) - 1e-9*s.total
	var acc float64
	for i, c := range s.counts {
		acc += c
		if c > 0 && acc >= rank {
			return time.Duration(sketchMin * math.Pow(sketchGamma, float64(i)))
		}
	}
	return time.Duration(sketchMin * math.Pow(sketchGamma, sketchBuckets-1))
}

// budget is a token bucket in millionths of a hedge: every primary call earns perCall, every
// backup request spends one whole token.
type budget struct {
	unlimited bool
	perCall   int64
	capacity  int64
	cur       atomic.Int64
}

const tokenUnit = 1_000_000

// maxHedgeTokens bounds Burst, and a Budget above it means no cap: in millionths both stay far
// from overflowing an int64, also when added.
const maxHedgeTokens = 1e12

func newBudget(ratio, burst float64) *budget {
	b := &budget{unlimited: ratio < 0 || ratio > maxHedgeTokens, perCall: int64(ratio * tokenUnit), capacity: int64(burst * tokenUnit)}
	b.cur.Store(b.capacity)
	return b
}

func (b *budget) earn() {
	if b.unlimited {
		return
	}
	for {
		c := b.cur.Load()
		n := min(c+b.perCall, b.capacity)
		if n == c || b.cur.CompareAndSwap(c, n) {
			return
		}
	}
}

func (b *budget) take() bool {
	if b.unlimited {
		return true
	}
	for {
		c := b.cur.Load()
		if c < tokenUnit {
			return false
		}
		if b.cur.CompareAndSwap(c, c-tokenUnit) {
			return true
		}
	}
}

func (b *budget) tokens() float64 {
	if b.unlimited {
		return math.Inf(1)
	}
	return float64(b.cur.Load()) / tokenUnit
}
