//go:build !linux

package sidecar

import (
	"context"
	"io"
	"os"
)

// pipeOut writes lines into a pipe on Linux only (see pipe_linux.go).
type pipeOut struct{}

func newPipeOut(io.Writer, bool) *pipeOut                                      { return nil }
func (p *pipeOut) write(context.Context, []byte, *os.File, int64) (int, error) { return 0, nil }
func (p *pipeOut) capture(*os.File, int64, int)                                {}
func (p *pipeOut) dropStage()                                                  {}
