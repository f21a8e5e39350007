package scatter

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Sketch is a streaming latency quantile sketch: a log-bucketed histogram (each bucket 4% wider
// than the previous, so quantiles are within about 2% of the true value, like DDSketch) from 1µs
// to about 2 minutes, whose counts are halved every Window observations so that it follows recent
// behaviour. The zero value is ready to use with a window of 1000. Safe for concurrent use.
type Sketch struct {
	// Window is how many observations pass between two halvings (0: 1000).
	Window int

	mu     sync.Mutex
	counts [sketchBuckets]uint32
	total  uint64
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
func (s *Sketch) Observe(d time.Duration) {
	i := sketchIndex(d)
	s.mu.Lock()
	s.counts[i]++
	s.total++
	s.since++
	w := s.Window
	if w <= 0 {
		w = 1000
	}
	if s.since >= w {
		s.since = 0
		var t uint64
		for j := range s.counts {
			s.counts[j] /= 2
			t += uint64(s.counts[j])
		}
		s.total = t
	}
	s.mu.Unlock()
	s.seen.Add(1)
}

// Count is how many latencies were observed in total (not decayed).
func (s *Sketch) Count() int64 { return s.seen.Load() }

// Quantile returns the latency at quantile q in [0, 1] of the recent observations (0 when there
// are none). The answer is a bucket's upper bound: at most 4% above the true value.
func (s *Sketch) Quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.total)))
	if rank < 1 {
		rank = 1
	}
	var acc uint64
	for i, c := range s.counts {
		acc += uint64(c)
		if acc >= rank {
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

func newBudget(ratio, burst float64) *budget {
	b := &budget{unlimited: ratio < 0, perCall: int64(ratio * tokenUnit), capacity: int64(burst * tokenUnit)}
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
