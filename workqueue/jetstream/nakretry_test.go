package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/internal/faultproxy"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// twoHolders opens queue name twice, with lease duration lease and one message per pull: qa on a
// connection ncA through the fault proxy px (resumed when the test ends), qb on one of its own.
func twoHolders(ctx context.Context, t *testing.T, name string, lease time.Duration) (qa, qb *wqjs.Queue, ncA *nats.Conn, px *faultproxy.Proxy) {
	t.Helper()
	ncA, node, px := startProxied(t)
	t.Cleanup(px.Resume)
	ncB, err := nats.Connect(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncB.Close)
	qa = openQueue(ctx, t, ncA, name, wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	qb = openQueue(ctx, t, ncB, name, wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	return qa, qb, ncA, px
}

// addThenLease adds payload on qb and leases it on qa, at attempt 1.
func addThenLease(ctx context.Context, t *testing.T, qa, qb *wqjs.Queue, payload string) *workqueue.Item {
	t.Helper()
	if _, err := qb.Add(ctx, []byte(payload), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := qa.Lease(ctx)
	if err != nil || string(it.Payload) != payload || it.Attempt != 1 {
		t.Fatalf("Lease: %+v, %v; want %q at attempt 1", it, err, payload)
	}
	return it
}

// noLease checks that q leases nothing for d.
func noLease(ctx context.Context, t *testing.T, q *wqjs.Queue, what string, d time.Duration) {
	t.Helper()
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if it, err := q.Lease(lctx); err == nil {
		t.Errorf("%s: leased %q at attempt %d, want nothing for %v", what, it.Payload, it.Attempt, d)
	}
}

// TestNackRetryAfterNoAnswer: a Nack whose nak reaches the server but whose answer does not come
// back (the server's replies are held up, and the call's ctx ends) may be retried, as a Pool does,
// on the first delivery's reply subject. The server acts on a nak by the item alone, whichever
// delivery's reply subject it came on: a nak sent again after the item went out again would end
// its next holder's delivery. So a retry sends nothing and returns nil, whether it comes within
// the nak's delay (the first nak does the work: the item comes back once, after the delay, at
// attempt 2) or after it, leaving the next holder's lease alone; an Extend gets ErrLeaseLost. The
// retry used to be sent whenever it came within the lease: the item went out a third time while
// its second holder held it.
func TestNackRetryAfterNoAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	qa, qb, _, px := twoHolders(ctx, t, "nakretry", 30*time.Second)
	// nakUnanswered leases an item on qa and naks it with delay while the server's answers are
	// held up, so that the nak is carried out and its answer lost.
	nakUnanswered := func(payload string, delay time.Duration) *workqueue.Item {
		t.Helper()
		it := addThenLease(ctx, t, qa, qb, payload)
		px.PauseReplies()
		nctx, ncancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := qa.Nack(nctx, it.Lease, delay)
		ncancel()
		px.Resume()
		if err == nil {
			t.Fatalf("Nack of %q with the answers held up: nil, want an error", payload)
		}
		return it
	}

	// Retried within the nak's delay: the item comes back after the delay, once.
	const delay = 3 * time.Second
	early := nakUnanswered("early", delay)
	if err := qa.Nack(ctx, early.Lease, delay); err != nil {
		t.Errorf("Nack retried within the delay of the first: %v, want nil", err)
	}
	noLease(ctx, t, qb, "within the delay", delay/2)
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
	if _, err := qa.Extend(ctx, late.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend after the unanswered nak: %v, want ErrLeaseLost", err)
	}
	if err := qa.Nack(ctx, late.Lease, 0); err != nil {
		t.Errorf("Nack retried after the item went out again: %v, want nil", err)
	}
	noLease(ctx, t, qb, "while its second holder holds it", 2*time.Second)
	if err := qb.Ack(ctx, second.Lease); err != nil {
		t.Errorf("the second holder's Ack: %v, want nil", err)
	}
	if s, err := qb.Stats(ctx); err != nil || s != (workqueue.Stats{}) {
		t.Errorf("stats at the end: %+v, %v; want the queue empty", s, err)
	}
}

// TestNackNotSentAgainWithinDelay: a Nack retried after one that got no answer sends nothing,
// however soon it comes. The server hands the item out again once the delay ends from when the
// first nak ARRIVED, and acts on a later nak by the item alone: a retry sent within the delay but
// held on its way (here by the network; by nats.go's reconnect buffer, a connection that dropped
// after the first nak landed) reached the server after the item's second holder had it, and put
// the item out a third time while that holder held it.
func TestNackNotSentAgainWithinDelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const delay = 2 * time.Second
	qa, qb, _, px := twoHolders(ctx, t, "nakheld", 30*time.Second)
	first := addThenLease(ctx, t, qa, qb, "x")
	px.PauseReplies()
	nctx, ncancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := qa.Nack(nctx, first.Lease, delay)
	ncancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Nack with the answers held up: %v, want context.DeadlineExceeded", err)
	}
	// The retry comes within the delay (as a Pool's does, 250ms later), and whatever it sends is
	// held on its way until the item has gone out again.
	px.Resume()
	px.Pause()
	retried := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		retried <- qa.Nack(rctx, first.Lease, delay)
	}()
	second, err := qb.Lease(ctx)
	if err != nil || second.Attempt != 2 {
		t.Fatalf("Lease after the first nak's delay: %+v, %v; want attempt 2", second, err)
	}
	px.Resume()
	if err := <-retried; err != nil {
		t.Errorf("Nack retried after one without an answer: %v, want nil (the item comes back either way)", err)
	}
	noLease(ctx, t, qb, "while its second holder holds it", delay+2*time.Second)
	if err := qb.Ack(ctx, second.Lease); err != nil {
		t.Errorf("the second holder's Ack: %v, want nil", err)
	}
}

// TestNackNotBufferedWhileReconnecting: a Nack while the connection is reconnecting is refused at
// once (ErrUnavailable, to be retried) and sends nothing, rather than wait in nats.go's reconnect
// buffer: sent from there once the connection was back, after the lease had ended and the item
// had gone to another holder, it put the item out again while that holder held it.
func TestNackNotBufferedWhileReconnecting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const delay = 200 * time.Millisecond
	qa, qb, ncA, px := twoHolders(ctx, t, "nakbuffered", 2*time.Second)
	first := addThenLease(ctx, t, qa, qb, "x")
	// The connection breaks, and its reconnects get no answer until Resume.
	px.Pause()
	px.CloseConns()
	waitDisconnected(ctx, t, ncA)
	nctx, ncancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := qa.Nack(nctx, first.Lease, delay)
	ncancel()
	if !errors.Is(err, workqueue.ErrUnavailable) || !errors.Is(err, nats.ErrConnectionReconnecting) {
		t.Errorf("Nack while reconnecting: %v, want ErrUnavailable and nats.ErrConnectionReconnecting", err)
	}
	second, err := qb.Lease(ctx)
	if err != nil || second.Attempt != 2 {
		t.Fatalf("Lease after the first lease ended: %+v, %v; want attempt 2", second, err)
	}
	px.Resume()
	for ncA.Status() != nats.CONNECTED {
		if ctx.Err() != nil {
			t.Fatal("the connection did not come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ncA.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	noLease(ctx, t, qb, "while its second holder holds it", delay+time.Second)
	if err := qb.Ack(ctx, second.Lease); err != nil {
		t.Errorf("the second holder's Ack: %v, want nil", err)
	}
}
