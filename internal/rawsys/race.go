//go:build race

package rawsys

import (
	"runtime"
	"unsafe"
)

// raceRead and raceWrite tell the race detector what a raw call's kernel side read or wrote, as
// package syscall's Read and Write do, so a buffer reused during the call is still reported.
func raceRead(b []byte) {
	if len(b) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
	}
}

func raceWrite(b []byte) {
	if len(b) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&b[0]), len(b))
	}
}
