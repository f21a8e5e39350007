package scatter

import (
	"errors"
	"fmt"
)

var (
	// ErrShortCoverage is returned (wrapped in a *CoverageError) when fewer shards answered than the
	// fan-out requires: the quorum when one is set, else one.
	ErrShortCoverage = errors.New("scatter: too few shards answered")
	// ErrCanary is returned when a canary shard failed or did not answer within the canary timeout;
	// the rest of the shards were not asked.
	ErrCanary = errors.New("scatter: canary failed")
	// ErrNoLeaves is returned by New when the leaf list is empty or holds a nil leaf.
	ErrNoLeaves = errors.New("scatter: no leaves")
	// ErrNoReplicas is returned by NewReplicaSet when it is given no replicas or a nil one.
	ErrNoReplicas = errors.New("scatter: no replicas")
)

// ConfigError reports an invalid option value.
type ConfigError struct {
	Field  string // the option, for example "WithCoverage"
	Reason string
}

func (e *ConfigError) Error() string { return "scatter: invalid " + e.Field + ": " + e.Reason }

// CoverageError says how many shards answered when that was too few. It matches ErrShortCoverage
// with errors.Is, and unwraps to the cause (the context's error or the last leaf error) as well.
type CoverageError struct {
	Answered, Shards, Required int
	Cause                      error // may be nil
}

func (e *CoverageError) Error() string {
	s := fmt.Sprintf("scatter: %d of %d shards answered, %d required", e.Answered, e.Shards, e.Required)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns ErrShortCoverage and the cause.
func (e *CoverageError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrShortCoverage}
	}
	return []error{ErrShortCoverage, e.Cause}
}

// LeafError is the error of a fail-fast fan-out: the first shard that failed and its error.
type LeafError struct {
	Shard int
	Err   error
}

func (e *LeafError) Error() string { return fmt.Sprintf("scatter: shard %d: %v", e.Shard, e.Err) }

// Unwrap returns the leaf's error.
func (e *LeafError) Unwrap() error { return e.Err }

// PanicError is a leaf's panic, recovered and reported as that leaf's error.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("scatter: leaf panicked: %v", e.Value) }
