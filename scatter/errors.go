package scatter

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
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
	// ErrBadRequest is matched by a leaf error that blames the request rather than the leaf (see
	// BadRequest): a replica set returns it without trying another replica or counting it
	// against (or for) the replica, and a LeafHandler answers it with 400 and HeaderBadRequest.
	ErrBadRequest = errors.New("scatter: bad request")
)

// BadRequest marks err as the request's fault: the error returned matches ErrBadRequest and err
// with errors.Is, and reads as err.
func BadRequest(err error) error { return &badRequestError{err} }

type badRequestError struct{ err error }

func (e *badRequestError) Error() string   { return e.err.Error() }
func (e *badRequestError) Unwrap() []error { return []error{ErrBadRequest, e.err} }

// ConfigError reports an invalid option value.
type ConfigError struct {
	Field  string // the option, for example "WithCoverage"
	Reason string
}

func (e *ConfigError) Error() string { return "scatter: invalid " + e.Field + ": " + e.Reason }

// CoverageError says how many shards answered when that was too few. It matches ErrShortCoverage
// with errors.Is, and unwraps to the cause as well: the context's error when the deadline or the
// caller ended the fan-out, else the shards' errors (the distinct ones, at most maxCauses plus one
// matching ErrBadRequest, in shard order; several are joined with "; " and each matches with
// errors.Is). Errors are the same when equal, or of one type with one message.
type CoverageError struct {
	Answered, Shards, Required int
	Cause                      error // may be nil
}

// maxCauses caps the distinct leaf errors a CoverageError keeps.
const maxCauses = 8

// leafErrors is several shards' distinct errors.
type leafErrors []error

func (e leafErrors) Error() string {
	var b strings.Builder
	for i, err := range e {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e leafErrors) Unwrap() []error { return e }

// causeOf returns the distinct errors of slots (equal, or of one type and message), at most
// maxCauses and then one more if none of those matches ErrBadRequest and a later one does; nil
// for none.
func causeOf[Resp any](slots []Slot[Resp]) error {
	var (
		errs leafErrors
		msgs []string // msgs[i] is errs[i].Error()
		bad  bool     // an error of errs matches ErrBadRequest
	)
	for i := range slots {
		err := slots[i].Err
		if err == nil || bad && len(errs) >= maxCauses || slices.Contains(errs, err) {
			continue
		}
		isBad := errors.Is(err, ErrBadRequest)
		if len(errs) >= maxCauses && !isBad {
			continue
		}
		msg, t := err.Error(), reflect.TypeOf(err)
		dup := false
		for k, e := range errs {
			if msgs[k] == msg && reflect.TypeOf(e) == t {
				dup = true
				break
			}
		}
		if !dup {
			errs, msgs = append(errs, err), append(msgs, msg)
			bad = bad || isBad
		}
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errs
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
