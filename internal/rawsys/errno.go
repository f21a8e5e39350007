//go:build unix

package rawsys

import "syscall"

// errno turns a result of package syscall into this package's form.
func errno(n int, err error) (int, syscall.Errno) {
	if err != nil {
		e, ok := err.(syscall.Errno)
		if !ok {
			e = syscall.EIO
		}
		return 0, e
	}
	return n, 0
}
