//go:build unix && !linux

package twemproxy

import "syscall"

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket (see sysraw_linux.go).
func sysRead(fd int, b []byte) (int, error) {
	n, err := syscall.Read(fd, b)
	return max(n, 0), err
}

func sysWrite(fd int, b []byte) (int, error) {
	n, err := syscall.Write(fd, b)
	return max(n, 0), err
}
