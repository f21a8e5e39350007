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

// endMsg is a delivered message whose DoubleAck, NakSync and InProgressSync each say on calls
// that they were called ("ack", "nak", "progress") and return what comes on answer.
type endMsg struct {
	fakeMsg
	calls  chan string
	answer chan error
}

func (m *endMsg) wait(call string) error {
	m.calls <- call
	return <-m.answer
}

func (m *endMsg) DoubleAck(context.Context) error              { return m.wait("ack") }
func (m *endMsg) NakSync(context.Context, time.Duration) error { return m.wait("nak") }
func (m *endMsg) InProgressSync(context.Context) error         { return m.wait("progress") }

// TestConcurrentEnds: an Ack, Nack, Extend or Bury of a lease that another of them is using waits
// for it to learn the server's answer. After an end the server confirmed, the lease is gone: the
// waiter gets ErrLeaseLost without touching the message. After one that failed (NATS unreachable),
// or after an Extend, the lease is still held and the waiter goes ahead, as the caller's retry
// would. A waiter's ctx and the lease's deadline end its wait. Before, a use that began while an
// end waited for the server got ErrLeaseLost whatever that end's outcome, so a caller whose first
// end failed could not retry. A lease whose end failed still expires at its deadline.
func TestConcurrentEnds(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &endMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}, calls: make(chan string), answer: make(chan error)}
	bg := context.Background()
	use := map[string]func(ctx context.Context, lease string) error{
		"Ack":    func(ctx context.Context, lease string) error { return q.Ack(ctx, lease) },
		"Nack":   func(ctx context.Context, lease string) error { return q.Nack(ctx, lease, 0) },
		"Extend": func(ctx context.Context, lease string) error { _, err := q.Extend(ctx, lease); return err },
		"Bury":   func(ctx context.Context, lease string) error { return q.Bury(ctx, lease, "x") },
	}
	call := map[string]string{"Ack": "ack", "Nack": "nak", "Extend": "progress"}
	goUse := func(ctx context.Context, name, lease string) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- use[name](ctx, lease) }()
		return ch
	}
	// begin starts name and waits until it asks the server.
	begin := func(name, lease string) <-chan error {
		t.Helper()
		done := goUse(bg, name, lease)
		if c := <-msg.calls; c != call[name] {
			t.Fatalf("%s asked the server %q, want %q", name, c, call[name])
		}
		return done
	}
	// waiting checks that what was started on done neither returned nor asked the server.
	waiting := func(what string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("%s while another use of the lease waits for the server: %v, want it waiting", what, err)
		case c := <-msg.calls:
			t.Fatalf("%s asked the server %q while another use of the lease waits for it", what, c)
		case <-time.After(50 * time.Millisecond):
		}
	}
	errDown := errors.New("server down")

	// The first use fails (or is an Extend): the second goes ahead and its answer holds.
	for _, c := range []struct {
		first  string
		answer error
		second string
	}{
		{"Ack", errDown, "Ack"},
		{"Ack", errDown, "Nack"},
		{"Nack", errDown, "Extend"},
		{"Extend", errDown, "Ack"},
		{"Extend", nil, "Nack"},
	} {
		what := fmt.Sprintf("%s after a %s that returned %v", c.second, c.first, c.answer)
		lease := q.take(bg, buffered{msg: msg, recv: time.Now()}).Lease
		first := begin(c.first, lease)
		second := goUse(bg, c.second, lease)
		waiting(what, second)
		msg.answer <- c.answer
		if err := <-first; !errors.Is(err, c.answer) {
			t.Fatalf("%s answered %v: %v", c.first, c.answer, err)
		}
		if got := <-msg.calls; got != call[c.second] {
			t.Fatalf("%s asked the server %q, want %q", what, got, call[c.second])
		}
		msg.answer <- nil
		if err := <-second; err != nil {
			t.Errorf("%s: %v, want nil", what, err)
		}
		if c.second != "Extend" {
			if err := q.Ack(bg, lease); !errors.Is(err, workqueue.ErrLeaseLost) {
				t.Errorf("Ack after the %s: %v, want ErrLeaseLost", what, err)
			}
		}
		q.mu.Lock()
		clear(q.leases)
		q.mu.Unlock()
	}

	// The first use is an end the server confirms: the others get ErrLeaseLost.
	for _, first := range []string{"Ack", "Nack"} {
		lease := q.take(bg, buffered{msg: msg, recv: time.Now()}).Lease
		done := begin(first, lease)
		var others []<-chan error
		for _, name := range []string{"Ack", "Nack", "Extend", "Bury"} {
			others = append(others, goUse(bg, name, lease))
			waiting(name, others[len(others)-1])
		}
		msg.answer <- nil
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", first, err)
		}
		for i, name := range []string{"Ack", "Nack", "Extend", "Bury"} {
			if err := <-others[i]; !errors.Is(err, workqueue.ErrLeaseLost) {
				t.Errorf("%s begun while a %s waited for the server, which confirmed it: %v, want ErrLeaseLost", name, first, err)
			}
		}
		if len(q.leases) != 0 {
			t.Errorf("%d leases held after the %s, want 0", len(q.leases), first)
		}
	}

	// A waiter's ctx ends its wait; so does the lease's deadline.
	lease := q.take(bg, buffered{msg: msg, recv: time.Now()}).Lease
	done := begin("Ack", lease)
	ctx, cancel := context.WithCancel(bg)
	second := goUse(ctx, "Ack", lease)
	waiting("Ack", second)
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("Ack waiting for another when its ctx ends: %v, want context.Canceled", err)
	}
	q.mu.Lock()
	for _, h := range q.leases {
		h.deadline = time.Now().Add(100 * time.Millisecond)
	}
	q.mu.Unlock()
	second = goUse(bg, "Nack", lease)
	select {
	case err := <-second:
		if !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Nack waiting for an Ack past the lease's deadline: %v, want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Nack waiting for an Ack still waits 10s past the lease's deadline")
	}
	msg.answer <- errDown
	if err := <-done; !errors.Is(err, errDown) {
		t.Fatalf("Ack answered %v: %v", errDown, err)
	}

	// A lease whose Ack failed is held until its deadline, and not after.
	lease = q.take(bg, buffered{msg: msg, recv: time.Now()}).Lease
	done = begin("Ack", lease)
	msg.answer <- errDown
	if err := <-done; !errors.Is(err, errDown) {
		t.Fatalf("Ack answered %v: %v", errDown, err)
	}
	q.mu.Lock()
	for _, h := range q.leases {
		h.deadline = time.Now().Add(-time.Millisecond)
	}
	q.mu.Unlock()
	if err := q.Ack(bg, lease); !errors.Is(err, workqueue.ErrLeaseLost) {
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

// progressMsg is a delivered message whose InProgressSync succeeds at once.
type progressMsg struct{ fakeMsg }

func (*progressMsg) InProgressSync(context.Context) error { return nil }

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

// downMsg is a delivered message whose DoubleAck fails, as it does with NATS unreachable.
type downMsg struct{ fakeMsg }

func (*downMsg) DoubleAck(context.Context) error { return errors.New("server down") }

// TestLeasesForgottenAtDeadline: a lease whose Ack failed (held for a retry), and one never ended,
// are forgotten, payload and all, a little after their deadline even if the queue is never used
// again, as when its connection is gone for good. They used to be forgotten only by a later Lease
// (or a use of the lease itself), so a queue that leased no more kept them as long as it lived.
func TestLeasesForgottenAtDeadline(t *testing.T) {
	q := &Queue{cfg: config{ackWait: 200 * time.Millisecond, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &downMsg{fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}}
	failed := q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	if err := q.Ack(context.Background(), failed.Lease); err == nil {
		t.Fatal("Ack of a message whose ack fails: nil")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		n := len(q.leases)
		q.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases still held 5s after their 200ms deadline", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
