//go:build !unix

package twemproxy

import "syscall"

const rawIOSupported = false

// rawIO is not available: every write goes through the client's writer goroutine, and server
// connections are read through net.Conn.
type rawIO struct{}

func newRawIO(syscall.RawConn) *rawIO { return &rawIO{} }

func (*rawIO) Write([]byte) (int, error) { return 0, nil }

func (*rawIO) Read([]byte) (int, error) { return 0, nil }
