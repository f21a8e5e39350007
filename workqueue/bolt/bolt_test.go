package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
	"github.com/podblocks/podblocks/workqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openT opens the queue at path, closed when the test ends.
func openT(t *testing.T, path string, opts ...bolt.Option) *bolt.Queue {
	t.Helper()
	q, err := bolt.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func newBolt(t *testing.T, c workqueuetest.Config) workqueue.Queue {
	return openT(t, filepath.Join(t.TempDir(), "q.db"), bolt.WithLeaseDuration(c.LeaseDuration), bolt.WithMaxAttempts(c.MaxAttempts))
}

func TestConformance(t *testing.T) { workqueuetest.TestQueue(t, newBolt) }

func TestConformanceAsyncAck(t *testing.T) {
	workqueuetest.TestQueue(t, func(t *testing.T, c workqueuetest.Config) workqueue.Queue {
		return openT(t, filepath.Join(t.TempDir(), "q.db"), bolt.WithLeaseDuration(c.LeaseDuration), bolt.WithMaxAttempts(c.MaxAttempts), bolt.WithAsyncAck())
	})
}

// TestReopen checks that items, leases, attempts, keys and dead letters survive closing and reopening.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := q.Add(ctx, fmt.Appendf(nil, "p%d", i), workqueue.AddOptions{Key: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := q.Lease(ctx) // p0: acked
	b, _ := q.Lease(ctx) // p1: leased when closed, comes back with attempt 2
	c, _ := q.Lease(ctx) // p2: buried
	if err := q.Ack(ctx, a.Lease); err != nil {
		t.Fatal(err)
	}
	if err := q.Bury(ctx, c.Lease, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q, err = bolt.Open(context.Background(), path, bolt.WithLeaseDuration(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// The lease taken before the restart is still held until it expires.
	if _, err := q.Extend(ctx, b.Lease); err != nil {
		t.Fatalf("Extend of a lease taken before the restart: %v", err)
	}
	got := map[string]int{}
	for range 3 {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		it, err := q.Lease(lctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got[string(it.Payload)] = it.Attempt
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(map[string]int{"p1": 2, "p3": 1, "p4": 1}, got); diff != "" {
		t.Errorf("items after reopen: payload -> attempt (-want +got):\n%s", diff)
	}
	dead, _ := q.Dead(ctx, 10)
	var reasons []string
	for _, d := range dead {
		reasons = append(reasons, string(d.Payload)+":"+d.Reason)
	}
	sort.Strings(reasons)
	if diff := cmp.Diff([]string{"p2:bad"}, reasons); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	// IDs are never reused after a restart.
	id, err := q.Add(ctx, []byte("new"), workqueue.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id != "6" {
		t.Errorf("new item ID %s, want 6", id)
	}
}

// TestReleaseSurvivesReopen: Release journals the uncounted attempt, so after a restart the item
// is leased with the attempt number it had before the released lease.
func TestReleaseSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Release(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	it, err = q.Lease(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.Attempt != 1 {
		t.Fatalf("attempt %d after a release and a restart, want 1", it.Attempt)
	}
}

// TestLongKeySurvivesReopen: the queue sets no limit of its own on a key (see the package doc's
// Limits): one longer than jetstream's and the HTTP API's 2048 bytes, and than bbolt's own
// MaxKeySize (the key lives in its item's record, a bbolt value, not a bbolt key), is kept byte
// for byte across a reopen, and still deduplicates.
func TestLongKeySurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	key := strings.Repeat("k\x00\xff", 40000/3+1)
	q, err := bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{Key: key})
	if err != nil {
		t.Fatalf("Add with a key of %d bytes: %v", len(key), err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path)
	if again, err := q.Add(ctx, []byte("y"), workqueue.AddOptions{Key: key}); err != nil || again != id {
		t.Errorf("Add with the key again after reopen: %q, %v; want the waiting item's ID %q", again, err, id)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	it, err := q.Lease(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.Key != key || string(it.Payload) != "x" {
		t.Errorf("item after reopen: key of %d bytes (same: %v), payload %q; want the %d-byte key and \"x\"", len(it.Key), it.Key == key, it.Payload, len(key))
	}
}
