//go:build unix

package shardproc

import (
	"math"
	"syscall"
)

// nofileHard returns this process's hard limit of open files, which a child inherits; MaxInt if
// unlimited or unknown.
func nofileHard() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || uint64(rl.Max) > math.MaxInt32 {
		return math.MaxInt
	}
	return int(rl.Max)
}
