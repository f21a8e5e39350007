package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestNackRetryAfterNoAnswer: a Nack whose nak reaches the server but whose answer does not come
// back (the server's replies are held up, and the call's ctx ends) may be retried, as a Pool does,
// on the first delivery's reply subject. The server acts on a nak by the item alone, whichever
// delivery's reply subject it came on: a nak sent again after the item went out again would end
// its next holder's delivery. So a retry within the nak's delay is sent again and does its work
// (the item comes back once, after the delay, at attempt 2), and one after the delay sends nothing
// and gets ErrLeaseLost, leaving the next holder's lease alone. The retry used to be sent whenever
// it came within the lease: the item went out a third time while its second holder held it.
func TestNackRetryAfterNoAnswer(t *testing.T) {
	ncA, node, px := startProxied(t)
	ncB, err := nats.Connect(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncB.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const lease = 30 * time.Second
	qa := openQueue(ctx, t, ncA, "nakretry", wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	qb := openQueue(ctx, t, ncB, "nakretry", wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	// nakUnanswered leases an item on qa and naks it with delay while the server's answers are
	// held up, so that the nak is carried out and its answer lost.
	nakUnanswered := func(payload string, delay time.Duration) *workqueue.Item {
		t.Helper()
		if _, err := qb.Add(ctx, []byte(payload), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := qa.Lease(ctx)
		if err != nil || string(it.Payload) != payload || it.Attempt != 1 {
			t.Fatalf("Lease: %+v, %v; want %q at attempt 1", it, err, payload)
		}
		px.PauseReplies()
		nctx, ncancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err = qa.Nack(nctx, it.Lease, delay)
		ncancel()
		px.Resume()
		if err == nil {
			t.Fatalf("Nack of %q with the answers held up: nil, want an error", payload)
		}
		return it
	}
	noLease := func(what string, d time.Duration) {
		t.Helper()
		lctx, lcancel := context.WithTimeout(ctx, d)
		defer lcancel()
		if it, err := qb.Lease(lctx); err == nil {
			t.Errorf("%s: leased %q at attempt %d, want nothing for %v", what, it.Payload, it.Attempt, d)
		}
	}

	// Retried within the nak's delay: sent again, and the item comes back after the delay.
	const delay = 3 * time.Second
	early := nakUnanswered("early", delay)
	if err := qa.Nack(ctx, early.Lease, delay); err != nil {
		t.Errorf("Nack retried within the delay of the first: %v, want nil", err)
	}
	noLease("within the delay", delay/2)
	it, err := qb.Lease(ctx)
	if err != nil || string(it.Payload) != "early" || it.Attempt != 2 {
		t.Fatalf("Lease after the delay: %+v, %v; want \"early\" at attempt 2", it, err)
	}
	if err := qb.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}

	// Retried after the item went out again: nothing is sent, and its next holder keeps it.
	late := nakUnanswered("late", 0)
	second, err := qb.Lease(ctx)
	if err != nil || string(second.Payload) != "late" || second.Attempt != 2 {
		t.Fatalf("Lease after the unanswered nak: %+v, %v; want \"late\" at attempt 2", second, err)
	}
	if err := qa.Nack(ctx, late.Lease, 0); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Nack retried after the item went out again: %v, want ErrLeaseLost", err)
	}
	if _, err := qa.Extend(ctx, late.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend after the unanswered nak: %v, want ErrLeaseLost", err)
	}
	noLease("while its second holder holds it", 2*time.Second)
	if err := qb.Ack(ctx, second.Lease); err != nil {
		t.Errorf("the second holder's Ack: %v, want nil", err)
	}
	if s, err := qb.Stats(ctx); err != nil || s != (workqueue.Stats{}) {
		t.Errorf("stats at the end: %+v, %v; want the queue empty", s, err)
	}
}
