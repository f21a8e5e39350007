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

// recLease is a lease that Open found in the file, under the token of an earlier Open.
type recLease struct {
	id uint64
	leaseStamp
	ending bool // an Ack, Nack, Release or Bury ends the lease; set and read with recMu held
}

// memLease returns the Memory token ("<id>.<attempt>") within lease, a token of this queue
// ("<id>.<attempt>@<epoch>", see the package doc), if lease can hold a lease now: when it is the
// token of a lease that Open recovered from the file and that no call has started to end, or when
// it is of this Open's epoch and names no such lease, ending or not (this Open never handed that
// one out, though Memory's token for it is the same). Memory then judges if it does. Else it
// returns ErrLeaseLost at once: memLease never waits for another call.
//
// ends says that the caller ends the lease (Ack, Nack, Release, Bury). For a recovered lease's
// token memLease then marks the lease as ending and returns it, and the caller calls q.ended with it
// once Memory has ended the lease (or found it ended: expired, which leases the item again under the
// next attempt, a token the recovered one never matches). From then on the recovered token holds
// nothing, for Extend neither, and not the item's next lease, which a Release hands out under the
// same attempt and so the same Memory token. Lease forgets the recovered lease as it hands that one
// out (see forgetRecovered), so its holder's token of this Open holds it even before q.ended.
func (q *Queue) memLease(lease string, ends bool) (string, *recLease, error) {
	if strings.HasSuffix(lease, q.suffix) {
		mem := lease[:len(lease)-len(q.suffix)]
		if q.nrecovered.Load() > 0 && q.recoveredHeld(mem) {
			return "", nil, workqueue.ErrLeaseLost
		}
		return mem, nil, nil
	}
	mem, epoch := lease, uint64(0)
	if i := strings.LastIndexByte(lease, '@'); i >= 0 {
		e, err := strconv.ParseUint(lease[i+1:], 10, 64)
		if err != nil {
			return "", nil, workqueue.ErrLeaseLost
		}
		mem, epoch = lease[:i], e
	}
	id, attempt, err := workqueue.ParseLease(mem)
	if err != nil {
		return "", nil, err
	}
	q.recMu.Lock()
	defer q.recMu.Unlock()
	r := q.recovered[id]
	if r == nil || r.leaseStamp != (leaseStamp{attempt: attempt, epoch: epoch}) || r.ending {
		return "", nil, workqueue.ErrLeaseLost // not recovered, ended, or another call ends it
	}
	if ends {
		r.ending = true
		return mem, r, nil
	}
	return mem, nil, nil
}

// ended forgets r, a recovered lease that memLease marked as ending, once Memory has ended it
// (unless Lease forgot it first).
func (q *Queue) ended(r *recLease) {
	q.recMu.Lock()
	if q.recovered[r.id] == r {
		q.forgetLocked(r.id)
	}
	q.recMu.Unlock()
}

// forgetLocked forgets the recovered lease of item id. Called with recMu held.
func (q *Queue) forgetLocked(id uint64) {
	delete(q.recovered, id)
	q.nrecovered.Store(int64(len(q.recovered)))
}

// forgetRecovered is called by Lease with the Memory token mem of a lease it is about to hand out:
// a recovered lease of that item has ended in Memory (Memory hands out an item only once its lease
// ended: by its deadline, or by a call that is still ending it), and is forgotten now, before the
// new holder has its token, which after a Release is the same Memory token. Its own token then
// gets ErrLeaseLost from memLease.
func (q *Queue) forgetRecovered(mem string) {
	id, _, err := workqueue.ParseLease(mem)
	if err != nil {
		return
	}
	q.recMu.Lock()
	if q.recovered[id] != nil {
		q.forgetLocked(id)
	}
	q.recMu.Unlock()
}

// forgetRemoved forgets the recovered leases of the items that changes remove (acked or buried).
// Memory makes such a change before it hands it to the journal, and never leases the item again,
// which is when Lease would forget the lease: an item buried for its attempts when its recovered
// lease ran out would keep it for good, and every token of this Open would be checked under recMu.
func (q *Queue) forgetRemoved(changes []workqueue.Change) {
	if q.nrecovered.Load() == 0 {
		return
	}
	q.recMu.Lock()
	for _, c := range changes {
		if (c.Op == workqueue.OpDelete || c.Op == workqueue.OpBury) && q.recovered[c.Record.ID] != nil {
			q.forgetLocked(c.Record.ID)
		}
	}
	q.recMu.Unlock()
}

// recoveredHeld reports whether mem, the Memory token within a token of this Open, names a
// recovered lease that Lease has not forgotten (ending or not), which this Open cannot have
// handed out.
func (q *Queue) recoveredHeld(mem string) bool {
	id, attempt, err := workqueue.ParseLease(mem)
	if err != nil {
		return false // Memory refuses it
	}
	q.recMu.Lock()
	r := q.recovered[id]
	q.recMu.Unlock()
	return r != nil && r.attempt == attempt
}

// end runs do, the Memory call that ends the lease a token names, with its Memory token.
func (q *Queue) end(lease string, do func(mem string) error) error {
	mem, r, err := q.memLease(lease, true)
	if err != nil {
		return err
	}
	err = do(mem)
	if r != nil {
		q.ended(r)
	}
	return err
}

// Lease implements workqueue.Queue (see Memory.Lease); the token names this Open. A lease recovered
// from the file for the item has ended, and is forgotten: its token holds nothing from now on.
func (q *Queue) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Memory.Lease(ctx)
	if err != nil {
		return nil, err
	}
	if q.nrecovered.Load() > 0 {
		q.forgetRecovered(it.Lease)
	}
	it.Lease += q.suffix
	return it, nil
}

// LeaseBatch implements workqueue.Batcher (see Memory.LeaseBatch); the tokens name this Open, which
// costs one allocation per item.
func (q *Queue) LeaseBatch(ctx context.Context, dst []workqueue.Item) (int, error) {
	n, err := q.Memory.LeaseBatch(ctx, dst)
	rec := q.nrecovered.Load() > 0
	for i := range dst[:n] {
		if rec {
			q.forgetRecovered(dst[i].Lease)
		}
		dst[i].Lease += q.suffix
	}
	return n, err
}

// Ack implements workqueue.Queue.
func (q *Queue) Ack(ctx context.Context, lease string) error {
	return q.end(lease, func(mem string) error { return q.Memory.Ack(ctx, mem) })
}

// AckBatch implements workqueue.Batcher.
func (q *Queue) AckBatch(ctx context.Context, leases []string) error {
	var buf [64]string
	mem := buf[:0]
	if len(leases) > len(buf) {
		mem = make([]string, 0, len(leases))
	}
	mem = mem[:len(leases)]
	var recs []*recLease
	for i, l := range leases {
		// A token that holds no lease stays "": Memory gives it ErrLeaseLost in its place.
		var r *recLease
		mem[i], r, _ = q.memLease(l, true)
		if r != nil {
			recs = append(recs, r)
		}
	}
	err := q.Memory.AckBatch(ctx, mem)
	for _, r := range recs {
		q.ended(r)
	}
	return err
}

// Nack implements workqueue.Queue.
func (q *Queue) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return q.Memory.Nack(ctx, lease, delay) // ErrInvalid, and the lease goes on
	}
	return q.end(lease, func(mem string) error { return q.Memory.Nack(ctx, mem, delay) })
}

// Release gives a leased item back at once without counting the attempt (see Memory.Release).
func (q *Queue) Release(ctx context.Context, lease string) error {
	return q.end(lease, func(mem string) error { return q.Memory.Release(ctx, mem) })
}

// Extend implements workqueue.Queue. The new deadline is committed with the next commit (within
// flushDelay): after a crash the lease runs to its last committed deadline, and its holder can
// extend it again, with the same token.
func (q *Queue) Extend(ctx context.Context, lease string) (time.Time, error) {
	mem, _, err := q.memLease(lease, false)
	if err != nil {
		return time.Time{}, err
	}
	return q.Memory.Extend(ctx, mem)
}

// Bury implements workqueue.Queue.
func (q *Queue) Bury(ctx context.Context, lease string, reason string) error {
	return q.end(lease, func(mem string) error { return q.Memory.Bury(ctx, mem, reason) })
}
