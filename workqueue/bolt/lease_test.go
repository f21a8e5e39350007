package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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

// recoveredLeases is recoveredLease for n items.
func recoveredLeases(t *testing.T, n int) (*bolt.Queue, []string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
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
	return openT(t, path, bolt.WithLeaseDuration(time.Minute)), leases
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
	const n = 64
	q, leases := recoveredLeases(t, n)
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

// nextEpochAlias is the token of the next Open (the one that recovered lease) for the same Memory
// token: "1.1@2" for "1.1@1", a token that Open never handed out.
func nextEpochAlias(t *testing.T, lease string) string {
	t.Helper()
	at := strings.LastIndexByte(lease, '@')
	epoch, err := strconv.ParseUint(lease[at+1:], 10, 64)
	if err != nil {
		t.Fatalf("token %q: %v", lease, err)
	}
	return lease[:at+1] + strconv.FormatUint(epoch+1, 10)
}

// TestCurrentTokenHoldsNoRecoveredLease: a token with this Open's epoch that this Open never handed
// out ("1.1@2" for the recovered "1.1@1") holds nothing; once the recovered lease is released, the
// same token handed out for the item's next lease holds that one.
func TestCurrentTokenHoldsNoRecoveredLease(t *testing.T) {
	ctx := context.Background()
	q, a := recoveredLease(t)
	alias := nextEpochAlias(t, a.Lease)
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Extend", func() error { _, err := q.Extend(ctx, alias); return err }},
		{"Ack", func() error { return q.Ack(ctx, alias) }},
		{"AckBatch", func() error { return q.AckBatch(ctx, []string{alias}) }},
		{"Nack", func() error { return q.Nack(ctx, alias, 0) }},
		{"Release", func() error { return q.Release(ctx, alias) }},
		{"Bury", func() error { return q.Bury(ctx, alias, "alias") }},
	} {
		if err := op.do(); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("%s with %q, a token never handed out, on the recovered lease %q: %v, want ErrLeaseLost", op.name, alias, a.Lease, err)
		}
	}
	if err := q.Release(ctx, a.Lease); err != nil {
		t.Fatalf("Release of the recovered lease: %v", err)
	}
	b, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Lease != alias {
		t.Fatalf("lease after the Release %q, want %q", b.Lease, alias)
	}
	if err := q.Ack(ctx, b.Lease); err != nil {
		t.Errorf("Ack by the holder of %q: %v", b.Lease, err)
	}
}

// TestMalformedTokens: tokens that are malformed, or name a lease that is not held, never panic
// and never match (ErrLeaseLost or ErrInvalid); the recovered and the current lease survive them.
func TestMalformedTokens(t *testing.T) {
	ctx := context.Background()
	// The current epoch is 2, item 1 has a recovered lease of epoch 1, item 2 one of this Open.
	q, recovered := recoveredLeases(t, 1)
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := recovered[0]
	if old != "1.1@1" || cur.Lease != "2.1@2" {
		t.Fatalf("leases %q and %q, want 1.1@1 and 2.1@2", old, cur.Lease)
	}
	lostOrInvalid := func(err error) bool {
		return errors.Is(err, workqueue.ErrLeaseLost) || errors.Is(err, workqueue.ErrInvalid)
	}
	bad := []string{"", "@", "@1", "@2", "1.1@", "1.1@x", "1.1@99999999999999999999", "1.1@-1", "1.1@+1",
		"1.1@1@1", "1.1@1@2", "2.1@2@2", "2.1@1", "1.2@1", "2.2@2", "1.1@0", "1.1", "2.1", "2.1@3", "1.1@2",
		"1.1@18446744073709551615", "1.1@18446744073709551616", ".1@2", "2.@2", "2.0@2", "2.-1@2", "@@",
		"1.1@ 1", "1.1@1 ", " 1.1@1", "1.1@1\x00", "2.1\x00@2", "99999999999999999999.1@2", "2.99999999999@2"}
	for _, l := range bad {
		for name, err := range map[string]error{
			"Ack":      q.Ack(ctx, l),
			"Extend":   func() error { _, err := q.Extend(ctx, l); return err }(),
			"Nack":     q.Nack(ctx, l, 0),
			"Release":  q.Release(ctx, l),
			"Bury":     q.Bury(ctx, l, "r"),
			"AckBatch": q.AckBatch(ctx, []string{l}),
		} {
			if !lostOrInvalid(err) {
				t.Errorf("%s(%q) = %v, want ErrLeaseLost or ErrInvalid", name, l, err)
			}
		}
	}
	if _, err := q.Extend(ctx, old); err != nil {
		t.Errorf("Extend of the recovered lease: %v", err)
	}
	if _, err := q.Extend(ctx, cur.Lease); err != nil {
		t.Errorf("Extend of the current lease: %v", err)
	}
	// One AckBatch with the recovered lease, a malformed token, the current lease, the recovered
	// lease again and a token of an epoch that never held item 2.
	err = q.AckBatch(ctx, []string{old, "1.1@", cur.Lease, old, "2.1@1"})
	var be *workqueue.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("AckBatch: %v, want a BatchError", err)
	}
	for i, e := range be.Errs {
		if want := i == 1 || i == 3 || i == 4; want != errors.Is(e, workqueue.ErrLeaseLost) {
			t.Errorf("AckBatch token %d: %v, want ErrLeaseLost %v", i, e, want)
		}
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth() != 0 {
		t.Errorf("stats %+v, want both leases acked", st)
	}
}

// TestAckBatchManyTokens: one AckBatch of more than 64 tokens (the wrapper's buffer), leases
// recovered and current, and tokens that hold nothing.
func TestAckBatchManyTokens(t *testing.T) {
	ctx := context.Background()
	q, leases := recoveredLeases(t, 50)
	for range 50 {
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, it.Lease, "junk@"+it.Lease)
	}
	err := q.AckBatch(ctx, leases)
	var be *workqueue.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("AckBatch: %v, want a BatchError", err)
	}
	for i, e := range be.Errs {
		if junk := i >= 50 && (i-50)%2 == 1; (e != nil) != junk {
			t.Errorf("AckBatch token %d %q: %v", i, leases[i], e)
		}
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth() != 0 {
		t.Errorf("stats %+v, want every lease acked", st)
	}
}

// TestReleasedRecoveredLeasesNextHolders: recovered leases released while other goroutines lease
// the items again (under the same tokens but for the epoch) and ack them: every new holder's Ack
// succeeds, even one that comes while the Release is still under way.
func TestReleasedRecoveredLeasesNextHolders(t *testing.T) {
	ctx := context.Background()
	const n = 64
	q, leases := recoveredLeases(t, n)
	var wg sync.WaitGroup
	for _, l := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.Release(ctx, l); err != nil {
				t.Errorf("Release of the recovered lease %q: %v", l, err)
			}
		}()
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	items := make(chan *workqueue.Item)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				it, err := q.Lease(lctx)
				if err != nil {
					return
				}
				select {
				case items <- it:
				case <-lctx.Done():
					return
				}
			}
		}()
	}
	for range n {
		select {
		case it := <-items:
			if err := q.Ack(ctx, it.Lease); err != nil {
				t.Errorf("Ack by the next holder %q: %v", it.Lease, err)
			}
		case <-lctx.Done():
			t.Fatal("released items not leased again")
		}
	}
	cancel()
	wg.Wait()
}

// within runs f and fails the test if it has not returned within 10s.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still blocked after 10s", what)
	}
}

// TestCrossedTokensNeverBlock: an AckBatch with a recovered lease's token and the token of this
// Open for the same Memory token ("1.1@1" and "1.1@2"), alone or crossed with another AckBatch,
// returns at once: the recovered lease is acked and the other token gets ErrLeaseLost; later calls
// with that token get ErrLeaseLost too, at once.
func TestCrossedTokensNeverBlock(t *testing.T) {
	ctx := context.Background()
	lost := func(err error) bool { return errors.Is(err, workqueue.ErrLeaseLost) }
	// batchErrs is the error of each token of an AckBatch.
	batchErrs := func(t *testing.T, n int, err error) []error {
		t.Helper()
		var be *workqueue.BatchError
		if !errors.As(err, &be) || len(be.Errs) != n {
			t.Fatalf("AckBatch: %v, want a BatchError of %d", err, n)
		}
		return be.Errs
	}
	for _, aliasFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("aliasFirst=%v", aliasFirst), func(t *testing.T) {
			q, a := recoveredLease(t)
			alias := nextEpochAlias(t, a.Lease)
			batch, recIdx := []string{a.Lease, alias}, 0
			if aliasFirst {
				batch, recIdx = []string{alias, a.Lease}, 1
			}
			var err error
			within(t, fmt.Sprintf("AckBatch(%q)", batch), func() { err = q.AckBatch(ctx, batch) })
			for i, e := range batchErrs(t, 2, err) {
				if i == recIdx && e != nil || i != recIdx && !lost(e) {
					t.Errorf("AckBatch(%q) token %d: %v", batch, i, e)
				}
			}
			for name, do := range map[string]func() error{
				"Ack":    func() error { return q.Ack(ctx, alias) },
				"Extend": func() error { _, err := q.Extend(ctx, alias); return err },
				"Nack":   func() error { return q.Nack(ctx, alias, 0) },
			} {
				within(t, name+"("+alias+")", func() { err = do() })
				if !lost(err) {
					t.Errorf("%s(%q) after the AckBatch: %v, want ErrLeaseLost", name, alias, err)
				}
			}
		})
	}
	t.Run("two batches", func(t *testing.T) {
		// Each batch ends half of the recovered leases and names the other half under this
		// Open's epoch, which the other batch ends meanwhile.
		const n = 64
		q, leases := recoveredLeases(t, 2*n)
		var a, b []string
		for i := range n {
			a = append(a, leases[i])
			b = append(b, leases[n+i])
		}
		for i := range n {
			a = append(a, nextEpochAlias(t, leases[n+i]))
			b = append(b, nextEpochAlias(t, leases[i]))
		}
		var errA, errB error
		within(t, "crossed AckBatches", func() {
			var wg sync.WaitGroup
			wg.Go(func() { errA = q.AckBatch(ctx, a) })
			wg.Go(func() { errB = q.AckBatch(ctx, b) })
			wg.Wait()
		})
		for _, errs := range [][]error{batchErrs(t, 2*n, errA), batchErrs(t, 2*n, errB)} {
			for i, e := range errs {
				if i < n && e != nil || i >= n && !lost(e) {
					t.Errorf("crossed AckBatch token %d: %v", i, e)
				}
			}
		}
		st, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Depth() != 0 {
			t.Errorf("stats %+v, want every recovered lease acked", st)
		}
	})
}
