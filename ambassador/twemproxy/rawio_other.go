//go:build !unix

package twemproxy

import "syscall"

const rawIOSupported = false

// nbWriter is not available: every write goes through the client's writer goroutine.
type nbWriter struct{}

func newNBWriter(syscall.RawConn) *nbWriter { return &nbWriter{} }

func (*nbWriter) Write([]byte) (int, error) { return 0, nil }
