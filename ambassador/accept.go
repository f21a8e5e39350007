package ambassador

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
)

// acceptNext returns the next connection accept gives, for the proxies' accept loops. A failure
// other than net.ErrClosed (out of file descriptors and the like) is logged and tried again after
// a back-off, 5ms doubling up to 1s, so the listener keeps serving; acceptNext returns the error
// of the last try when it is net.ErrClosed or ctx ends during a back-off.
func acceptNext[C any](ctx context.Context, log *zap.Logger, accept func() (C, error)) (C, error) {
	var delay time.Duration
	for {
		c, err := accept()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		log.Warn("accept", zap.Error(err))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return c, err
		}
	}
}
