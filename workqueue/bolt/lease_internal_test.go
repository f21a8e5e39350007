package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// openRecovered adds an item to a new file, leases it for d, closes the queue (which commits the
// lease) and opens the file again, both times with opts: the queue it returns holds the item under
// the recovered lease old ("1.1@1").
func openRecovered(t *testing.T, d time.Duration, opts ...Option) (q *Queue, old string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	opts = append([]Option{WithLeaseDuration(d)}, opts...)
	q1, err := Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q1.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q1.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, it.Lease
}

// TestEndingRecoveredTokenExtendsNothing: while a Release ends a recovered lease (Memory has
// released it, q.ended has not run yet, the steps of end spelled out), an Extend with the
// recovered token gets ErrLeaseLost, before and after the item's next lease, which has the same
// Memory token; the next holder keeps its lease.
func TestEndingRecoveredTokenExtendsNothing(t *testing.T) {
	ctx := context.Background()
	q, old := openRecovered(t, time.Minute)
	mem, r, err := q.memLease(old, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Extend(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend(%q) while a Release ends it: %v, want ErrLeaseLost", old, err)
	}
	if err := q.Memory.Release(ctx, mem); err != nil {
		t.Fatal(err)
	}
	next, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Extend(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend(%q) after the next holder %q leased the item: %v, want ErrLeaseLost", old, next.Lease, err)
	}
	q.ended(r)
	if err := q.Ack(ctx, next.Lease); err != nil {
		t.Errorf("Ack by the next holder %q: %v", next.Lease, err)
	}
}

// TestExpiredRecoveredLeaseIsForgotten: a recovered lease that ran out is forgotten when Lease or
// LeaseBatch hands out its item again, so the tokens of this Open are checked with no lock from
// then on; its token still holds nothing, and the new holder's holds the new lease.
func TestExpiredRecoveredLeaseIsForgotten(t *testing.T) {
	ctx := context.Background()
	for name, lease := range map[string]func(ctx context.Context, q *Queue) (*workqueue.Item, error){
		"Lease": func(ctx context.Context, q *Queue) (*workqueue.Item, error) { return q.Lease(ctx) },
		"LeaseBatch": func(ctx context.Context, q *Queue) (*workqueue.Item, error) {
			dst := make([]workqueue.Item, 4)
			n, err := q.LeaseBatch(ctx, dst)
			if err != nil || n != 1 {
				return nil, fmt.Errorf("LeaseBatch leased %d: %w", n, err)
			}
			return &dst[0], nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			q, old := openRecovered(t, 100*time.Millisecond)
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			it, err := lease(lctx, q) // waits for the recovered lease to run out
			if err != nil {
				t.Fatal(err)
			}
			if n := q.nrecovered.Load(); n != 0 {
				t.Errorf("%d recovered leases left after the only one ran out and its item was leased again", n)
			}
			if _, err := q.Extend(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
				t.Errorf("Extend(%q) of the forgotten lease: %v, want ErrLeaseLost", old, err)
			}
			if err := q.Ack(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
				t.Errorf("Ack(%q) of the forgotten lease: %v, want ErrLeaseLost", old, err)
			}
			if err := q.Ack(ctx, it.Lease); err != nil {
				t.Errorf("Ack by the new holder %q: %v", it.Lease, err)
			}
		})
	}
}

// TestBuriedRecoveredLeaseIsForgotten: a recovered lease that runs out on the item's last attempt
// is forgotten when Memory buries the item instead of leasing it again, so the tokens of this Open
// are checked with no lock from then on; the recovered token holds nothing.
func TestBuriedRecoveredLeaseIsForgotten(t *testing.T) {
	ctx := context.Background()
	q, old := openRecovered(t, 100*time.Millisecond, WithMaxAttempts(1))
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if it, err := q.Lease(lctx); !errors.Is(err, context.DeadlineExceeded) { // buries the item as its lease runs out
		t.Fatalf("Lease: %v, %v; want no item before the deadline", it, err)
	}
	dead, err := q.Dead(ctx, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("Dead: %v, %v; want the one item buried for its attempts", dead, err)
	}
	if n := q.nrecovered.Load(); n != 0 {
		t.Errorf("%d recovered leases left after the only one ran out and its item was buried", n)
	}
	if err := q.Ack(ctx, old); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack(%q) of the buried item's lease: %v, want ErrLeaseLost", old, err)
	}
}
