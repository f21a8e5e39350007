package workqueue

import (
	"math"
	"time"
)

// A duration a user gives may be as long as time.Duration goes (math.MaxInt64, about 292 years),
// meaning "never" or "no bound". Sums and multiples of such durations saturate rather than wrap
// around to a negative duration (which a timer takes as "now").

// addDur is a+b for a, b >= 0, at most math.MaxInt64.
func addDur(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// mulDur is d*n for d >= 0 and n > 0, at most math.MaxInt64.
func mulDur(d time.Duration, n int64) time.Duration {
	if d > time.Duration(math.MaxInt64/n) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}
