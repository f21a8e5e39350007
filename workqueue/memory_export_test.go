package workqueue

// HeldStats is what q holds, by state, whether or not it is closed: Stats returns ErrClosed once
// it is, and the tests that check that a Shutdown kept every item not acked read it here.
func HeldStats(q *Memory) Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.statsLocked()
}
