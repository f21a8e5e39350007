package workqueue

import "time"

// SetLeaseErrLogEvery sets how often a Pool logs a Lease error other than an outage's, until the
// returned func restores it.
func SetLeaseErrLogEvery(d time.Duration) (restore func()) {
	old := leaseErrLogEvery
	leaseErrLogEvery = d
	return func() { leaseErrLogEvery = old }
}

// StopGrace is how long after its ctx ended a stage waits for an output add in flight; its calls on
// its inputs give up StopGrace after that.
const StopGrace = stopGrace
