package workqueue

import "time"

// WithOutcomeBudget sets the budget of each call that reports an item's outcome (outcomeBudget,
// 30s), so that tests can run out of it in moments.
func WithOutcomeBudget(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.outcome = d })
}
