//go:build unix

package shardproc

import "syscall"

const canSetNofile = true

// setNofile sets this process's limits of open files, soft and hard, to n.
func setNofile(n uint64) error {
	var rl syscall.Rlimit
	setLimit(&rl.Cur, n) // uint64 on Linux, int64 on the BSDs
	setLimit(&rl.Max, n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

func setLimit[T int64 | uint64](p *T, n uint64) { *p = T(n) }
