package jetstream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

// silentNakMsg is a delivered message whose nak gets no answer (NakSync: the call's bound ends),
// and that records what is sent on it.
type silentNakMsg struct {
	fakeMsg
	sent []string
}

func (m *silentNakMsg) NakSync(context.Context, time.Duration) error {
	m.sent = append(m.sent, "nak")
	return context.DeadlineExceeded
}

func (m *silentNakMsg) DoubleAck(context.Context) error {
	m.sent = append(m.sent, "ack")
	return nil
}

func (m *silentNakMsg) InProgressSync(context.Context) error {
	m.sent = append(m.sent, "progress")
	return nil
}

// TestNothingSentAfterUnansweredNak: once a nak went out and got no answer, nothing is sent on the
// lease again, whenever it comes: the server may have taken the nak and handed the item out again,
// and it would take anything sent on the lease for the new holder's delivery. An Ack, Extend or
// Bury gets ErrLeaseLost; a Nack returns nil (the item comes back either way) and ends the lease.
// Before, an Ack or Bury within the nak's delay was sent (an ack of the new holder's delivery,
// once the delay had passed and the nak had landed late), and so was a Nack.
func TestNothingSentAfterUnansweredNak(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &silentNakMsg{fakeMsg: fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}}
	it := q.take(context.Background(), buffered{msg: msg, recv: time.Now()})
	ctx := context.Background()
	const delay = 30 * time.Second // the nak's delay lasts through the test
	if err := q.Nack(ctx, it.Lease, delay); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Nack without an answer: %v, want context.DeadlineExceeded", err)
	}
	refused := map[string]func() error{
		"Ack":    func() error { return q.Ack(ctx, it.Lease) },
		"Extend": func() error { _, err := q.Extend(ctx, it.Lease); return err },
		"Bury":   func() error { return q.Bury(ctx, it.Lease, "poison") },
	}
	for _, name := range []string{"Ack", "Extend", "Bury"} {
		if err := refused[name](); !errors.Is(err, workqueue.ErrLeaseLost) || !slices.Equal(msg.sent, []string{"nak"}) {
			t.Fatalf("%s after the unanswered nak: %v, sent %q; want ErrLeaseLost, sent only the nak", name, err, msg.sent)
		}
	}
	if err := q.Nack(ctx, it.Lease, delay); err != nil || !slices.Equal(msg.sent, []string{"nak"}) {
		t.Fatalf("Nack retried: %v, sent %q; want nil, sent only the first nak", err, msg.sent)
	}
	if err := q.Nack(ctx, it.Lease, delay); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Nack after the retried one: %v, want ErrLeaseLost (the lease ended)", err)
	}
}
