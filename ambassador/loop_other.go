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

// open reports whether uc holds no bytes past its last answer; here it cannot tell, without
// waiting, whether the endpoint has closed the connection or sent more since.
func (uc *upConn) open() bool { return uc.br.Buffered() == 0 }
