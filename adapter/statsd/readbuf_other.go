//go:build !linux

package statsd

import (
	"fmt"
	"syscall"
)

// forceReadBuffer sets the receive buffer through the connection's SetReadBuffer: only Linux has a
// way past the system's maximum.
func forceReadBuffer(conn syscall.Conn, bytes int) error {
	s, ok := conn.(interface{ SetReadBuffer(int) error })
	if !ok {
		return fmt.Errorf("statsd: %T cannot set its read buffer", conn)
	}
	return s.SetReadBuffer(bytes)
}
