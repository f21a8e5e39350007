//go:build !unix

package scatter_test

import "time"

// cpuTime is 0 where getrusage(2) is missing (Windows), as when it fails on Unix: the cpu-ns/op
// metric then reads 0 and only wall-clock ns/op means anything.
func cpuTime() time.Duration { return 0 }
