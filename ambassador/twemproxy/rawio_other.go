//go:build !unix

package twemproxy

import "syscall"

const rawIOSupported = false

// writeNonblocking is not available: every write goes through the client's writer goroutine.
func writeNonblocking(syscall.RawConn, []byte) (int, error) { return 0, nil }
