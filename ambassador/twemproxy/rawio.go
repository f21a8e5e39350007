package twemproxy

import (
	"net"
	"syscall"
)

// nbWriterFor returns a non-blocking writer on conn's raw connection, or nil where raw I/O is not
// supported or conn has no raw connection (the callers then write through conn).
func nbWriterFor(conn net.Conn) *nbWriter {
	if !rawIOSupported {
		return nil
	}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return newNBWriter(raw)
		}
	}
	return nil
}
