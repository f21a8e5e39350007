package twemproxy

import (
	"net"
	"syscall"
)

// rawIOFor returns a rawIO on conn's raw connection, or nil where raw I/O is not supported or
// conn has no raw connection (the callers then read and write through conn).
func rawIOFor(conn net.Conn) *rawIO {
	if !rawIOSupported {
		return nil
	}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return newRawIO(raw)
		}
	}
	return nil
}
