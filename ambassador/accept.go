package ambassador

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
)

// acceptBackoff is an accept loop's back-off past accept failures, for acceptNext. It carries over
// the connections accepted between failures (under fd pressure every other accept may fail), and
// starts again at 5ms once a second has passed without a failure.
type acceptBackoff struct {
	delay time.Duration
	last  time.Time // when the last back-off ended
}

// acceptNext returns the next connection accept gives, for the proxies' accept loops, each with
// its own b. A failure other than net.ErrClosed (out of file descriptors and the like) is logged
// and tried again after a back-off, 5ms doubling up to 1s, so the listener keeps serving;
// acceptNext returns the error of the last try when it is net.ErrClosed or ctx ends during a
// back-off.
func acceptNext[C any](ctx context.Context, log *zap.Logger, b *acceptBackoff, accept func() (C, error)) (C, error) {
	for {
		c, err := accept()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return c, err
		}
		if time.Since(b.last) > time.Second {
			b.delay = 0
		}
		b.delay = min(max(2*b.delay, 5*time.Millisecond), time.Second)
		log.Warn("accept", zap.Error(err))
		t := time.NewTimer(b.delay)
		select {
		case <-t.C:
			b.last = time.Now()
		case <-ctx.Done():
			t.Stop()
			return c, err
		}
	}
}
