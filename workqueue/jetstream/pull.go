package jetstream

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// delivery is what the queue uses of a message the consumer delivered: a coreMsg from a pull, or
// a stand-in in tests. Ack, Nak, NakWithDelay and InProgress send without waiting for the server;
// DoubleAck, NakSync and InProgressSync wait for its confirmation.
type delivery interface {
	Data() []byte
	Headers() nats.Header
	Reply() string
	Ack() error
	DoubleAck(ctx context.Context) error
	Nak() error
	NakWithDelay(delay time.Duration) error
	NakSync(ctx context.Context, delay time.Duration) error // a delay > 0 as NakWithDelay's
	InProgress() error
	InProgressSync(ctx context.Context) error
}

// coreMsg is a delivery received on a plain subscription: nats.Msg's own JetStream methods
// acknowledge it on its reply subject.
type coreMsg struct{ m *nats.Msg }

func (c coreMsg) Data() []byte                       { return c.m.Data }
func (c coreMsg) Headers() nats.Header               { return c.m.Header }
func (c coreMsg) Reply() string                      { return c.m.Reply }
func (c coreMsg) Ack() error                         { return c.m.Ack() }
func (c coreMsg) Nak() error                         { return c.m.Nak() }
func (c coreMsg) NakWithDelay(d time.Duration) error { return c.m.NakWithDelay(d) }
func (c coreMsg) InProgress() error                  { return c.m.InProgress() }

// ackTimeout bounds a DoubleAck, NakSync or InProgressSync whose ctx has no deadline, as nats.go's
// jetstream does its API calls (its DefaultTimeout): a server that never answers would otherwise
// hold Ack forever.
const ackTimeout = 5 * time.Second

// confirmCtx is ctx, bounded by ackTimeout if it has no deadline, as a nats.go AckOpt.
func confirmCtx(ctx context.Context) (nats.AckOpt, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return nats.Context(ctx), func() {}
	}
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	return nats.Context(ctx), cancel
}

// DoubleAck acks and waits for the server's confirmation, within ctx's deadline or ackTimeout.
func (c coreMsg) DoubleAck(ctx context.Context) error {
	o, cancel := confirmCtx(ctx)
	defer cancel()
	return c.m.AckSync(o)
}

// NakSync naks, with delay if it is > 0, and waits for the server's confirmation, within ctx's
// deadline or ackTimeout.
func (c coreMsg) NakSync(ctx context.Context, delay time.Duration) error {
	o, cancel := confirmCtx(ctx)
	defer cancel()
	if delay > 0 {
		return c.m.NakWithDelay(delay, o)
	}
	return c.m.Nak(o)
}

// InProgressSync resets the message's AckWait and waits for the server's confirmation, within
// ctx's deadline or ackTimeout.
func (c coreMsg) InProgressSync(ctx context.Context) error {
	o, cancel := confirmCtx(ctx)
	defer cancel()
	return c.m.InProgress(o)
}

// drainWait bounds how long stop waits for the server to confirm that it dropped a pull's
// interest (one round trip on a working connection).
const drainWait = 2 * time.Second

// waitPull is a pull request on an inbox of its own: a blocking pull for one message (a Lease
// waiting on an empty queue) or a no-wait pull for up to a batch (see pulled).
//
// It replaces jetstream's Fetch because a Fetch cut short (its context cancelled) drops what the
// server has already sent to it: a message in flight was counted as a delivery and came back only
// after AckWait. stop drains the subscription instead: the server drops the interest (and with it
// the pull request), and every message it sent before that still arrives, to be given back. What
// is left is the server's own window: a message it has chosen for the request but not yet sent when
// the interest goes is not delivered, and comes back after AckWait. It also sees every status the
// server sends about the pull as it is (Fetch folds some into errors without their code and drops
// others), so that both kinds of pull treat them alike (statusEnd).
type waitPull struct {
	sub     *nats.Subscription
	ch      chan *nats.Msg // the messages, and the status that ends a pull; never closed
	gone    chan struct{}  // closed when the subscription is removed (drained, unsubscribed, conn closed)
	expires time.Time      // when the server ends the request (a blocking pull)
}

// startPull asks the consumer for up to batch messages. With expires > 0 the server keeps the
// request for at most expires; with 0 it answers at once with what it has (no_wait), ending with a
// status unless it sent a whole batch.
func (q *Queue) startPull(batch int, expires time.Duration) (*waitPull, error) {
	p := &waitPull{
		// The messages, the status that may follow them (404 or 408) and slack: a message that
		// finds the channel full is dropped by nats.go as a slow consumer's.
		ch:      make(chan *nats.Msg, batch+3),
		gone:    make(chan struct{}),
		expires: time.Now().Add(expires),
	}
	inbox := q.nc.NewInbox()
	sub, err := q.nc.ChanSubscribe(inbox, p.ch)
	if err != nil {
		return nil, err
	}
	if q.subscribed != nil {
		q.subscribed(sub)
	}
	var once sync.Once
	sub.SetClosedHandler(func(string) { once.Do(func() { close(p.gone) }) })
	if !sub.IsValid() {
		// The subscription went before it had the handler (the connection closed or drained in
		// between), which then never runs: the pull would wait for its fallback timer. nats.go
		// marks a subscription invalid and calls its handler under one lock, so one of the two
		// tells.
		return nil, q.subGone()
	}
	p.sub = sub
	req := strconv.AppendInt(append(make([]byte, 0, 48), `{"batch":`...), int64(batch), 10)
	if expires > 0 {
		req = strconv.AppendInt(append(req, `,"expires":`...), expires.Nanoseconds(), 10)
	} else {
		req = append(req, `,"no_wait":true`...)
	}
	req = append(req, '}')
	if err := q.nc.PublishRequest(q.nextSubj, inbox, req); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return p, nil
}

// pullStatus is "" for a delivery, and otherwise the status code of a message the server sent
// about the pull (as nats.go's own pulls tell them apart): 404 (nothing there) and 408 (expired)
// end it, 100 is a heartbeat, and others are errors that end it too.
func pullStatus(m *nats.Msg) string {
	if len(m.Data) > 0 || len(m.Header) == 0 {
		return ""
	}
	return m.Header.Get("Status")
}

// statusEnd tells what a status the server sent about a pull (pullStatus, not "") does to it: a
// heartbeat (100) leaves it on; 404 (nothing there) and 408 (expired, or a no-wait pull served
// short) end it; any other status ends it with a *statusError.
func statusEnd(st string, m *nats.Msg) (end bool, err error) {
	switch st {
	case "100":
		return false, nil
	case "404", "408":
		return true, nil
	}
	return true, &statusError{st, m.Header.Get("Description")}
}

// done ends a pull that the server has finished (it sent its message or its end status).
func (p *waitPull) done() { _ = p.sub.Unsubscribe() }

// stop ends a pull the server may still serve and returns the messages it sent before it dropped
// the pull's interest. On a broken connection it waits at most drainWait and returns what came.
func (p *waitPull) stop() []*nats.Msg {
	if err := p.sub.Drain(); err == nil {
		t := time.NewTimer(drainWait)
		select {
		case <-p.gone:
		case <-t.C:
			_ = p.sub.Unsubscribe()
		}
		t.Stop()
	}
	return p.rest()
}

// rest takes the messages waiting in the pull's channel, without the statuses.
func (p *waitPull) rest() []*nats.Msg {
	var out []*nats.Msg
	for {
		select {
		case m := <-p.ch:
			if pullStatus(m) == "" {
				out = append(out, m)
			}
		default:
			return out
		}
	}
}

// statusError is a status other than a heartbeat or an end that the server sent about a pull.
type statusError struct{ code, desc string }

func (e *statusError) Error() string {
	if e.desc == "" {
		return "pull: status " + e.code
	}
	return "pull: status " + e.code + " " + e.desc
}

// Unwrap makes 409 Consumer Deleted an ErrConsumerGone.
func (e *statusError) Unwrap() error {
	if e.code == "409" && e.desc == "Consumer Deleted" {
		return ErrConsumerGone
	}
	return nil
}

// transient reports whether the status passes with the server's condition, so that a new pull may
// succeed: a leader moving or a server shutting down (the client reconnects to another node), the
// consumer's waiting list full, or no responder (JetStream unavailable for a moment, as in a
// failover). Others (Consumer Deleted, Bad Request, Message Size Exceeds MaxBytes, ...) are not.
func (e *statusError) transient() bool {
	switch e.code {
	case "503":
		return true
	case "409":
		switch e.desc {
		case "Leadership Change", "Server Shutdown", "Exceeded MaxWaiting":
			return true
		}
	}
	return false
}

// Backoff between pulls that ended with a transient status: from repullMin doubling to repullMax.
const (
	repullMin = 50 * time.Millisecond
	repullMax = time.Second
	// repullLogEvery spaces the queue's log lines about such pulls.
	repullLogEvery = time.Second
	// goneCheckEvery spaces the queue's questions whether its consumer still exists, asked when
	// pulls get no responder (503); goneCheckWait bounds each.
	goneCheckEvery = time.Second
	goneCheckWait  = time.Second
)
