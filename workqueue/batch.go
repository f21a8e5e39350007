package workqueue

import (
	"context"
	"fmt"
	"strings"
)

// Batcher is a Queue that leases and acks several items per call, the way a JetStream pull
// consumer fetches a batch: one clock read and no allocation for the whole batch, and fewer locks
// than per item (Memory: for up to 64 keyless items of its hot path, one claim of the fast lane
// and each lease shard's lock once; see the package doc for its other items). Each item of a batch is leased exactly as Lease leases it (its own token, attempt and
// deadline; one key at a time; priorities first; delays and max attempts as usual), so a batch call
// changes the cost, not the semantics. Memory (and so workqueue/bolt) implements it; the functions
// LeaseBatch and AckBatch serve any Queue, falling back to one item per call.
type Batcher interface {
	Queue
	// LeaseBatch blocks like Lease until at least one item is ready (or ctx ends, ctx.Err(), or the
	// queue closes, ErrClosed), then leases up to len(dst) of the items ready at that moment into
	// dst[:n], in the order Lease would hand them out. It does not wait to fill dst. An empty dst is
	// ErrInvalid.
	LeaseBatch(ctx context.Context, dst []Item) (n int, err error)
	// AckBatch acks every lease it can. It returns nil if all were acked, else a *BatchError whose
	// Errs[i] is the error of leases[i] (nil for those acked); errors.Is sees each of them.
	AckBatch(ctx context.Context, leases []string) error
}

// BatchError is the error of a batch call some of whose items failed. Errs[i] belongs to the i-th
// item of the call and is nil for the items that succeeded.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	var b strings.Builder
	n := 0
	for i, err := range e.Errs {
		if err == nil {
			continue
		}
		if n == 0 {
			fmt.Fprintf(&b, "workqueue: item %d of %d: %v", i, len(e.Errs), err)
		}
		n++
	}
	if n > 1 {
		fmt.Fprintf(&b, " (and %d more)", n-1)
	}
	return b.String()
}

// Unwrap returns the errors of the items that failed, so errors.Is and errors.As see them.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// batchError returns nil when every entry of errs is nil, else a *BatchError holding errs.
func batchError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// LeaseBatch leases up to len(dst) items of q into dst[:n]: with q's own LeaseBatch when q is a
// Batcher, else with one Lease (n is then 1). It blocks until at least one item is leased, as Lease
// does, and returns Lease's errors.
func LeaseBatch(ctx context.Context, q Queue, dst []Item) (int, error) {
	if b, ok := q.(Batcher); ok {
		return b.LeaseBatch(ctx, dst)
	}
	if len(dst) == 0 {
		return 0, errEmptyBatch
	}
	it, err := q.Lease(ctx)
	if err != nil {
		return 0, err
	}
	dst[0] = *it
	return 1, nil
}

// AckBatch acks every lease of leases: with q's own AckBatch when q is a Batcher, else one Ack at a
// time (all of them, also after a failure). It returns nil or a *BatchError, as Batcher.AckBatch.
func AckBatch(ctx context.Context, q Queue, leases []string) error {
	if b, ok := q.(Batcher); ok {
		return b.AckBatch(ctx, leases)
	}
	errs := make([]error, len(leases))
	for i, l := range leases {
		errs[i] = q.Ack(ctx, l)
	}
	return batchError(errs)
}

// errEmptyBatch is LeaseBatch's error for an empty dst.
var errEmptyBatch = fmt.Errorf("%w: empty batch", ErrInvalid)
