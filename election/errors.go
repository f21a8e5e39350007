package election

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLeader is returned by Resign when the Elector holds no term.
	ErrNotLeader = errors.New("election: not the leader")
	// ErrRunning is returned by Run when the Elector is already running.
	ErrRunning = errors.New("election: already running")
	// ErrLeaseLost is returned by a Backend's Campaign when the candidate's lease ended while it
	// waited (expired, revoked, or its key was deleted).
	ErrLeaseLost = errors.New("election: lease lost")
	// ErrStaleToken is wrapped by the *StaleTokenError a Fence returns for a token lower than the
	// highest it has accepted.
	ErrStaleToken = errors.New("election: stale fencing token")
	// ErrNoToken is returned when a request carries no fencing token, or one that does not parse.
	ErrNoToken = errors.New("election: missing or malformed fencing token")
)

// StaleTokenError reports a fencing token rejected because a higher one was already accepted.
// errors.Is(err, ErrStaleToken) is true for it.
type StaleTokenError struct {
	Token   uint64 // the token that was rejected
	Highest uint64 // the highest token the fence had accepted
}

func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("election: stale fencing token %d (highest accepted %d)", e.Token, e.Highest)
}

// Unwrap makes errors.Is(err, ErrStaleToken) true.
func (e *StaleTokenError) Unwrap() error { return ErrStaleToken }

// UnreleasedError is returned (possibly wrapped) by a Backend's Campaign that failed after taking a
// lease it then could not release (the lock service unreachable): the lease may still hold the
// candidate's place in line (etcd restores leases with a fresh TTL when it restarts), and calling
// Lease.Release again tries again. The Elector does so in the background, as for a term whose
// Release failed. errors.Is and errors.As see Err through it.
type UnreleasedError struct {
	Err        error // why Campaign failed
	Lease      Lease // the lease Campaign took and could not release
	ReleaseErr error // what Release returned
}

func (e *UnreleasedError) Error() string {
	return fmt.Sprintf("%v (and its lease, token %d, not released: %v)", e.Err, e.Lease.Term().Token, e.ReleaseErr)
}

// Unwrap returns Err.
func (e *UnreleasedError) Unwrap() error { return e.Err }
