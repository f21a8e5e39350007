// Package await is the polling loop tests use to wait for a condition on real processes, sockets
// and files, where no event tells them when it holds.
package await

import (
	"testing"
	"time"
)

// Interval is how often True checks its condition.
const Interval = 10 * time.Millisecond

// True calls cond every Interval until it returns true, and fails the test (t.Fatalf, naming what
// and the wait) if it has not within d.
func True(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(Interval)
	}
}
