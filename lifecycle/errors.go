package lifecycle

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrStartTimeout is reported when a component is not ready within the group's start timeout.
	ErrStartTimeout = errors.New("lifecycle: not ready within the start timeout")
	// ErrStopTimeout is reported when a component does not return within its stop timeout.
	ErrStopTimeout = errors.New("lifecycle: did not stop within the stop timeout")
	// ErrExitedEarly is reported when a component returns nil before the group was asked to stop
	// while it was still starting.
	ErrExitedEarly = errors.New("lifecycle: exited before it was ready")
	// ErrConflict is returned by a Scaler when the object changed under it more times than it retries.
	ErrConflict = errors.New("lifecycle: conflicting update")
	// ErrShed is returned by Shedder.Admit when the work is shed.
	ErrShed = errors.New("lifecycle: shed")
)

// ComponentError names the component an error came from and the phase it happened in.
type ComponentError struct {
	Name  string // the name the component was added under
	Phase string // "restore", "start", "run", "checkpoint" or "stop"
	Err   error
}

func (e *ComponentError) Error() string {
	// This package's errors start with "lifecycle: " too; once is enough.
	return fmt.Sprintf("lifecycle: %s %s: %s", e.Name, e.Phase, strings.TrimPrefix(e.Err.Error(), "lifecycle: "))
}

func (e *ComponentError) Unwrap() error { return e.Err }
