//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package unixsock

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes an exclusive flock on path+".lock", creating the file (which stays) if need be.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("unixsock: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("unixsock: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
