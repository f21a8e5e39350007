//go:build !linux

package sidecar

import (
	"io"
	"os"
)

// pipeOut writes raw lines into a pipe synchronously on Linux only (see pipe_linux.go).
type pipeOut struct{}

func newPipeOut(io.Writer) *pipeOut                                 { return nil }
func (p *pipeOut) write(b []byte, _ *os.File, _ int64) (int, error) { return 0, nil }
func (p *pipeOut) capture(*os.File, int64, int)                     {}
func (p *pipeOut) dropStage()                                       {}
