package twemproxy

import (
	"sync/atomic"
	"time"
)

// logLimit lets a repeated warning through at most once a second, so that a failure every request
// meets (a dead server while auto_eject_hosts is off, a flood of refused clients) cannot flood the
// log. The zero value is ready to use.
type logLimit struct {
	next       atomic.Int64 // unix nanoseconds from which the next warning may go through
	suppressed atomic.Int64 // warnings held back since the last one let through
}

// allow reports whether a warning may go through now and, if so, how many were held back since the
// last one that did.
func (l *logLimit) allow() (ok bool, suppressed int64) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(time.Second)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
