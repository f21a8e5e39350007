package workqueue

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors that callers branch on.
var (
	// ErrClosed is returned by a queue after Close (or Shutdown) has begun, and by one that can no
	// longer work at all: a workqueue/jetstream queue whose NATS connection is closed (by its
	// owner, or because the client gave up reconnecting) returns errors that wrap it (and
	// nats.ErrConnectionClosed). A Pool or a pipeline stage over such a queue stops with it. A
	// Client returns it only after its own Close (its server's queue closed is ErrUnavailable).
	ErrClosed = errors.New("workqueue: closed")
	// ErrLeaseLost is returned by Ack, Nack, Extend and Bury when the lease token is not one the
	// queue holds: empty, malformed, unknown, of an earlier attempt, or expired (the item may
	// already be leased to someone else). Every backend answers an empty or malformed token so
	// (workqueuetest.TestQueue checks it); a Client's error for one the server calls malformed
	// wraps ErrInvalid as well.
	ErrLeaseLost = errors.New("workqueue: lease not held")
	// ErrInvalid is returned for bad arguments: a negative delay to Add or Nack, a key the queue
	// cannot store (longer than workqueue/jetstream's MaxKeyLen, or than APIMaxKeyLen through the
	// API), a bad option or constructor argument.
	ErrInvalid = errors.New("workqueue: invalid argument")
	// ErrTooLarge is returned by Add for a payload larger than the queue can store (the jetstream
	// backend: one that would not fit in the NATS server's max_payload with the headers of its dead
	// letter, see jetstream.Queue.Add), and by Client's Add when the API answers 413. The API
	// answers it with 413.
	ErrTooLarge = errors.New("workqueue: payload too large")
)

// Queue is an at-least-once work queue. An item is delivered to one lease holder at a time; it is
// delivered again when its lease expires, when it is nacked, or when the process holding the lease
// dies before acking. Handlers must therefore be idempotent: an item may be processed more than once,
// but an item that was added (Add returned nil) is never dropped before it is acked or buried.
//
// Implementations: Memory (this package), workqueue/bolt (durable on one machine), workqueue/jetstream
// (NATS JetStream), and Client (any of them over HTTP). workqueuetest.TestQueue checks them all.
type Queue interface {
	// Add enqueues payload. With a Key, an item that has not been leased yet and has the same key
	// absorbs the add (its ID is returned and no new item is created).
	Add(ctx context.Context, payload []byte, opts AddOptions) (id string, err error)
	// Lease blocks until an item is ready, ctx ends (ctx.Err()), or the queue is closed (ErrClosed).
	// The item is leased until Item.Deadline; Extend pushes the deadline out.
	Lease(ctx context.Context) (*Item, error)
	// Ack removes a leased item for good.
	Ack(ctx context.Context, lease string) error
	// Nack gives a leased item back; it is ready again after delay.
	Nack(ctx context.Context, lease string, delay time.Duration) error
	// Extend renews a lease (a heartbeat) and returns the new deadline.
	Extend(ctx context.Context, lease string) (time.Time, error)
	// Bury moves a leased item to the dead letters with a reason.
	Bury(ctx context.Context, lease string, reason string) error
	// Dead lists up to max dead-lettered items, oldest first.
	Dead(ctx context.Context, max int) ([]DeadItem, error)
	// Stats is a snapshot of the queue's counts. After Close (or once a Shutdown has begun) it
	// returns ErrClosed.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the queue's resources. Blocked Lease calls return ErrClosed. Idempotent.
	Close() error
}

// AddOptions are the optional parts of an Add. The zero value adds a keyless item, ready now, at
// priority 0.
type AddOptions struct {
	// Key deduplicates: while an item with this key waits to be leased, further adds with the key
	// return its ID. Backends that support it (Memory, bolt) also never lease two items with the same
	// key at once, and an add while the key is leased is kept and becomes ready after the ack. The
	// waiting item keeps its payload and priority; in Memory and bolt it becomes ready no later than
	// the absorbed add's Delay asked (as client-go's Add after AddAfter runs the key now), while the
	// jetstream backend keeps the first add's not-before.
	Key string
	// Delay makes the item ready only after this long (not-before).
	Delay time.Duration
	// Priority orders ready items: higher first; equal priorities in add order. The jetstream
	// backend ignores it (stream order).
	Priority int
}

// Item is one leased item.
type Item struct {
	ID       string    // stable across attempts
	Key      string    // "" for keyless items
	Payload  []byte    // as added
	Priority int       // as added
	Attempt  int       // 1 on the first lease, 2 on the second, ...
	Lease    string    // opaque token for Ack, Nack, Extend and Bury
	Deadline time.Time // the lease expires at this time unless extended
}

// DeadItem is an item that was buried, by Bury or because it used up its attempts.
type DeadItem struct {
	ID       string
	Key      string
	Payload  []byte
	Attempts int
	Reason   string
	Time     time.Time
}

// Stats are a queue's counts at one moment.
type Stats struct {
	Ready   int64 `json:"ready"`   // can be leased now
	Delayed int64 `json:"delayed"` // waiting for a delay, a retry backoff, or their key's turn
	Leased  int64 `json:"leased"`  // leased and not yet acked
	Dead    int64 `json:"dead"`    // dead letters
}

// Depth is the number of items not yet acked or buried.
func (s Stats) Depth() int64 { return s.Ready + s.Delayed + s.Leased }

// FormatLease and ParseLease are the lease token format of Memory: "<id>.<attempt>" (workqueue/bolt
// adds "@<epoch>", the run of the file that issued it). A token of an earlier attempt never matches
// the current one.
func FormatLease(id uint64, attempt int) string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(attempt), 10)
	return string(b)
}

// ParseLease parses a token made by FormatLease.
func ParseLease(lease string) (id uint64, attempt int, err error) {
	i := strings.IndexByte(lease, '.')
	if i <= 0 {
		return 0, 0, ErrLeaseLost
	}
	id, ok := parseDigits(lease[:i], math.MaxUint64)
	if !ok {
		return 0, 0, ErrLeaseLost
	}
	a, ok := parseDigits(lease[i+1:], math.MaxInt32)
	if !ok || a == 0 {
		return 0, 0, ErrLeaseLost
	}
	return id, int(a), nil
}

// parseDigits is strconv.ParseUint(s, 10, _) with a maximum, for the hot path of every ack: a
// non-empty string of decimal digits whose value is at most max.
func parseDigits(s string, max uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	if len(s) <= 9 { // at most 999999999: no overflow, and one check of max at the end
		for i := 0; i < len(s); i++ {
			c := uint64(s[i] - '0')
			if c > 9 {
				return 0, false
			}
			n = n*10 + c
		}
		return n, n <= max
	}
	for i := 0; i < len(s); i++ {
		c := uint64(s[i] - '0')
		if c > 9 || n > (max-c)/10 {
			return 0, false
		}
		n = n*10 + c
	}
	return n, true
}

// releaser is a Queue that can give a lease back as if it had not been made: the item is ready
// again at once and the lease's attempt is not counted (Memory, and the bolt queue, which embeds it).
type releaser interface {
	Release(ctx context.Context, lease string) error
}

var _ releaser = (*Memory)(nil)

// releaseLease gives back a lease whose item was not worked on: with the queue's Release where it
// has one (the attempt is not counted), else with a Nack without delay (it is). The HTTP API gives
// back this way an item it leased for a client that was gone before the answer reached it, and a
// stopping Join the items it held at its barrier.
func releaseLease(ctx context.Context, q Queue, lease string) error {
	if rl, ok := q.(releaser); ok {
		return rl.Release(ctx, lease)
	}
	return q.Nack(ctx, lease, 0)
}
