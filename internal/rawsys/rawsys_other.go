//go:build unix && !linux

package rawsys

import "syscall"

// Read is read(2); on this system through package syscall (see rawsys_linux.go).
func Read(fd int, b []byte) (int, syscall.Errno) { return errno(syscall.Read(fd, b)) }

// Pread is pread(2); on this system through package syscall.
func Pread(fd int, b []byte, off int64) (int, syscall.Errno) { return errno(syscall.Pread(fd, b, off)) }

// Write is write(2); on this system through package syscall.
func Write(fd int, b []byte) (int, syscall.Errno) { return errno(syscall.Write(fd, b)) }
