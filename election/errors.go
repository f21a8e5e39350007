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
