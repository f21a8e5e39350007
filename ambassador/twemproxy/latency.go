package twemproxy

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// responseBounds are the upper bounds of the buckets of podblocks_sharding_server_response_seconds.
var responseBounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// responseTimes counts a session's response times between two publications, without atomics: only
// the owner of the session's read side adds to it. n's last bucket is +Inf.
type responseTimes struct {
	n       [len(responseBounds) + 1]int64
	sum     time.Duration
	touched uint32 // a bit for each bucket of n that is not 0
	// The last time added and its bucket: the replies of one read to the requests of one client's
	// batch, queued at one time, have one response time.
	last  time.Duration
	lastI int
}

// add counts one response time.
func (t *responseTimes) add(d time.Duration) {
	d = max(d, 0)
	if d != t.last {
		i := 0
		for i < len(responseBounds) && d > responseBounds[i] {
			i++
		}
		t.last, t.lastI = d, i
	}
	t.n[t.lastI]++
	t.sum += d
	t.touched |= 1 << t.lastI
}

// serverResponseTimes is a server's response times, all of its connections', since the pool
// started (carried over a reload, as its other counters).
type serverResponseTimes struct {
	n   [len(responseBounds) + 1]atomic.Int64
	sum atomic.Int64 // nanoseconds
}

// publish adds t's counts to st's and clears them.
func (st *serverResponseTimes) publish(t *responseTimes) {
	for m := t.touched; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		st.n[i].Add(t.n[i])
		t.n[i] = 0
	}
	st.sum.Add(int64(t.sum))
	t.sum, t.touched = 0, 0
}

// histogram returns st as Prometheus' histogram: the count, the sum in seconds and the cumulative
// count of each bucket by its upper bound in seconds.
func (st *serverResponseTimes) histogram() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(responseBounds))
	for i, b := range responseBounds {
		count += uint64(st.n[i].Load())
		buckets[b.Seconds()] = count
	}
	count += uint64(st.n[len(responseBounds)].Load())
	return count, time.Duration(st.sum.Load()).Seconds(), buckets
}
