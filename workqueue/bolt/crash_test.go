package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// crashCopy copies the file of an open queue to a new file in dir, the way a process crash leaves
// it: what the queue committed so far, nothing that was pending. The queue must be idle or doing at
// most one commit meanwhile (bbolt writes a commit's pages before its meta page, and no page the
// last commit uses is overwritten by the next).
func crashCopy(t *testing.T, path, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// openWithItem opens a queue in a new file with a lease of a minute and adds one item.
func openWithItem(t *testing.T) (q *bolt.Queue, dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "q.db")
	q = openT(t, path, bolt.WithLeaseDuration(time.Minute))
	if _, err := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	return q, dir, path
}

// TestIdleLeaseIsCommitted: a lease on a queue that sees no other call reaches the file on its own
// within a bounded time, so a crash after that finds the item leased until its deadline, under the
// attempt (and token) it was leased with, not ready at once.
func TestIdleLeaseIsCommitted(t *testing.T) {
	ctx := context.Background()
	q, dir, path := openWithItem(t)
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// The lease is due in the file within flushDelay (5ms) plus one fsync; the bound is generous for
	// a loaded machine, and without a flush of its own the lease never gets there on an idle queue.
	const bound = 5 * time.Second
	for i := 0; ; i++ {
		c := openT(t, crashCopy(t, path, dir, fmt.Sprintf("copy%d.db", i)), bolt.WithLeaseDuration(time.Minute))
		st, err := c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Leased == 1 {
			// Held under the same attempt: the holder's token still works on the recovered queue.
			d, err := c.Extend(ctx, it.Lease)
			if err != nil {
				t.Fatalf("Extend of the lease on the recovered copy: %v", err)
			}
			if !d.After(it.Deadline) {
				t.Errorf("extended deadline %v, not after the lease's %v", d, it.Deadline)
			}
			t.Logf("lease in the file after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if st.Ready != 1 {
			t.Fatalf("stats of the recovered copy %+v, want the item leased or ready", st)
		}
		if time.Since(start) > bound {
			t.Fatalf("lease not in the file %v after it was taken: the recovered copy has it ready (%+v)", bound, st)
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLostLeaseTokenNotReused: a lease that a crash lost (taken after the file was last committed)
// is handed out again at once after the restart, but under a token the first holder's never
// matches: the first holder gets ErrLeaseLost, and the new holder keeps its lease.
func TestLostLeaseTokenNotReused(t *testing.T) {
	ctx := context.Background()
	q, dir, path := openWithItem(t)
	// The file as a crash right after the lease, before its commit, leaves it.
	crashed := crashCopy(t, path, dir, "crashed.db")
	first, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c := openT(t, crashed, bolt.WithLeaseDuration(time.Minute))
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	second, err := c.Lease(lctx)
	if err != nil {
		t.Fatalf("Lease of the item whose lease the crash lost: %v", err)
	}
	if second.ID != first.ID || second.Attempt != first.Attempt {
		t.Fatalf("after the crash: item %s attempt %d, want %s attempt %d", second.ID, second.Attempt, first.ID, first.Attempt)
	}
	if second.Lease == first.Lease {
		t.Fatalf("the item is leased again under the lost lease's token %q", first.Lease)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Extend", func() error { _, err := c.Extend(ctx, first.Lease); return err }},
		{"Ack", func() error { return c.Ack(ctx, first.Lease) }},
		{"Nack", func() error { return c.Nack(ctx, first.Lease, 0) }},
		{"Release", func() error { return c.Release(ctx, first.Lease) }},
		{"Bury", func() error { return c.Bury(ctx, first.Lease, "stale") }},
		{"AckBatch", func() error { return c.AckBatch(ctx, []string{first.Lease}) }},
	} {
		if err := op.do(); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("%s with the lost lease's token %q: %v, want ErrLeaseLost", op.name, first.Lease, err)
		}
	}
	if err := c.Ack(ctx, second.Lease); err != nil {
		t.Errorf("Ack by the new holder: %v", err)
	}
}

// TestLeaseTokenAcrossRestarts: a lease that was committed keeps its token across any number of
// restarts until it ends; a token that was never committed matches no lease after a restart, even
// one with the same attempt number taken after a second restart.
func TestLeaseTokenAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "q.db")
	q, err := bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b"} {
		if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := q.Lease(ctx) // committed by Close
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		q, err = bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Extend(ctx, a.Lease); err != nil {
			t.Fatalf("Extend after a restart of a lease committed before it: %v", err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	q = openT(t, path, bolt.WithLeaseDuration(time.Minute))
	crashed := crashCopy(t, path, dir, "crashed.db")
	b, err := q.Lease(ctx) // lost by the crash
	if err != nil {
		t.Fatal(err)
	}
	// The crashed copy restarts twice; b's item is leased again in the second run under b's attempt.
	c, err := bolt.Open(context.Background(), crashed)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, crashed, bolt.WithLeaseDuration(time.Minute))
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b2, err := c.Lease(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if b2.ID != b.ID || b2.Attempt != b.Attempt {
		t.Fatalf("after the crash: item %s attempt %d, want %s attempt %d", b2.ID, b2.Attempt, b.ID, b.Attempt)
	}
	if err := c.Ack(ctx, b.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack with the lost lease's token %q: %v, want ErrLeaseLost", b.Lease, err)
	}
	if err := c.Ack(ctx, a.Lease); err != nil {
		t.Errorf("Ack of the lease committed three restarts ago: %v", err)
	}
	if err := c.Ack(ctx, b2.Lease); err != nil {
		t.Errorf("Ack by the new holder: %v", err)
	}
}

// TestCloseCommitsLeases: Close right after a lease, or about when its flush fires, commits the lease
// and leaves no goroutine. The flush's timer goroutine ends soon after Close either way, so this does
// not show that Close waits for a running flush: TestCloseWaitsForRunningFlush does.
func TestCloseCommitsLeases(t *testing.T) {
	ctx := context.Background()
	ignore := goleak.IgnoreCurrent()
	path := filepath.Join(t.TempDir(), "q.db")
	for i := range 20 {
		q, err := bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Lease(ctx); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			time.Sleep(5 * time.Millisecond) // let the flush fire about when Close runs
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		goleak.VerifyNone(t, ignore)
	}
	q := openT(t, path)
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leased != 20 || st.Ready != 0 {
		t.Errorf("after 20 leases each closed at once: %+v, want 20 leased", st)
	}
}
