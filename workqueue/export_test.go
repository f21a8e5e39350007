package workqueue

import "time"

// SetLeaseErrLogEvery sets how often a Pool logs a Lease error other than an outage's, until the
// returned func restores it.
func SetLeaseErrLogEvery(d time.Duration) (restore func()) {
	old := leaseErrLogEvery
	leaseErrLogEvery = d
	return func() { leaseErrLogEvery = old }
}
