//go:build unix && !linux

package procgroup

import (
	"errors"
	"os"
)

// onlyZombies is false: without /proc, processes that exited cannot be told from running ones.
func onlyZombies(int) bool { return false }

// WaitExited returns errors.ErrUnsupported: waiting for a child without collecting it is done on
// Linux only.
func WaitExited(*os.Process) error { return errors.ErrUnsupported }

// CanWaitExited is false: WaitExited is not supported here.
const CanWaitExited = false
