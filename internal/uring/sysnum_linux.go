//go:build linux && !mips && !mipsle && !mips64 && !mips64le

package uring

// The io_uring system call numbers: the same on every architecture since they were added, but
// for MIPS's offsets (sysnum_linux_mips*.go).
const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426
)
