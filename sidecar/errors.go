package sidecar

import (
	"errors"
	"fmt"
	"path/filepath"
)

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
	// ErrFetchStatus is returned (wrapped, with the status) by HTTPArchiveSource when the archive's
	// server answers with a status other than 200 (or 304 for an unchanged archive); the sync is
	// retried.
	ErrFetchStatus = errors.New("sidecar: archive fetch: server answered")
	// ErrHTTPSinkStatus is returned (wrapped, with the status) when the HTTPSink's server answers a
	// POST with a status other than 2xx; the batch is retried.
	ErrHTTPSinkStatus = errors.New("sidecar: http sink: server answered")
)

// ConfigError reports an invalid constructor argument.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "sidecar: config " + e.Field + ": " + e.Reason }

// RootInUseError is returned by a Syncer's Run when another Syncer runs on its root, holding the
// root's lock file (see Syncer). Two Syncers on one root would each remove the other's revisions.
type RootInUseError struct {
	Root string
	// Holder is what the lock file says: "pid PID host HOSTNAME since TIME", written by the holder;
	// empty before it wrote it. A holder that may not write the file (see Syncer) leaves what an
	// earlier one wrote.
	Holder string
}

func (e *RootInUseError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "one that has not yet written its name in the lock file"
	}
	return fmt.Sprintf("sidecar: syncer root %s: in use by another Syncer: %s (it holds %s)", e.Root, holder, filepath.Join(e.Root, rootLock))
}
