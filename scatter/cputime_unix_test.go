//go:build unix

package scatter_test

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time. The benchmark machines are shared and loaded,
// so wall-clock ns/op mostly measures waiting for a CPU; CPU time per op is what the code costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
