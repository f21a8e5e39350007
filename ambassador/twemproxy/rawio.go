package twemproxy

import (
	"net"
	"syscall"
)

// rawConn returns conn's raw connection, or nil if it has none.
func rawConn(conn net.Conn) syscall.RawConn {
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}
