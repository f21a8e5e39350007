package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

// heldAck is a delivered message whose DoubleAck waits for an answer on its channel.
type heldAck struct {
	fakeMsg
	calls  chan struct{} // gets a value as DoubleAck starts waiting
	answer chan error
}

func (m *heldAck) DoubleAck(ctx context.Context) error {
	m.calls <- struct{}{}
	return <-m.answer
}

// TestConcurrentEnds: while an Ack of a lease waits for the server, another Ack, a Bury and an
// Extend of it get ErrLeaseLost, so that two ends never both act; if that Ack fails, the lease is
// held again and a retry acks it; once acked, the lease is gone. A lease whose Ack failed still
// expires at its deadline.
func TestConcurrentEnds(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &heldAck{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}, calls: make(chan struct{}), answer: make(chan error)}
	it := q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	ctx := context.Background()
	others := func(when string) {
		t.Helper()
		if err := q.Ack(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("second Ack %s: %v, want ErrLeaseLost", when, err)
		}
		if err := q.Bury(ctx, it.Lease, "x"); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Bury %s: %v, want ErrLeaseLost", when, err)
		}
		if _, err := q.Extend(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Extend %s: %v, want ErrLeaseLost", when, err)
		}
	}
	errDown := errors.New("server down")
	for _, answer := range []error{errDown, nil} {
		acked := make(chan error, 1)
		go func() { acked <- q.Ack(ctx, it.Lease) }()
		<-msg.calls
		others("while an Ack waits for the server")
		msg.answer <- answer
		if err := <-acked; !errors.Is(err, answer) {
			t.Fatalf("Ack answered %v: %v", answer, err)
		}
	}
	others("after the Ack")
	if len(q.leases) != 0 {
		t.Errorf("%d leases held after the Ack, want 0", len(q.leases))
	}

	it = q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	acked := make(chan error, 1)
	go func() { acked <- q.Ack(ctx, it.Lease) }()
	<-msg.calls
	msg.answer <- errDown
	if err := <-acked; !errors.Is(err, errDown) {
		t.Fatalf("Ack answered %v: %v", errDown, err)
	}
	q.mu.Lock()
	for _, h := range q.leases {
		h.deadline = time.Now().Add(-time.Millisecond)
	}
	q.mu.Unlock()
	if err := q.Ack(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Ack retried after the deadline: %v, want ErrLeaseLost", err)
	}
}

// failAck is a delivery whose first DoubleAck fails, as one does when NATS goes away between a
// Bury's dead letter and its ack.
type failAck struct {
	delivery
	failed bool
}

func (m *failAck) DoubleAck(ctx context.Context) error {
	if !m.failed {
		m.failed = true
		return errors.New("server down")
	}
	return m.delivery.DoubleAck(ctx)
}

// TestBuryRetryAfterAckFailed: a Bury whose dead letter was published but whose ack failed keeps
// the lease, and its retry acks the item without publishing the dead letter again.
func TestBuryRetryAfterAckFailed(t *testing.T) {
	for _, lostReply := range []bool{false, true} {
		t.Run(fmt.Sprintf("publish reply lost %v", lostReply), func(t *testing.T) { testBuryRetryAfterAckFailed(t, lostReply) })
	}
}

func testBuryRetryAfterAckFailed(t *testing.T, lostReply bool) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := Open(ctx, nc, fmt.Sprintf("buryretry%v", lostReply))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	for _, h := range q.leases {
		h.msg = &failAck{delivery: h.msg}
	}
	q.mu.Unlock()
	if err := q.Bury(ctx, it.Lease, "poison"); err == nil || errors.Is(err, workqueue.ErrLeaseLost) {
		t.Fatalf("Bury whose ack failed: %v, want an error other than ErrLeaseLost", err)
	}
	if lostReply {
		// The dead letter was stored but its publish's reply never came (a publish sent from the
		// reconnect buffer after its ctx ended): the retry publishes it again.
		q.mu.Lock()
		for _, h := range q.leases {
			h.deadSent = false
		}
		q.mu.Unlock()
	}
	if err := q.Bury(ctx, it.Lease, "poison"); err != nil {
		t.Fatalf("Bury retried: %v", err)
	}
	dead, err := q.Dead(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Errorf("%d dead letters after a Bury and its retry, want 1: %+v", len(dead), dead)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (workqueue.Stats{Dead: 1}) {
		t.Errorf("stats %+v after the retried Bury, want 1 dead and nothing else", st)
	}
}

// progressMsg is a delivered message whose InProgress succeeds at once.
type progressMsg struct{ fakeMsg }

func (*progressMsg) InProgress() error { return nil }

// TestExtendConcurrent: Extends of one lease from several goroutines (a heartbeat and a handler's
// own, say) each return a deadline a lease duration after the call began. Extend used to read the
// deadline it returned after letting go of the lock, racing the others' writes (go test -race).
func TestExtendConcurrent(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	it := q.take(context.Background(), buffered{msg: &progressMsg{fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}}, recv: time.Now()})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				before := time.Now()
				d, err := q.Extend(context.Background(), it.Lease)
				if err != nil || d.Before(before.Add(q.cfg.ackWait)) {
					t.Errorf("Extend begun at %v: %v, %v; want a deadline a minute later or more", before, d, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
