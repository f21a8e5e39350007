//go:build unix && !linux

package rawsys

import "syscall"

// Read is read(2); on this system through package syscall (see rawsys_linux.go).
func Read(fd int, b []byte) (int, syscall.Errno) { return errno(syscall.Read(fd, b)) }

// Write is write(2); on this system through package syscall.
func Write(fd int, b []byte) (int, syscall.Errno) { return errno(syscall.Write(fd, b)) }

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
