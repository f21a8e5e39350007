package election

import (
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures an Elector.
type Option interface{ apply(*config) }

type config struct {
	log            *zap.Logger
	reg            prometheus.Registerer
	backoff        Backoff
	releaseTimeout time.Duration
	margin         time.Duration
}

// DefaultStepDownMargin is how long before a lease's ValidUntil an Elector ends the term by default.
const DefaultStepDownMargin = 100 * time.Millisecond

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLogger sets the logger. The default is zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.log = l
		}
	})
}

// WithRegisterer registers the Elector's metrics with r. nil (the default) means the metrics exist
// but are not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.reg = r })
}

// WithBackoff sets how long the Elector waits before retrying after a failed Campaign or Observe.
// nil means DefaultBackoff.
func WithBackoff(b Backoff) Option {
	return optionFunc(func(c *config) {
		if b != nil {
			c.backoff = b
		}
	})
}

// WithReleaseTimeout bounds how long the Elector waits for the backend to confirm a Release when a
// term ends. Default 2s; the lease then ends by itself when its TTL runs out.
func WithReleaseTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.releaseTimeout = d
		}
	})
}

// WithStepDownMargin makes the Elector end a term d before the lease's ValidUntil (the send time of
// the last confirmed renewal plus the TTL), to absorb clock-rate differences between this host and
// the lock service and the delay between the deadline and the leader func noticing its ctx ended.
// Default DefaultStepDownMargin; 0 steps down exactly at ValidUntil. Keep it well below the TTL/3
// renewal interval's slack (TTL*2/3).
func WithStepDownMargin(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d >= 0 {
			c.margin = d
		}
	})
}

// Backoff returns the wait before retry number attempt (1 for the first retry).
type Backoff func(attempt int) time.Duration

// DefaultBackoff waits 50ms doubling per attempt up to 2s, with up to 50% random jitter.
func DefaultBackoff(attempt int) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < attempt && d < 2*time.Second; i++ {
		d *= 2
	}
	d = min(d, 2*time.Second)
	return d/2 + rand.N(d/2+1)
}
