package scatter

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap"
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

// A fast error is a real sample, not a cut-off one, with or without a leaf timeout: the deferred
// cancel of the leaf-timeout context must not make every failed attempt look cancelled.
func TestFailedAttemptsAreNotCensoredUnderLeafTimeout(t *testing.T) {
	failFast := LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
		return 0, errors.New("connection refused")
	})
	for _, lt := range []time.Duration{0, time.Second} {
		rs, err := NewReplicaSet[int, int](failFast, failFast)
		if err != nil {
			t.Fatal(err)
		}
		p := &policy{leafTimeout: lt, log: zap.NewNop()}
		for range 100 {
			rs.sketch.Observe(100 * time.Millisecond)
		}
		for range 100 {
			rs.attempt(context.Background(), 0, 0, p, attemptPrimary, time.Now())
		}
		// Half the samples are near-zero errors: the 25th percentile must be among them.
		if q := rs.sketch.Quantile(0.25); q > 10*time.Millisecond {
			t.Errorf("leaf timeout %v: p25 = %v, want the fast errors (< 10ms): they were recorded as cancelled", lt, q)
		}
	}
}

// A run of errors after successes counts each error as twice the successes' average, not as twice
// a growing average: the replica's EWMA stays bounded.
func TestErrorPenaltyDoesNotCompound(t *testing.T) {
	fail := false
	leaf := LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
		if fail {
			return 0, errors.New("boom")
		}
		return 1, nil
	})
	rs, err := NewReplicaSet[int, int](leaf, leaf)
	if err != nil {
		t.Fatal(err)
	}
	p := &policy{log: zap.NewNop()}
	start := time.Now()
	for range 20 {
		rs.attempt(context.Background(), 0, 0, p, attemptPrimary, start.Add(-time.Millisecond))
	}
	fail = true
	for range 200 {
		rs.attempt(context.Background(), 0, 0, p, attemptPrimary, time.Now().Add(-time.Millisecond))
	}
	if got := rs.stats[0].ewma; got > float64(time.Second) {
		t.Errorf("EWMA after 200 errors = %.3g ns, want it bounded near twice the ~1ms successes", got)
	}
}
