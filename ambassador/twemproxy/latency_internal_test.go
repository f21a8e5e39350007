package twemproxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every bucket takes the times up to its bound, the last one the rest; publish moves the counts
// and leaves the session's empty.
func TestResponseTimesBuckets(t *testing.T) {
	var rt responseTimes
	var st serverResponseTimes
	for _, d := range []time.Duration{-time.Millisecond, 0, 25 * time.Microsecond, 25*time.Microsecond + 1,
		time.Second, 10 * time.Second, time.Hour} {
		rt.add(d)
	}
	rt.add(time.Second) // the bucket of the time before it, 1h, is not 1s's
	rt.add(time.Second)
	st.publish(&rt)
	if rt.n != [len(rt.n)]int64{} || rt.sum != 0 || rt.touched != 0 {
		t.Errorf("after publish the session's counts are %+v, want none", rt)
	}
	count, sum, buckets := st.histogram()
	if count != 9 {
		t.Errorf("count %d, want 9", count)
	}
	if want := (25*time.Microsecond + 25*time.Microsecond + 1 + 3*time.Second + 10*time.Second + time.Hour).Seconds(); sum != want {
		t.Errorf("sum %v, want %v (a negative time counts as 0)", sum, want)
	}
	for le, want := range map[float64]uint64{25e-6: 3, 50e-6: 4, 0.5: 4, 1: 7, 10: 8} {
		if got := buckets[le]; got != want {
			t.Errorf("bucket le=%v: %d, want %d", le, got, want)
		}
	}
}

// BenchmarkResponseTimes is what observing the replies of a round costs the reply path: 16 replies
// read at once (redis-benchmark -P16), each 2ms after its request (its p50 there). per-reply is a
// clock reading and a Prometheus histogram's Observe for each reply; per-read, what the proxy does,
// one clock reading for the read and a local count for each reply, published once per round (with
// all replies to one client's batch, or each to another's); clock is one clock reading alone.
func BenchmarkResponseTimes(b *testing.B) {
	const round = 16
	b.Run("clock", func(b *testing.B) {
		var t time.Time
		for b.Loop() {
			t = time.Now()
		}
		_ = t
	})
	b.Run("per-reply", func(b *testing.B) {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: durationSeconds(responseBounds[:])})
		sent := time.Now().Add(-2 * time.Millisecond)
		for b.Loop() {
			for range round {
				h.Observe(time.Since(sent).Seconds())
			}
		}
	})
	b.Run("per-read", func(b *testing.B) {
		var rt responseTimes
		var st serverResponseTimes
		for b.Loop() {
			readAt := time.Now()
			sent := readAt.Add(-2 * time.Millisecond) // one client's batch of 16
			for range round {
				rt.add(readAt.Sub(sent))
			}
			st.publish(&rt)
		}
	})
	b.Run("per-read-mixed", func(b *testing.B) { // each reply of another batch: the worst case
		var rt responseTimes
		var st serverResponseTimes
		for b.Loop() {
			readAt := time.Now()
			sent := readAt.Add(-2 * time.Millisecond)
			for i := range round {
				rt.add(readAt.Sub(sent) + time.Duration(i))
			}
			st.publish(&rt)
		}
	})
}

func durationSeconds(ds []time.Duration) []float64 {
	s := make([]float64, len(ds))
	for i, d := range ds {
		s[i] = d.Seconds()
	}
	return s
}
