//go:build !unix

package shardproc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// errNoJobControl is what Pause and Resume return where processes cannot be stopped and continued
// (no SIGSTOP/SIGCONT, as on Windows).
var errNoJobControl = fmt.Errorf("shardproc: pausing and resuming a process (SIGSTOP/SIGCONT) is not supported on %s: %w",
	runtime.GOOS, errors.ErrUnsupported)

func stopProcess(*os.Process) error { return errNoJobControl }

func continueProcess(*os.Process) error { return errNoJobControl }
