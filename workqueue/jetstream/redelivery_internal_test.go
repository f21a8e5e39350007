package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

// sentMsg is a delivered message whose acks, naks and extensions succeed, and that records them.
type sentMsg struct {
	fakeMsg
	sent []string
}

func (m *sentMsg) DoubleAck(context.Context) error { m.sent = append(m.sent, "ack"); return nil }
func (m *sentMsg) NakSync(context.Context, time.Duration) error {
	m.sent = append(m.sent, "nak")
	return nil
}
func (m *sentMsg) InProgressSync(context.Context) error {
	m.sent = append(m.sent, "progress")
	return nil
}

// TestRedeliveryEndsEarlierLease: once the queue hands out a redelivery of an item, the lease of
// its earlier delivery is over, though its deadline (from when that delivery arrived, a little
// after the server sent it) has not passed: its Ack, Nack and Extend get ErrLeaseLost and send
// nothing, since the server would take what they sent for the new delivery's (it tells them by the
// item alone). A Nack of the old lease used to put the item out again under its new holder.
func TestRedeliveryEndsEarlierLease(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	ctx := context.Background()
	first := &sentMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}}
	old := q.take(ctx, buffered{msg: first, recv: time.Now()})
	second := &sentMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.2.9.10.0.0"}} // item 9 again
	cur := q.take(ctx, buffered{msg: second, recv: time.Now()})
	if old == nil || cur == nil || old.ID != cur.ID || cur.Attempt != 2 {
		t.Fatalf("take: %+v then %+v, want item 9's first and second delivery", old, cur)
	}
	for _, op := range []struct {
		name string
		call func() error
	}{
		{"Ack", func() error { return q.Ack(ctx, old.Lease) }},
		{"Nack", func() error { return q.Nack(ctx, old.Lease, 0) }},
		{"Extend", func() error { _, err := q.Extend(ctx, old.Lease); return err }},
	} {
		if err := op.call(); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("%s of the first delivery's lease: %v, want ErrLeaseLost", op.name, err)
		}
	}
	if len(first.sent) != 0 {
		t.Errorf("sent on the first delivery after the second was handed out: %q, want nothing", first.sent)
	}
	if err := q.Ack(ctx, cur.Lease); err != nil || len(second.sent) != 1 {
		t.Errorf("Ack of the second delivery's lease: %v, sent %q; want it acked", err, second.sent)
	}
}

// TestLaterDeliveryTakenFirst: when a later delivery of an item is leased before an earlier one
// arrives (two pulls in flight), the earlier one is over: it is not handed out, and the later
// lease stays valid. Forgetting every other lease of the item used to drop the valid one and hand
// out the stale one, whose Ack then acked the item under the later delivery's holder.
func TestLaterDeliveryTakenFirst(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	ctx := context.Background()
	third := &sentMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.3.9.11.0.0"}}
	cur := q.take(ctx, buffered{msg: third, recv: time.Now()})
	second := &sentMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.2.9.10.0.0"}} // item 9, earlier
	if stale := q.take(ctx, buffered{msg: second, recv: time.Now()}); stale != nil {
		t.Errorf("take of the second delivery after the third: %+v, want nothing handed out", stale)
	}
	if cur == nil || cur.Attempt != 3 {
		t.Fatalf("take of the third delivery: %+v", cur)
	}
	if err := q.Ack(ctx, cur.Lease); err != nil || len(third.sent) != 1 {
		t.Errorf("Ack of the third delivery's lease: %v, sent %q; want it acked", err, third.sent)
	}
	if len(second.sent) != 0 {
		t.Errorf("sent on the second delivery: %q, want nothing", second.sent)
	}
}
