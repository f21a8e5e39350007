//go:build !linux

package ambassador

import (
	"context"
	"sync"
)

// loopsSupported reports whether this platform has event loops (see loop_linux.go).
const loopsSupported = false

type loops struct{}

type msgKind uint8

const (
	msgCloseIdle msgKind = iota
	msgCloseAll
)

func newLoops(*HTTPProxy, int, context.Context) (*loops, error) { return nil, nil }
func (*loops) start(*sync.WaitGroup)                            {}
func (*loops) take(any) bool                                    { return false }
func (*loops) broadcast(msgKind)                                {}

// open reports whether uc's endpoint has not closed it; here it cannot tell without waiting.
func (*upConn) open() bool { return true }
