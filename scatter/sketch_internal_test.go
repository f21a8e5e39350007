package scatter

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// A cancelled call's latency is only known to exceed its elapsed time: its weight goes to the
// buckets above, not to the elapsed time itself.
func TestSketchCensored(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var s Sketch
	s.Window = 1 << 30
	for range 2000 {
		s.Observe(time.Duration(1+r.IntN(100)) * time.Millisecond)
	}
	for range 2000 {
		s.observeAtLeast(50 * time.Millisecond)
	}
	// 1000 below 50ms, 3000 spread over 50-100ms like the observed ones: the median is the
	// 1000th of those, at 50 + 50/3 ms. Recorded at 50ms they would put it at 50ms.
	want := 50*time.Millisecond + 50*time.Millisecond/3
	if got := s.Quantile(0.5); got < want*97/100 || got > want*106/100 {
		t.Errorf("p50 = %v, want about %v", got, want)
	}
	var e Sketch
	e.observeAtLeast(7 * time.Millisecond) // nothing above: counts as its lower bound
	if got := e.Quantile(0.5); got < 7*time.Millisecond || got > 7*time.Millisecond*104/100 {
		t.Errorf("lone censored p50 = %v, want 7ms", got)
	}
}

// Halving the counts every window must not drain the tail: with integer counts rounded down, the
// sparse tail buckets empty first and a lognormal's p95 came out about 15% low.
func TestSketchDecayKeepsTail(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	decayed, whole := Sketch{Window: 1000}, Sketch{Window: 1 << 30}
	var sumD, sumW float64
	for i := range 20000 {
		d := time.Duration(float64(time.Millisecond) * math.Exp(1.5*r.NormFloat64()))
		decayed.Observe(d)
		whole.Observe(d)
		if i >= 2000 && i%10 == 0 {
			sumD += float64(decayed.Quantile(0.95))
			sumW += float64(whole.Quantile(0.95))
		}
	}
	if ratio := sumD / sumW; ratio < 0.96 || ratio > 1.04 {
		t.Errorf("mean p95 with decay / without = %.3f, want about 1", ratio)
	}
}
