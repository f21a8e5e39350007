package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// recoveredLease leases the item of openWithItem, closes the queue (which commits the lease) and
// opens the file again: the new queue holds the item under the recovered lease.
func recoveredLease(t *testing.T) (*bolt.Queue, *workqueue.Item) {
	t.Helper()
	q, _, path := openWithItem(t)
	it, err := q.Lease(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return openT(t, path, bolt.WithLeaseDuration(time.Minute)), it
}

// TestEndedRecoveredLeaseTokenHoldsNoLaterLease: once a lease recovered from the file ends, its
// token holds no later lease of the item, not even the one a Release hands out under the same
// attempt number.
func TestEndedRecoveredLeaseTokenHoldsNoLaterLease(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name string
		do   func(q *bolt.Queue, lease string) error
	}
	ends := []op{
		{"Release", func(q *bolt.Queue, l string) error { return q.Release(ctx, l) }},
		{"Nack", func(q *bolt.Queue, l string) error { return q.Nack(ctx, l, 0) }},
	}
	uses := []op{
		{"Ack", func(q *bolt.Queue, l string) error { return q.Ack(ctx, l) }},
		{"AckBatch", func(q *bolt.Queue, l string) error { return q.AckBatch(ctx, []string{l}) }},
		{"Extend", func(q *bolt.Queue, l string) error { _, err := q.Extend(ctx, l); return err }},
		{"Nack", func(q *bolt.Queue, l string) error { return q.Nack(ctx, l, 0) }},
		{"Release", func(q *bolt.Queue, l string) error { return q.Release(ctx, l) }},
		{"Bury", func(q *bolt.Queue, l string) error { return q.Bury(ctx, l, "stale") }},
	}
	for _, end := range ends {
		for _, use := range uses {
			t.Run(end.name+"/"+use.name, func(t *testing.T) {
				q, a := recoveredLease(t)
				if err := end.do(q, a.Lease); err != nil {
					t.Fatalf("%s of the recovered lease %q: %v", end.name, a.Lease, err)
				}
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				b, err := q.Lease(lctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := use.do(q, a.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
					t.Errorf("%s with the token %q of the ended lease, while %q holds the item: %v, want ErrLeaseLost", use.name, a.Lease, b.Lease, err)
				}
				if err := q.Ack(ctx, b.Lease); err != nil {
					t.Errorf("Ack by the new holder %q: %v", b.Lease, err)
				}
			})
		}
	}
}

// TestRecoveredLeaseOutlivesRejectedNack: a Nack refused for its negative delay leaves the
// recovered lease to its holder.
func TestRecoveredLeaseOutlivesRejectedNack(t *testing.T) {
	ctx := context.Background()
	q, a := recoveredLease(t)
	if err := q.Nack(ctx, a.Lease, -time.Second); !errors.Is(err, workqueue.ErrInvalid) {
		t.Fatalf("Nack with a negative delay: %v, want ErrInvalid", err)
	}
	if err := q.Ack(ctx, a.Lease); err != nil {
		t.Errorf("Ack of the recovered lease after a refused Nack: %v", err)
	}
}

// TestRecoveredLeasesConcurrently: the holders of many recovered leases extend and end them at the
// same time (run with -race); each ends once, and the queue is empty after.
func TestRecoveredLeasesConcurrently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := bolt.Open(path, bolt.WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var leases []string
	for range n {
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, it.Lease)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, bolt.WithLeaseDuration(time.Minute))
	errs := make(chan error, 4*n)
	var wg sync.WaitGroup
	for i, l := range leases {
		for j := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				switch (i + j) % 4 {
				case 0:
					err = q.Ack(ctx, l)
				case 1:
					err = q.AckBatch(ctx, []string{l})
				case 2:
					err = q.Bury(ctx, l, "done")
				case 3:
					_, err = q.Extend(ctx, l)
					if err == nil {
						return
					}
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	ended := 0
	for err := range errs {
		switch {
		case err == nil:
			ended++
		case !errors.Is(err, workqueue.ErrLeaseLost):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ended != n {
		t.Errorf("%d of the 3 ending calls on each of %d recovered leases succeeded, want one each", ended, n)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leased != 0 || st.Ready != 0 {
		t.Errorf("stats %+v, want every recovered lease ended", st)
	}
}
