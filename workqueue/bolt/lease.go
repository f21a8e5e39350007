package bolt

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// leaseStamp names one lease: the item's attempt and the epoch of the Open that handed it out.
type leaseStamp struct {
	attempt int
	epoch   uint64
}

func tokenSuffix(epoch uint64) string { return "@" + strconv.FormatUint(epoch, 10) }

// memLease returns the Memory token ("<id>.<attempt>") within lease, a token of this queue
// ("<id>.<attempt>@<epoch>", see the package doc), if lease can hold a lease now: when it is of this
// Open's epoch, or when it is the token of a lease that Open recovered from the file and that has
// not ended since. Memory then judges if it does. Else it returns ErrLeaseLost.
//
// ends says that the caller ends the lease (Ack, Nack, Release, Bury): a recovered lease's token is
// then forgotten before Memory ends the lease, so it never holds the item's next lease, which a
// Release hands out under the same attempt number and so the same Memory token. Forgetting first
// keeps the next holder's token from meeting the old one still remembered; if Memory finds the
// lease not held, it had ended already (expired), and an item that expired is leased again under
// the next attempt, so the old token holds none of its later leases either.
func (q *Queue) memLease(lease string, ends bool) (string, error) {
	if strings.HasSuffix(lease, q.suffix) {
		return lease[:len(lease)-len(q.suffix)], nil
	}
	mem, epoch := lease, uint64(0)
	if i := strings.LastIndexByte(lease, '@'); i >= 0 {
		e, err := strconv.ParseUint(lease[i+1:], 10, 64)
		if err != nil {
			return "", workqueue.ErrLeaseLost
		}
		mem, epoch = lease[:i], e
	}
	id, attempt, err := workqueue.ParseLease(mem)
	if err != nil {
		return "", err
	}
	q.recMu.Lock()
	held, ok := q.recovered[id]
	ok = ok && held == leaseStamp{attempt: attempt, epoch: epoch}
	if ok && ends {
		delete(q.recovered, id)
	}
	q.recMu.Unlock()
	if !ok {
		return "", workqueue.ErrLeaseLost
	}
	return mem, nil
}

// Lease implements workqueue.Queue (see Memory.Lease); the token names this Open.
func (q *Queue) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Memory.Lease(ctx)
	if err != nil {
		return nil, err
	}
	it.Lease += q.suffix
	return it, nil
}

// LeaseBatch implements workqueue.Batcher (see Memory.LeaseBatch); the tokens name this Open, which
// costs one allocation per item.
func (q *Queue) LeaseBatch(ctx context.Context, dst []workqueue.Item) (int, error) {
	n, err := q.Memory.LeaseBatch(ctx, dst)
	for i := range dst[:n] {
		dst[i].Lease += q.suffix
	}
	return n, err
}

// Ack implements workqueue.Queue.
func (q *Queue) Ack(ctx context.Context, lease string) error {
	mem, err := q.memLease(lease, true)
	if err != nil {
		return err
	}
	return q.Memory.Ack(ctx, mem)
}

// AckBatch implements workqueue.Batcher.
func (q *Queue) AckBatch(ctx context.Context, leases []string) error {
	var buf [64]string
	mem := buf[:0]
	if len(leases) > len(buf) {
		mem = make([]string, 0, len(leases))
	}
	mem = mem[:len(leases)]
	for i, l := range leases {
		// A token that holds no lease stays "": Memory gives it ErrLeaseLost in its place.
		mem[i], _ = q.memLease(l, true)
	}
	return q.Memory.AckBatch(ctx, mem)
}

// Nack implements workqueue.Queue.
func (q *Queue) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return q.Memory.Nack(ctx, lease, delay) // ErrInvalid, before memLease forgets a lease that goes on
	}
	mem, err := q.memLease(lease, true)
	if err != nil {
		return err
	}
	return q.Memory.Nack(ctx, mem, delay)
}

// Release gives a leased item back at once without counting the attempt (see Memory.Release).
func (q *Queue) Release(ctx context.Context, lease string) error {
	mem, err := q.memLease(lease, true)
	if err != nil {
		return err
	}
	return q.Memory.Release(ctx, mem)
}

// Extend implements workqueue.Queue. The new deadline is not committed: after a crash the lease
// runs to its last committed deadline.
func (q *Queue) Extend(ctx context.Context, lease string) (time.Time, error) {
	mem, err := q.memLease(lease, false)
	if err != nil {
		return time.Time{}, err
	}
	return q.Memory.Extend(ctx, mem)
}

// Bury implements workqueue.Queue.
func (q *Queue) Bury(ctx context.Context, lease string, reason string) error {
	mem, err := q.memLease(lease, true)
	if err != nil {
		return err
	}
	return q.Memory.Bury(ctx, mem, reason)
}
