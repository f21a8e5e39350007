//go:build linux && (mips || mipsle)

package uring

// The o32 ABI's numbers are offset by 4000.
const (
	sysIOUringSetup = 4425
	sysIOUringEnter = 4426
)
