package statsd

import "syscall"

// forceReadBuffer sets the receive buffer with SO_RCVBUFFORCE, which passes net.core.rmem_max when
// the process has CAP_NET_ADMIN, and falls back to SO_RCVBUF (capped at rmem_max) when it has not.
func forceReadBuffer(conn syscall.Conn, bytes int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, bytes)
		if serr != nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes)
		}
	}); err != nil {
		return err
	}
	return serr
}
