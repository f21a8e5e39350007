// Package workqueuetest holds the conformance suite that every workqueue.Queue implementation passes.
//
// # Lifecycle
//
// TestQueue builds a fresh queue per subtest with the caller's constructor, which must register the
// queue's Close (and any server it needs) with t.Cleanup.
//
// # Concurrency
//
// Subtests run in parallel, so the constructor must be safe to call from several goroutines.
package workqueuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// Config is what a subtest asks of the queue it gets.
type Config struct {
	LeaseDuration time.Duration // how long a lease lasts without Extend
	MaxAttempts   int           // 0: unlimited
}

// NewQueue builds a fresh, empty queue for one subtest and registers its cleanup with t.
type NewQueue func(t *testing.T, c Config) workqueue.Queue

// Option relaxes the suite for a backend that documents a difference.
type Option func(*suite)

type suite struct {
	noPriority bool
	noKeyTurns bool
}

// WithoutPriority skips the priority-order check (for backends that deliver in add order only).
func WithoutPriority() Option { return func(s *suite) { s.noPriority = true } }

// WithoutKeyTurns skips the check that an add while its key is leased waits for the ack and is then
// delivered, and the check that an add absorbed by a delayed item of its key brings that item
// forward (for backends that absorb such adds into the item as it was first added).
func WithoutKeyTurns() Option { return func(s *suite) { s.noKeyTurns = true } }

const wait = 20 * time.Second // generous: CI machines are shared

// TestQueue runs the conformance suite against newQueue. The batch cases go through
// workqueue.LeaseBatch and workqueue.AckBatch, so they check a backend's own Batcher methods when it
// has them and the one-at-a-time fallback when it has not.
func TestQueue(t *testing.T, newQueue NewQueue, opts ...Option) {
	var s suite
	for _, o := range opts {
		o(&s)
	}
	def := Config{LeaseDuration: 10 * time.Second}
	tests := []struct {
		name string
		skip bool
		cfg  Config
		f    func(t *testing.T, q workqueue.Queue)
	}{
		{"AddLeaseAck", false, def, testAddLeaseAck},
		{"FIFO", false, def, testFIFO},
		{"Priority", s.noPriority, def, testPriority},
		{"LeaseWaitsForAdd", false, def, testLeaseWaitsForAdd},
		{"LeaseHonoursContext", false, def, testLeaseContext},
		{"CloseUnblocksLease", false, def, testClose},
		{"NackRedelivers", false, def, testNack},
		{"LeaseExpires", false, Config{LeaseDuration: time.Second}, testLeaseExpires},
		{"ExtendKeepsLease", false, Config{LeaseDuration: 2 * time.Second}, testExtend},
		{"Delay", false, def, testDelay},
		{"KeyDedup", false, def, testKeyDedup},
		{"KeyTurns", s.noKeyTurns, def, testKeyTurns},
		{"KeyAbsorbedAddHastens", s.noKeyTurns, def, testKeyHastens},
		{"MaxAttemptsDeadLetters", false, Config{LeaseDuration: 10 * time.Second, MaxAttempts: 2}, testMaxAttempts},
		{"Bury", false, def, testBury},
		{"UnknownLease", false, def, testUnknownLease},
		{"LostLease", false, Config{LeaseDuration: lostLease}, testLostLease},
		{"LostLeaseNotHandedOut", false, Config{LeaseDuration: lostLease}, testLostLeaseNotHandedOut},
		{"NegativeDelay", false, def, testNegativeDelay},
		{"Concurrent", false, def, testConcurrent},
		{"Stats", false, def, testStats},
		{"LeaseBatch", false, def, testLeaseBatch},
		{"LeaseBatchWaitsAndHonoursContext", false, def, testLeaseBatchWaits},
		{"LeaseBatchPriority", s.noPriority, def, testLeaseBatchPriority},
		{"LeaseBatchKeyTurns", s.noKeyTurns, def, testLeaseBatchKeyTurns},
		{"LeaseBatchMaxAttempts", false, Config{LeaseDuration: 10 * time.Second, MaxAttempts: 1}, testLeaseBatchMaxAttempts},
		{"AckBatch", false, def, testAckBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("the backend documents that it does not do this")
			}
			t.Parallel()
			tc.f(t, newQueue(t, tc.cfg))
		})
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func add(t *testing.T, q workqueue.Queue, payload string, o workqueue.AddOptions) string {
	t.Helper()
	id, err := q.Add(ctxT(t, wait), []byte(payload), o)
	if err != nil {
		t.Fatalf("Add(%q): %v", payload, err)
	}
	if id == "" {
		t.Fatalf("Add(%q) returned an empty ID", payload)
	}
	return id
}

func lease(t *testing.T, q workqueue.Queue) *workqueue.Item {
	t.Helper()
	it, err := q.Lease(ctxT(t, wait))
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return it
}

// noLease checks that nothing can be leased for d.
func noLease(t *testing.T, q workqueue.Queue, d time.Duration) {
	t.Helper()
	it, err := q.Lease(ctxT(t, d))
	if err == nil {
		t.Fatalf("Lease returned item %s (%q), want none within %v", it.ID, it.Payload, d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lease: %v, want context.DeadlineExceeded", err)
	}
}

func ack(t *testing.T, q workqueue.Queue, it *workqueue.Item) {
	t.Helper()
	if err := q.Ack(ctxT(t, wait), it.Lease); err != nil {
		t.Fatalf("Ack(%s): %v", it.ID, err)
	}
}

func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ok, got := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %v", what, got, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func depthIs(t *testing.T, q workqueue.Queue, want int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("depth %d", want), func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		if err != nil {
			return false, err.Error()
		}
		return s.Depth() == want, fmt.Sprintf("%+v", s)
	})
}

func testAddLeaseAck(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "hello", workqueue.AddOptions{})
	before := time.Now()
	it := lease(t, q)
	if diff := cmp.Diff([]string{id, "hello", "1"}, []string{it.ID, string(it.Payload), fmt.Sprint(it.Attempt)}); diff != "" {
		t.Errorf("leased item (id, payload, attempt) (-want +got):\n%s", diff)
	}
	if it.Lease == "" {
		t.Error("leased item has an empty lease token")
	}
	if !it.Deadline.After(before) {
		t.Errorf("lease deadline %v is not after the lease call %v", it.Deadline, before)
	}
	ack(t, q, it)
	if err := q.Ack(ctxT(t, wait), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("second Ack: %v, want ErrLeaseLost", err)
	}
	depthIs(t, q, 0)
	noLease(t, q, 300*time.Millisecond)
}

func testFIFO(t *testing.T, q workqueue.Queue) {
	var want, got []string
	for i := range 5 {
		p := fmt.Sprintf("item-%d", i)
		want = append(want, p)
		add(t, q, p, workqueue.AddOptions{})
	}
	for range 5 {
		it := lease(t, q)
		got = append(got, string(it.Payload))
		ack(t, q, it)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lease order (-want +got):\n%s", diff)
	}
}

func testPriority(t *testing.T, q workqueue.Queue) {
	add(t, q, "low", workqueue.AddOptions{Priority: -1})
	add(t, q, "normal-1", workqueue.AddOptions{})
	add(t, q, "high", workqueue.AddOptions{Priority: 5})
	add(t, q, "normal-2", workqueue.AddOptions{})
	var got []string
	for range 4 {
		it := lease(t, q)
		got = append(got, string(it.Payload))
		ack(t, q, it)
	}
	if diff := cmp.Diff([]string{"high", "normal-1", "normal-2", "low"}, got); diff != "" {
		t.Errorf("lease order (-want +got):\n%s", diff)
	}
}

func testLeaseWaitsForAdd(t *testing.T, q workqueue.Queue) {
	type res struct {
		it  *workqueue.Item
		err error
	}
	ch := make(chan res, 1)
	go func() {
		it, err := q.Lease(ctxT(t, wait))
		ch <- res{it, err}
	}()
	time.Sleep(100 * time.Millisecond) // not synchronisation: gives the Lease a chance to block first
	id := add(t, q, "late", workqueue.AddOptions{})
	r := <-ch
	if r.err != nil {
		t.Fatalf("Lease: %v", r.err)
	}
	if r.it.ID != id {
		t.Errorf("Lease got %s, want %s", r.it.ID, id)
	}
	ack(t, q, r.it)
}

func testLeaseContext(t *testing.T, q workqueue.Queue) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := q.Lease(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lease on an empty queue: %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 10*time.Second {
		t.Errorf("Lease returned after %v, want about 300ms", el)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := q.Lease(ctx2); !errors.Is(err, context.Canceled) {
		t.Errorf("Lease with a cancelled ctx: %v, want context.Canceled", err)
	}
}

func testClose(t *testing.T, q workqueue.Queue) {
	ch := make(chan error, 1)
	go func() {
		_, err := q.Lease(ctxT(t, wait))
		ch <- err
	}()
	time.Sleep(100 * time.Millisecond) // not synchronisation: gives the Lease a chance to block first
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-ch; !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("blocked Lease after Close: %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := q.Add(ctxT(t, wait), []byte("x"), workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
	if _, err := q.Lease(ctxT(t, wait)); !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Lease after Close: %v, want ErrClosed", err)
	}
	// A closed queue has no counts to report: what it held is in no queue anyone can lease from,
	// and a scrape of its metrics (a Pool's depth gauge) must not report it.
	if s, err := q.Stats(ctxT(t, wait)); !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Stats after Close: %+v, %v, want ErrClosed", s, err)
	}
}

func testNack(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "again", workqueue.AddOptions{})
	it := lease(t, q)
	start := time.Now()
	if err := q.Nack(ctxT(t, wait), it.Lease, 400*time.Millisecond); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	it2 := lease(t, q)
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Errorf("nacked item came back after %v, want >= 400ms", el)
	}
	if diff := cmp.Diff([]string{id, "again", "2"}, []string{it2.ID, string(it2.Payload), fmt.Sprint(it2.Attempt)}); diff != "" {
		t.Errorf("redelivered item (id, payload, attempt) (-want +got):\n%s", diff)
	}
	if err := q.Ack(ctxT(t, wait), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack with the nacked lease: %v, want ErrLeaseLost", err)
	}
	ack(t, q, it2)
	depthIs(t, q, 0)
}

func testLeaseExpires(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "crash", workqueue.AddOptions{})
	it := lease(t, q)
	it2 := lease(t, q) // comes back when the first lease (1s) expires
	if diff := cmp.Diff([]string{id, "2"}, []string{it2.ID, fmt.Sprint(it2.Attempt)}); diff != "" {
		t.Errorf("redelivered item (id, attempt) (-want +got):\n%s", diff)
	}
	if it2.Lease == it.Lease {
		t.Errorf("the second lease reuses the first's token %q", it.Lease)
	}
	if err := q.Ack(ctxT(t, wait), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack with the expired lease: %v, want ErrLeaseLost", err)
	}
	ack(t, q, it2)
	depthIs(t, q, 0)
}

func testExtend(t *testing.T, q workqueue.Queue) {
	add(t, q, "long", workqueue.AddOptions{})
	it := lease(t, q)
	// Another leaser must see nothing while the holder extends its 2s lease for 3.5s.
	ch := make(chan error, 1)
	go func() {
		got, err := q.Lease(ctxT(t, 3500*time.Millisecond))
		if err == nil {
			err = fmt.Errorf("leased %s (attempt %d) while it was extended", got.ID, got.Attempt)
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
		ch <- err
	}()
	last := it.Deadline
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); {
		time.Sleep(250 * time.Millisecond)
		d, err := q.Extend(ctxT(t, wait), it.Lease)
		if err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if d.Before(last) {
			t.Errorf("Extend moved the deadline back from %v to %v", last, d)
		}
		last = d
	}
	if err := <-ch; err != nil {
		t.Error(err)
	}
	ack(t, q, it)
}

func testDelay(t *testing.T, q workqueue.Queue) {
	start := time.Now()
	id := add(t, q, "later", workqueue.AddOptions{Delay: 800 * time.Millisecond})
	it := lease(t, q)
	if el := time.Since(start); el < 750*time.Millisecond {
		t.Errorf("delayed item leased after %v, want >= 800ms", el)
	}
	if diff := cmp.Diff([]string{id, "1"}, []string{it.ID, fmt.Sprint(it.Attempt)}); diff != "" {
		t.Errorf("delayed item (id, attempt) (-want +got):\n%s", diff)
	}
	ack(t, q, it)
}

func testKeyDedup(t *testing.T, q workqueue.Queue) {
	id1 := add(t, q, "v1", workqueue.AddOptions{Key: "obj/a"})
	id2 := add(t, q, "v2", workqueue.AddOptions{Key: "obj/a"})
	if id1 != id2 {
		t.Errorf("second add of a waiting key got ID %s, want %s", id2, id1)
	}
	other := add(t, q, "b", workqueue.AddOptions{Key: "obj/b"})
	if other == id1 {
		t.Errorf("another key got the same ID %s", other)
	}
	got := map[string]string{}
	for range 2 {
		it := lease(t, q)
		got[it.Key] = string(it.Payload)
		ack(t, q, it)
	}
	if diff := cmp.Diff(map[string]string{"obj/a": "v1", "obj/b": "b"}, got); diff != "" {
		t.Errorf("leased items by key (-want +got):\n%s", diff)
	}
	noLease(t, q, 300*time.Millisecond)
	// Once acked, the key is free again.
	id3 := add(t, q, "v3", workqueue.AddOptions{Key: "obj/a"})
	if id3 == id1 {
		t.Errorf("add after the ack got the old ID %s", id1)
	}
	it := lease(t, q)
	if string(it.Payload) != "v3" {
		t.Errorf("leased %q, want v3", it.Payload)
	}
	ack(t, q, it)
}

// testKeyHastens: an add absorbed by a delayed item of its key makes the item ready no later than the
// add asked, as client-go's Add after AddAfter processes the key now.
func testKeyHastens(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "v1", workqueue.AddOptions{Key: "now", Delay: time.Hour})
	if id2 := add(t, q, "v2", workqueue.AddOptions{Key: "now"}); id2 != id {
		t.Fatalf("second add of the waiting key got ID %s, want %s", id2, id)
	}
	it := lease(t, q)
	if diff := cmp.Diff([]string{id, "v1"}, []string{it.ID, string(it.Payload)}); diff != "" {
		t.Errorf("item after an undelayed add of its key (-want +got):\n%s", diff)
	}
	ack(t, q, it)

	start := time.Now()
	id = add(t, q, "w1", workqueue.AddOptions{Key: "soon", Delay: time.Hour})
	add(t, q, "w2", workqueue.AddOptions{Key: "soon", Delay: 500 * time.Millisecond})
	add(t, q, "w3", workqueue.AddOptions{Key: "soon", Delay: 2 * time.Hour}) // a later one moves nothing
	it = lease(t, q)
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("item leased after %v, before the 500ms the second add asked", el)
	}
	if diff := cmp.Diff([]string{id, "w1"}, []string{it.ID, string(it.Payload)}); diff != "" {
		t.Errorf("item after a shorter delay of its key (-want +got):\n%s", diff)
	}
	ack(t, q, it)
	noLease(t, q, 300*time.Millisecond)
}

func testKeyTurns(t *testing.T, q workqueue.Queue) {
	add(t, q, "v1", workqueue.AddOptions{Key: "k"})
	first := lease(t, q)
	id2 := add(t, q, "v2", workqueue.AddOptions{Key: "k"})
	if id2 == first.ID {
		t.Fatalf("add while the key is leased was absorbed into the leased item %s", id2)
	}
	if id3 := add(t, q, "v3", workqueue.AddOptions{Key: "k"}); id3 != id2 {
		t.Errorf("third add got %s, want the waiting %s", id3, id2)
	}
	noLease(t, q, 300*time.Millisecond) // k is leased: its next item waits
	ack(t, q, first)
	it := lease(t, q)
	if diff := cmp.Diff([]string{id2, "v2"}, []string{it.ID, string(it.Payload)}); diff != "" {
		t.Errorf("item after the ack (-want +got):\n%s", diff)
	}
	ack(t, q, it)
}

func testMaxAttempts(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "poison", workqueue.AddOptions{})
	for attempt := 1; attempt <= 2; attempt++ {
		it := lease(t, q)
		if it.Attempt != attempt {
			t.Fatalf("attempt %d, want %d", it.Attempt, attempt)
		}
		if err := q.Nack(ctxT(t, wait), it.Lease, 0); err != nil {
			t.Fatalf("Nack: %v", err)
		}
	}
	noLease(t, q, 500*time.Millisecond)
	eventually(t, "one dead letter", func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		if err != nil {
			return false, err.Error()
		}
		return s.Dead == 1 && s.Depth() == 0, fmt.Sprintf("%+v", s)
	})
	dead, err := q.Dead(ctxT(t, wait), 10)
	if err != nil {
		t.Fatalf("Dead: %v", err)
	}
	if len(dead) != 1 {
		t.Fatalf("Dead returned %d items, want 1", len(dead))
	}
	if diff := cmp.Diff([]string{id, "poison", "2"}, []string{dead[0].ID, string(dead[0].Payload), fmt.Sprint(dead[0].Attempts)}); diff != "" {
		t.Errorf("dead item (id, payload, attempts) (-want +got):\n%s", diff)
	}
}

func testBury(t *testing.T, q workqueue.Queue) {
	id := add(t, q, "bad", workqueue.AddOptions{})
	it := lease(t, q)
	if err := q.Bury(ctxT(t, wait), it.Lease, "unparseable"); err != nil {
		t.Fatalf("Bury: %v", err)
	}
	if err := q.Ack(ctxT(t, wait), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack after Bury: %v, want ErrLeaseLost", err)
	}
	var dead []workqueue.DeadItem
	eventually(t, "one dead letter", func() (bool, string) {
		var err error
		dead, err = q.Dead(ctxT(t, wait), 10)
		return err == nil && len(dead) == 1, fmt.Sprintf("%d dead (err %v)", len(dead), err)
	})
	if diff := cmp.Diff([]string{id, "bad", "unparseable", "1"}, []string{dead[0].ID, string(dead[0].Payload), dead[0].Reason, fmt.Sprint(dead[0].Attempts)}); diff != "" {
		t.Errorf("dead item (id, payload, reason, attempts) (-want +got):\n%s", diff)
	}
	depthIs(t, q, 0)
}

// testUnknownLease: a token the queue did not hand out, empty or malformed or unknown, gets
// ErrLeaseLost from Ack, Nack, Extend and Bury (as workqueue.ErrLeaseLost says every backend
// does), and so do tokens made from a live one by adding or cutting a character, which leave that
// lease as it was.
func testUnknownLease(t *testing.T, q workqueue.Queue) {
	ctx := ctxT(t, wait)
	add(t, q, "held", workqueue.AddOptions{})
	it := lease(t, q)
	for _, tok := range []string{"", "nonsense", "999999.1", "1.0", "1.-1", it.Lease + "0", it.Lease + "x", "x" + it.Lease, it.Lease[:len(it.Lease)-1]} {
		if err := q.Ack(ctx, tok); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Ack(%q): %v, want ErrLeaseLost", tok, err)
		}
		if err := q.Nack(ctx, tok, 0); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Nack(%q): %v, want ErrLeaseLost", tok, err)
		}
		if _, err := q.Extend(ctx, tok); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Extend(%q): %v, want ErrLeaseLost", tok, err)
		}
		if err := q.Bury(ctx, tok, "x"); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Bury(%q): %v, want ErrLeaseLost", tok, err)
		}
	}
	ack(t, q, it)
	depthIs(t, q, 0)
}

// lostLease is the lease of the LostLease cases.
const lostLease = time.Second

// lostLeaseCalls are the calls a holder makes with its lease, each with lease.
func lostLeaseCalls(ctx context.Context, q workqueue.Queue, lease string) []struct {
	name string
	call func() error
} {
	return []struct {
		name string
		call func() error
	}{
		{"Nack", func() error { return q.Nack(ctx, lease, 0) }},
		{"Extend", func() error { _, err := q.Extend(ctx, lease); return err }},
		{"Bury", func() error { return q.Bury(ctx, lease, "lost") }},
		{"Ack", func() error { return q.Ack(ctx, lease) }},
	}
}

// leaseAgain leases the item of lost again, once lost ran out, and fails the test unless it is
// lost's item under a new lease.
func leaseAgain(t *testing.T, q workqueue.Queue, lost *workqueue.Item) *workqueue.Item {
	t.Helper()
	it := lease(t, q)
	if it.ID != lost.ID || it.Lease == lost.Lease {
		t.Fatalf("lease %s/%q after item %s/%q's ran out: want the same item under a new lease", it.ID, it.Lease, lost.ID, lost.Lease)
	}
	return it
}

// emptyIs waits until q's Stats are all zero: nothing ready, delayed, leased or dead.
func emptyIs(t *testing.T, q workqueue.Queue) {
	t.Helper()
	eventually(t, "an empty queue (nothing buried or retried)", func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		if err != nil {
			return false, err.Error()
		}
		return s == workqueue.Stats{}, fmt.Sprintf("%+v", s)
	})
}

// testLostLease: a lease that ran out and whose item another Lease took gets ErrLeaseLost from
// Nack, Extend, Bury and Ack; none of them touches the item, whose new lease acks, and which ends
// there (nothing retried or buried).
func testLostLease(t *testing.T, q workqueue.Queue) {
	add(t, q, "x", workqueue.AddOptions{})
	lost := lease(t, q)
	held := leaseAgain(t, q, lost) // once the first lease (lostLease) ran out
	for _, op := range lostLeaseCalls(ctxT(t, wait), q, lost.Lease) {
		if err := op.call(); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("%s of the lost lease: %v, want ErrLeaseLost", op.name, err)
		}
	}
	ack(t, q, held)
	emptyIs(t, q)
}

// testLostLeaseNotHandedOut: a lease that ran out with its item not handed out again gets
// ErrLeaseLost from Nack, Extend and Bury, which leave the item as it was; its Ack, made last,
// either gets ErrLeaseLost too, and the item's next lease acks, or ends the item (a Memory takes a
// late ack until it hands the item out again; see workqueue.Memory.Ack).
func testLostLeaseNotHandedOut(t *testing.T, q workqueue.Queue) {
	add(t, q, "x", workqueue.AddOptions{})
	lost := lease(t, q)
	time.Sleep(lostLease + lostLease/2) // the lease runs out; nobody leases the item meanwhile
	acked := false
	for _, op := range lostLeaseCalls(ctxT(t, wait), q, lost.Lease) {
		err := op.call()
		if op.name == "Ack" && err == nil {
			acked = true
			continue
		}
		if !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("%s of the lease that ran out: %v, want ErrLeaseLost", op.name, err)
		}
	}
	if !acked {
		ack(t, q, leaseAgain(t, q, lost))
	}
	emptyIs(t, q)
}

// testNegativeDelay: a negative delay is ErrInvalid, from Add (which adds nothing) and from Nack
// (which leaves the lease held), as workqueue.ErrInvalid says every backend does.
func testNegativeDelay(t *testing.T, q workqueue.Queue) {
	ctx := ctxT(t, wait)
	if _, err := q.Add(ctx, []byte("early"), workqueue.AddOptions{Delay: -time.Second}); !errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("Add with a negative delay: %v, want ErrInvalid", err)
	}
	depthIs(t, q, 0)
	add(t, q, "x", workqueue.AddOptions{})
	it := lease(t, q)
	if err := q.Nack(ctx, it.Lease, -time.Second); !errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("Nack with a negative delay: %v, want ErrInvalid", err)
	}
	ack(t, q, it) // the lease is still held
	depthIs(t, q, 0)
}

func testConcurrent(t *testing.T, q workqueue.Queue) {
	const producers, consumers, each = 4, 4, 50
	ctx := ctxT(t, 2*wait)
	var mu sync.Mutex
	var got []string
	errs := make(chan error, producers+consumers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := q.Add(ctx, fmt.Appendf(nil, "%d-%03d", p, i), workqueue.AddOptions{}); err != nil {
					errs <- fmt.Errorf("add: %w", err)
					return
				}
			}
		}()
	}
	var cg sync.WaitGroup
	for range consumers {
		cg.Add(1)
		go func() {
			defer cg.Done()
			for {
				mu.Lock()
				done := len(got) >= producers*each
				mu.Unlock()
				if done {
					return
				}
				lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				it, err := q.Lease(lctx)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("lease: %w", err)
					return
				}
				if err := q.Ack(ctx, it.Lease); err != nil {
					errs <- fmt.Errorf("ack: %w", err)
					return
				}
				mu.Lock()
				got = append(got, string(bytes.Clone(it.Payload)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for p := range producers {
		for i := range each {
			want = append(want, fmt.Sprintf("%d-%03d", p, i))
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("processed payloads (-want +got):\n%s", diff)
	}
	depthIs(t, q, 0)
}

func testStats(t *testing.T, q workqueue.Queue) {
	for i := range 3 {
		add(t, q, fmt.Sprint(i), workqueue.AddOptions{})
	}
	depthIs(t, q, 3)
	it := lease(t, q)
	eventually(t, "a leased item", func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		return err == nil && s.Leased >= 1 && s.Depth() == 3, fmt.Sprintf("%+v (err %v)", s, err)
	})
	ack(t, q, it)
	depthIs(t, q, 2)
}

// leaseBatch leases through workqueue.LeaseBatch into a batch of size max and checks its shape.
func leaseBatch(t *testing.T, q workqueue.Queue, max int) []workqueue.Item {
	t.Helper()
	dst := make([]workqueue.Item, max)
	n, err := workqueue.LeaseBatch(ctxT(t, wait), q, dst)
	if err != nil {
		t.Fatalf("LeaseBatch(%d): %v", max, err)
	}
	if n < 1 || n > max {
		t.Fatalf("LeaseBatch(%d) leased %d items", max, n)
	}
	return dst[:n]
}

// leaseAll leases n items with batches of up to max, in the order they come.
func leaseAll(t *testing.T, q workqueue.Queue, n, max int) []workqueue.Item {
	t.Helper()
	var got []workqueue.Item
	for len(got) < n {
		got = append(got, leaseBatch(t, q, min(max, n-len(got)))...)
	}
	return got
}

func payloads(its []workqueue.Item) []string {
	var s []string
	for _, it := range its {
		s = append(s, string(it.Payload))
	}
	return s
}

func leases(its []workqueue.Item) []string {
	var s []string
	for _, it := range its {
		s = append(s, it.Lease)
	}
	return s
}

func testLeaseBatch(t *testing.T, q workqueue.Queue) {
	if _, err := workqueue.LeaseBatch(ctxT(t, wait), q, nil); !errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("LeaseBatch with an empty batch: %v, want ErrInvalid", err)
	}
	var want, ids []string
	for i := range 5 {
		p := fmt.Sprintf("item-%d", i)
		want = append(want, p)
		ids = append(ids, add(t, q, p, workqueue.AddOptions{}))
	}
	before := time.Now()
	got := leaseAll(t, q, 5, 3)
	if diff := cmp.Diff(want, payloads(got)); diff != "" {
		t.Errorf("lease order (-want +got):\n%s", diff)
	}
	seen := map[string]bool{}
	for i, it := range got {
		if it.ID != ids[i] || it.Attempt != 1 || it.Lease == "" || seen[it.Lease] || !it.Deadline.After(before) {
			t.Errorf("item %d: id %s (want %s), attempt %d, lease %q (seen %v), deadline %v (leased after %v)",
				i, it.ID, ids[i], it.Attempt, it.Lease, seen[it.Lease], it.Deadline, before)
		}
		seen[it.Lease] = true
	}
	eventually(t, "5 leased", func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		return err == nil && s.Leased == 5 && s.Depth() == 5, fmt.Sprintf("%+v (err %v)", s, err)
	})
	noLease(t, q, 300*time.Millisecond)
	// Each item of a batch is a lease of its own: nack one, ack the rest.
	if err := q.Nack(ctxT(t, wait), got[2].Lease, 0); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(append(got[:2:2], got[3:]...))); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
	again := leaseBatch(t, q, 3)
	if diff := cmp.Diff([]string{"item-2", "2"}, []string{string(again[0].Payload), fmt.Sprint(again[0].Attempt)}); len(again) != 1 || diff != "" {
		t.Errorf("after the nack: %d items, first (payload, attempt) (-want +got):\n%s", len(again), diff)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(again)); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
	depthIs(t, q, 0)
}

func testLeaseBatchWaits(t *testing.T, q workqueue.Queue) {
	type res struct {
		its []workqueue.Item
		err error
	}
	ch := make(chan res, 1)
	go func() {
		dst := make([]workqueue.Item, 10)
		n, err := workqueue.LeaseBatch(ctxT(t, wait), q, dst)
		ch <- res{dst[:n], err}
	}()
	time.Sleep(100 * time.Millisecond) // not synchronisation: gives the LeaseBatch a chance to block first
	id := add(t, q, "late", workqueue.AddOptions{})
	r := <-ch
	if r.err != nil {
		t.Fatalf("LeaseBatch: %v", r.err)
	}
	if len(r.its) != 1 || r.its[0].ID != id {
		t.Fatalf("LeaseBatch got %d items (%v), want the one item %s", len(r.its), payloads(r.its), id)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(r.its)); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n, err := workqueue.LeaseBatch(ctx, q, make([]workqueue.Item, 4)); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LeaseBatch on an empty queue: %d items, %v; want 0, context.DeadlineExceeded", n, err)
	}
}

func testLeaseBatchPriority(t *testing.T, q workqueue.Queue) {
	add(t, q, "low", workqueue.AddOptions{Priority: -1})
	add(t, q, "normal-1", workqueue.AddOptions{})
	add(t, q, "high", workqueue.AddOptions{Priority: 5})
	add(t, q, "normal-2", workqueue.AddOptions{})
	got := leaseAll(t, q, 4, 4)
	if diff := cmp.Diff([]string{"high", "normal-1", "normal-2", "low"}, payloads(got)); diff != "" {
		t.Errorf("lease order (-want +got):\n%s", diff)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(got)); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
}

func testLeaseBatchKeyTurns(t *testing.T, q workqueue.Queue) {
	add(t, q, "v1", workqueue.AddOptions{Key: "k"})
	first := leaseBatch(t, q, 4)
	add(t, q, "v2", workqueue.AddOptions{Key: "k"})
	add(t, q, "other", workqueue.AddOptions{})
	// v2 waits for v1's ack: a batch must not hand out two items of one key.
	got := leaseBatch(t, q, 4)
	if diff := cmp.Diff([]string{"other"}, payloads(got)); diff != "" {
		t.Errorf("batch while k is leased (-want +got):\n%s", diff)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(append(first, got...))); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
	got = leaseBatch(t, q, 4)
	if diff := cmp.Diff([]string{"v2"}, payloads(got)); diff != "" {
		t.Errorf("batch after the ack (-want +got):\n%s", diff)
	}
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(got)); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
}

func testLeaseBatchMaxAttempts(t *testing.T, q workqueue.Queue) {
	add(t, q, "poison", workqueue.AddOptions{})
	add(t, q, "fine", workqueue.AddOptions{})
	got := leaseAll(t, q, 2, 2)
	if err := q.Nack(ctxT(t, wait), got[0].Lease, 0); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	// poison used its one attempt: a batch buries it instead of leasing it.
	noLease(t, q, 500*time.Millisecond)
	eventually(t, "one dead letter, one leased", func() (bool, string) {
		s, err := q.Stats(ctxT(t, wait))
		return err == nil && s.Dead == 1 && s.Depth() == 1, fmt.Sprintf("%+v (err %v)", s, err)
	})
	if err := workqueue.AckBatch(ctxT(t, wait), q, leases(got[1:])); err != nil {
		t.Fatalf("AckBatch: %v", err)
	}
	depthIs(t, q, 0)
}

func testAckBatch(t *testing.T, q workqueue.Queue) {
	add(t, q, "a", workqueue.AddOptions{})
	add(t, q, "b", workqueue.AddOptions{})
	got := leaseAll(t, q, 2, 2)
	if err := workqueue.AckBatch(ctxT(t, wait), q, nil); err != nil {
		t.Errorf("AckBatch of nothing: %v", err)
	}
	err := workqueue.AckBatch(ctxT(t, wait), q, []string{got[0].Lease, "nonsense", got[1].Lease, got[0].Lease})
	if !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Fatalf("AckBatch with a bad and a repeated lease: %v, want ErrLeaseLost", err)
	}
	var be *workqueue.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("AckBatch error %T, want *workqueue.BatchError", err)
	}
	var failed []bool
	for _, e := range be.Errs {
		failed = append(failed, e != nil)
	}
	if diff := cmp.Diff([]bool{false, true, false, true}, failed); diff != "" {
		t.Errorf("which leases failed (-want +got):\n%s", diff)
	}
	depthIs(t, q, 0)
	noLease(t, q, 300*time.Millisecond)
}
