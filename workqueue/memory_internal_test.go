package workqueue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Directed interleavings found in review; the hooks put the racing call exactly in the window.

// An Add landing while a woken Lease holds the lock (after it emptied the inbox, before it stops
// counting as spinning) wakes nobody itself: the Lease must then wake another parked Lease for it.
func TestMemoryAddDuringLeaseWakesAnotherLease(t *testing.T) {
	q, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Item, 2)
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			if it, err := q.Lease(ctx); err == nil {
				got <- it
			}
		}()
	}
	for q.nparked.Load() < 2 {
		time.Sleep(100 * time.Microsecond)
	}
	var once atomic.Bool
	testHookLeased = func() {
		if once.CompareAndSwap(false, true) {
			added := make(chan struct{})
			go func() {
				defer close(added)
				if _, err := q.Add(ctx, []byte("second"), AddOptions{}); err != nil {
					t.Errorf("Add second: %v", err)
				}
			}()
			<-added
		}
	}
	defer func() { testHookLeased = nil }()
	if _, err := q.Add(ctx, []byte("first"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	<-got
	select {
	case it := <-got:
		if string(it.Payload) != "second" && string(it.Payload) != "first" {
			t.Errorf("leased %q", it.Payload)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("lost wake-up: a Lease stayed parked for 2s with an item in the inbox (parked=%d spinning=%d)",
			q.nparked.Load(), q.spinning.Load())
	}
	cancel()
	<-done
	<-done
}

// Lease must copy the item out before it unlocks: a Lease descheduled past its lease duration can
// find its entry expired, leased and acked by another worker, and recycled for a new item.
func TestMemoryLeaseCopiesBeforeUnlock(t *testing.T) {
	q, err := NewMemory(WithLeaseDuration(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.Add(ctx, []byte("A"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var once atomic.Bool
	testHookUnlocked = func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		time.Sleep(40 * time.Millisecond) // past the lease: A expires
		it, err := q.Lease(ctx)
		if err != nil {
			t.Errorf("second Lease: %v", err)
			return
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if _, err := q.Add(ctx, []byte("B"), AddOptions{}); err != nil { // may reuse A's entry
			t.Errorf("Add B: %v", err)
		}
	}
	defer func() { testHookUnlocked = nil }()
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Payload) != "A" {
		t.Errorf("item %s delivered with payload %q, want %q", it.ID, it.Payload, "A")
	}
}
