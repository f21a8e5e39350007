package sidecar

import "errors"

var (
	// ErrNoGlobs is returned by NewTailer without patterns.
	ErrNoGlobs = errors.New("sidecar: no glob patterns")
	// ErrNilSink is returned by NewTailer without a sink.
	ErrNilSink = errors.New("sidecar: nil sink")
	// ErrBadCheckpoint is returned when a checkpoint file cannot be parsed.
	ErrBadCheckpoint = errors.New("sidecar: bad checkpoint")
	// ErrSinkBehind is returned by a Committer's Rollback when its output is shorter than the mark
	// (someone truncated or replaced it); lines may have been lost outside the Tailer.
	ErrSinkBehind = errors.New("sidecar: sink output shorter than checkpoint mark")
	// ErrBadArchive is returned for an archive with an unsafe or unreadable entry.
	ErrBadArchive = errors.New("sidecar: bad archive")
	// ErrNoAction is returned by NewReloader without an action.
	ErrNoAction = errors.New("sidecar: no reload action")
	// ErrNoProcess is returned when a signal target names no running process.
	ErrNoProcess = errors.New("sidecar: no such process")
	// ErrHookStatus is returned (wrapped) when a webhook answers with a non-2xx status.
	ErrHookStatus = errors.New("sidecar: webhook status")
)

// ConfigError reports an invalid constructor argument.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "sidecar: config " + e.Field + ": " + e.Reason }
