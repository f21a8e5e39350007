//go:build !linux

package ambassador

import (
	"net"
	"sync"
)

// tcpLoops are TCPProxy's event loops, Linux-only (see tcploop_linux.go).
type tcpLoops struct{}

func newTCPLoops(*TCPProxy, int) (*tcpLoops, error)      { return nil, nil }
func (*tcpLoops) start(*sync.WaitGroup)                  {}
func (*tcpLoops) stop()                                  {}
func (*tcpLoops) counts() tcpCounts                      { return tcpCounts{} }
func (*tcpLoops) take(client, up net.Conn, l Lease) bool { return false }
