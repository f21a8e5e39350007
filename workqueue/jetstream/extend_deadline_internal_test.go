package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

type extendResult struct {
	d   time.Time
	err error
}

// extendWaiting leases an item of a 300ms lease and starts an Extend of it, which waits for msg's
// answer; its result comes on the channel.
func extendWaiting(t *testing.T) (*Queue, *endMsg, *workqueue.Item, <-chan extendResult) {
	t.Helper()
	q := &Queue{cfg: config{ackWait: 300 * time.Millisecond, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &endMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}, calls: make(chan string), answer: make(chan error)}
	it := q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	done := make(chan extendResult, 1)
	go func() { d, err := q.Extend(context.Background(), it.Lease); done <- extendResult{d, err} }()
	<-msg.calls
	return q, msg, it, done
}

// An Extend whose answer comes after the lease's deadline extends nothing: the message may have
// been delivered again by then, and the server answers an in-progress for it all the same.
func TestExtendAnsweredAfterDeadline(t *testing.T) {
	_, msg, it, done := extendWaiting(t)
	time.Sleep(time.Until(it.Deadline) + 100*time.Millisecond) // the server answers late
	select {
	case msg.answer <- nil:
	case <-time.After(time.Second): // the fake's InProgressSync may have given up at the deadline
	}
	if r := <-done; !errors.Is(r.err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend answered after the lease's deadline %v: %v, %v; want ErrLeaseLost", it.Deadline, r.d, r.err)
	}
}

// An Extend does not succeed on a lease forgotten while its answer was on its way (a Nack waiting
// for its turn gave up at the deadline and dropped the lease).
func TestExtendOnForgottenLease(t *testing.T) {
	q, msg, it, ext := extendWaiting(t)
	if err := q.Nack(context.Background(), it.Lease, 0); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Fatalf("Nack waiting past the deadline: %v", err)
	}
	select {
	case msg.answer <- nil:
	case <-time.After(time.Second):
	}
	if r := <-ext; !errors.Is(r.err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend = %v, %v on a lease forgotten meanwhile; want ErrLeaseLost", r.d, r.err)
	}
}

type silentMsg struct{ fakeMsg }

func (*silentMsg) InProgressSync(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// An Extend to a server that does not answer waits no longer than the lease, whatever its ctx.
func TestExtendBoundedByLease(t *testing.T) {
	q := &Queue{cfg: config{ackWait: 300 * time.Millisecond, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	it := q.take(context.Background(), buffered{msg: &silentMsg{fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}}, recv: time.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := q.Extend(ctx, it.Lease)
	if took := time.Since(start); took > 2*q.cfg.ackWait || !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend to a silent server: %v after %v, lease %v; want ErrLeaseLost within the lease", err, took, q.cfg.ackWait)
	}
}
