package election

import (
	"context"
	"time"
)

// Term is one period of leadership: who holds it and its fencing token. Tokens strictly increase
// from one term to the next across the whole cluster (for etcd, the creation revision of the
// holder's key), so a resource that remembers the highest token it accepted can reject a write from
// an older term. The zero Term means "no leader".
type Term struct {
	ID    string // the holder's candidate ID
	Token uint64 // the fencing token; 0 only in the zero Term
}

// IsZero reports whether t is the zero Term ("no leader").
func (t Term) IsZero() bool { return t == Term{} }

// Backend is the lock service an Elector campaigns through. Implementations: Memory (in-process),
// election/etcd (an etcd cluster), electiontest.Fake; each passes electiontest.TestBackend.
// Methods are safe for concurrent use.
type Backend interface {
	// Campaign blocks until the candidate id holds the lock, and returns the held Lease. If ctx
	// ends first it returns ctx.Err() (possibly wrapped) and leaves no trace that would block other
	// candidates. Several candidates may campaign at once, also with the same id. A Campaign that
	// fails after taking a lease it cannot release returns an *UnreleasedError carrying it.
	Campaign(ctx context.Context, id string) (Lease, error)
	// Observe calls fn with the current leader at once and then on every change (the zero Term when
	// there is none, or when the backend can no longer confirm the leader it reported), from one
	// goroutine at a time, until ctx ends (then it returns nil) or the backend fails (then it
	// returns the error and the caller may call Observe again).
	Observe(ctx context.Context, fn func(Term)) error
}

// Lease is one held term of a Backend's lock.
type Lease interface {
	// Term returns the term this lease holds.
	Term() Term
	// Lost is closed when the backend knows the lease has ended (expired, revoked, key deleted,
	// renewal failed for longer than the TTL). It is closed by Release too.
	Lost() <-chan struct{}
	// ValidUntil returns the instant, on the local monotonic clock, up to which the lease is known
	// to be held: the send time of the last renewal the backend confirmed plus the TTL it granted.
	// The zero time means the lease has no expiry (in-process backends). It moves forward as
	// renewals are confirmed.
	ValidUntil() time.Time
	// Release gives the lease up so another candidate can take over at once. It is idempotent and
	// returns after the lease's own goroutines have exited; an error means the backend could not
	// be told, and the lease will end by itself when its TTL runs out, unless a later Release
	// succeeds first (calling Release again after an error tries again; the Elector does so before
	// it campaigns again).
	Release(ctx context.Context) error
}
