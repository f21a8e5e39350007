//go:build !unix

package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// Attr is nil: without process groups (Windows) the command is started as usual.
func Attr() *syscall.SysProcAttr { return nil }

// Signal sends sig to p itself: without process groups, processes p started are not reached. On
// Windows only os.Kill can be sent.
func Signal(p *os.Process, sig os.Signal) error { return p.Signal(sig) }

// Alive is false: without process groups nothing is known of the processes p started, and p's own
// end is what waiting for it tells.
func Alive(*os.Process) bool { return false }

// WaitExited returns errors.ErrUnsupported: waiting for a child without collecting it is done on
// Linux only.
func WaitExited(*os.Process) error { return errors.ErrUnsupported }

// CanWaitExited is false: WaitExited is not supported here.
const CanWaitExited = false

// InOwnGroup is true: without process groups, Signal sends to p itself.
func InOwnGroup(*os.Process) bool { return true }
