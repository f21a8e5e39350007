package workqueue

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter decides how long an item waits before it is retried, as client-go's rate limiters
// do. Keys are item keys (or IDs for keyless items).
type RateLimiter interface {
	// When records a failure of key and returns how long to wait before its next attempt.
	When(key string) time.Duration
	// Forget clears key's history (call it when the item succeeded).
	Forget(key string)
	// Retries is how many failures of key are on record.
	Retries(key string) int
}

// ItemExponentialLimiter waits base*2^failures per key, up to max.
type ItemExponentialLimiter struct {
	base, max time.Duration
	mu        sync.Mutex
	failures  map[string]int
}

// NewItemExponentialLimiter returns a per-item exponential limiter.
func NewItemExponentialLimiter(base, max time.Duration) *ItemExponentialLimiter {
	return &ItemExponentialLimiter{base: base, max: max, failures: map[string]int{}}
}

// When implements RateLimiter.
func (l *ItemExponentialLimiter) When(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failures[key]
	l.failures[key] = n + 1
	d := float64(l.base) * math.Pow(2, float64(n))
	if d >= float64(l.max) || math.IsInf(d, 0) { // float64(math.MaxInt64) is 2^63, past any Duration
		return l.max
	}
	return time.Duration(d)
}

// Forget implements RateLimiter.
func (l *ItemExponentialLimiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// Retries implements RateLimiter.
func (l *ItemExponentialLimiter) Retries(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[key]
}

// BucketLimiter is an overall token bucket (qps, burst) shared by all keys: each When takes a
// token and returns the wait until it is due.
type BucketLimiter struct{ l *rate.Limiter }

// NewBucketLimiter returns a token-bucket limiter.
func NewBucketLimiter(qps float64, burst int) *BucketLimiter {
	return &BucketLimiter{l: rate.NewLimiter(rate.Limit(qps), burst)}
}

// When implements RateLimiter.
func (b *BucketLimiter) When(string) time.Duration { return b.l.Reserve().Delay() }

// Forget implements RateLimiter (a bucket keeps no per-key history).
func (b *BucketLimiter) Forget(string) {}

// Retries implements RateLimiter (always 0).
func (b *BucketLimiter) Retries(string) int { return 0 }

// MaxOfLimiter waits the longest of its limiters' waits.
type MaxOfLimiter struct{ ls []RateLimiter }

// NewMaxOfLimiter combines limiters.
func NewMaxOfLimiter(ls ...RateLimiter) *MaxOfLimiter {
	return &MaxOfLimiter{ls: append([]RateLimiter(nil), ls...)}
}

// When implements RateLimiter.
func (m *MaxOfLimiter) When(key string) time.Duration {
	var d time.Duration
	for _, l := range m.ls {
		d = max(d, l.When(key))
	}
	return d
}

// Forget implements RateLimiter.
func (m *MaxOfLimiter) Forget(key string) {
	for _, l := range m.ls {
		l.Forget(key)
	}
}

// Retries implements RateLimiter: the most any limiter has on record.
func (m *MaxOfLimiter) Retries(key string) int {
	n := 0
	for _, l := range m.ls {
		n = max(n, l.Retries(key))
	}
	return n
}

// DefaultRateLimiter is client-go's default: per-item exponential from 5ms to 1000s, and an
// overall bucket of 10 per second with a burst of 100, whichever waits longer.
func DefaultRateLimiter() RateLimiter {
	return NewMaxOfLimiter(NewItemExponentialLimiter(5*time.Millisecond, 1000*time.Second), NewBucketLimiter(10, 100))
}

// AddRateLimited adds payload under key after the wait l assigns to key (client-go's
// AddRateLimited). Call l.Forget(key) once the key's work succeeded.
func AddRateLimited(ctx context.Context, q Queue, l RateLimiter, payload []byte, key string) (string, error) {
	return q.Add(ctx, payload, AddOptions{Key: key, Delay: l.When(key)})
}

// WithRateLimiter makes the pool's retry delays come from l (keyed by item key, or ID when it has
// none), forgetting the key when the Pool acks or buries its item. An item the queue buries itself
// (its WithMaxAttempts, at lease time) never reaches the Pool: its key is not forgotten then, so give
// the queue no attempt limit of its own, or a higher one, when the Pool has a limiter and a
// WithPoolMaxAttempts. It replaces WithBackoff.
func WithRateLimiter(l RateLimiter) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.limiter = l })
}
