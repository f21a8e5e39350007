package jetstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
)

func TestAckSeqs(t *testing.T) {
	for _, c := range []struct {
		reply          string
		delivered, seq uint64
		ok             bool
	}{
		{"$JS.ACK.WQ_a.workers.3.1207.1300.1732600000000000000.42", 3, 1207, true},
		{"$JS.ACK._.ABCHASH.WQ_a.workers.1.18446744073709551.5.1732600000000000000.0.XyZ", 1, 18446744073709551, true},
		{"$JS.ACK.hub.ABCHASH.WQ_a.workers.12.9.5.1732600000000000000.0", 12, 9, true},        // v2 without the last token
		{"$JS.ACK.hub.ABCHASH.WQ_a.workers.2.7.5.1732600000000000000.0.tok.more", 2, 7, true}, // tokens added later
		{"$JS.ACK.WQ_a.workers.3.1207.1300.1732600000000000000", 0, 0, false},                 // 6 tokens
		{"$JS.ACK._.H.WQ_a.workers.3.1207.1300.1732600000000000000", 0, 0, false},             // 8 tokens
		{"$JS.ACK.WQ_a.workers.x.1207.1300.1.0", 0, 0, false},                                 // not a number
		{"$JS.ACK.WQ_a.workers.3..1300.1.0", 0, 0, false},                                     // empty
		{"$JS.ACK.WQ_a.workers.3.99999999999999999999.1300.1.0", 0, 0, false},                 // 20 digits
		{"_INBOX.abc.3.1207.1300.1.0.0.0", 0, 0, false},
		{"", 0, 0, false},
	} {
		d, s, ok := ackSeqs(c.reply)
		if ok != c.ok || ok && (d != c.delivered || s != c.seq) {
			t.Errorf("ackSeqs(%q) = %d, %d, %v; want %d, %d, %v", c.reply, d, s, ok, c.delivered, c.seq, c.ok)
		}
	}
}

// fakeMsg is a delivered message for take: only Reply, Headers and Data are called on a first
// delivery without headers.
type fakeMsg struct {
	jetstream.Msg
	reply string
}

func (m *fakeMsg) Reply() string        { return m.reply }
func (m *fakeMsg) Headers() nats.Header { return nil }
func (m *fakeMsg) Data() []byte         { return []byte("payload") }

func (m *fakeMsg) NakSync(context.Context, time.Duration) error { panic("fakeMsg: NakSync called") }
func (m *fakeMsg) InProgressSync(context.Context) error         { panic("fakeMsg: InProgressSync called") }

// TestTakeClaimAllocs bounds the queue's own allocations per item (take a delivered message as a
// lease, find it again and forget it on Ack): the heap profile shows two, the lease with its Item
// and the token (the ID is part of it); testing.AllocsPerRun counts three. Before, take also
// allocated the metadata of Msg.Metadata, a separate ID string and a separate Item.
func TestTakeClaimAllocs(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	msg := &fakeMsg{reply: "$JS.ACK._.HASH.WQ_a.workers.2.123456789012.1300.1732600000000000000.0.tok"}
	ctx := context.Background()
	var it *workqueue.Item
	allocs := testing.AllocsPerRun(1000, func() {
		it = q.take(ctx, buffered{msg: msg, recv: time.Now()})
		h, n, err := q.claim(ctx, it.Lease)
		if err != nil {
			t.Fatal(err)
		}
		q.settle(h, n, true, time.Time{})
	})
	if allocs > 3 {
		t.Errorf("take + claim + settle: %.1f allocations, want <= 3", allocs)
	}
	if it.ID != "123456789012" || it.Attempt != 2 || !strings.HasPrefix(it.Lease, "123456789012.2.") || len(q.leases) != 0 {
		t.Errorf("item %+v, %d leases left; want ID 123456789012, attempt 2, token 123456789012.2.*, none left", it, len(q.leases))
	}
}

// TestClaimForeignToken: a token whose counter names a live lease but whose other parts do not
// match it, or that is not a token at all, is a lost lease, and does not end the live one.
func TestClaimForeignToken(t *testing.T) {
	q := &Queue{cfg: config{ackWait: time.Minute, logger: zap.NewNop()}, leases: make(map[uint64]*held)}
	it := q.take(context.Background(), buffered{msg: &fakeMsg{reply: "$JS.ACK.WQ_a.workers.1.9.9.0.0"}, recv: time.Now()})
	counter := it.Lease[strings.LastIndexByte(it.Lease, '.'):]
	for _, tok := range []string{"8.1" + counter, "9.2" + counter, "", ".", "9.1.", "9.1.zz!"} {
		if _, _, err := q.claim(context.Background(), tok); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("claim(%q) = %v, want ErrLeaseLost", tok, err)
		}
	}
	if _, _, err := q.claim(context.Background(), it.Lease); err != nil {
		t.Errorf("claim(%q) after the foreign tokens: %v", it.Lease, err)
	}
}

// TestStatusError: a status error names the status, with no trailing space when the server sent
// no description, and only the statuses of a passing condition are transient.
func TestStatusError(t *testing.T) {
	for _, c := range []struct {
		code, desc, want string
		transient        bool
	}{
		{"503", "", "pull: status 503", true},
		{"409", "Leadership Change", "pull: status 409 Leadership Change", true},
		{"409", "Server Shutdown", "pull: status 409 Server Shutdown", true},
		{"409", "Exceeded MaxWaiting", "pull: status 409 Exceeded MaxWaiting", true},
		{"409", "Consumer Deleted", "pull: status 409 Consumer Deleted", false},
		{"409", "Message Size Exceeds MaxBytes", "pull: status 409 Message Size Exceeds MaxBytes", false},
		{"400", "Bad Request", "pull: status 400 Bad Request", false},
	} {
		e := &statusError{c.code, c.desc}
		if got := e.Error(); got != c.want {
			t.Errorf("statusError{%q, %q}.Error() = %q, want %q", c.code, c.desc, got, c.want)
		}
		if got := e.transient(); got != c.transient {
			t.Errorf("statusError{%q, %q}.transient() = %v, want %v", c.code, c.desc, got, c.transient)
		}
	}
}

// startConn starts a single node and connects to it; both end with the test.
func startConn(t *testing.T) *nats.Conn {
	t.Helper()
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestPullSubGoneBeforeHandler: a pull's subscription that goes away (here unsubscribed, as a
// drain of the connection removes it) after it was made but before startPull set its closed
// handler never runs that handler. The Lease must learn it at once from the subscription itself,
// not wait for the pull's fallback timer (about 5.5s) and then pull again into the same state.
func TestPullSubGoneBeforeHandler(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, nc, "subgone", WithFetchBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.subscribed = func(sub *nats.Subscription) { _ = sub.Unsubscribe() }
	lctx, lcancel := context.WithTimeout(ctx, 8*time.Second)
	defer lcancel()
	start := time.Now()
	it, err := q.Lease(lctx)
	if !errors.Is(err, errSubClosed) || time.Since(start) > time.Second {
		t.Errorf("Lease whose pull's subscription went before its handler: %v, %v after %v; want errSubClosed at once", it, err, time.Since(start))
	}
}

// infoStub is a consumer whose Info fails with err.
type infoStub struct {
	jetstream.Consumer
	err error
}

func (s infoStub) Info(context.Context) (*jetstream.ConsumerInfo, error) { return nil, s.err }

// TestConsumerGoneVerdict: after a 503, only the server's word that the consumer (10014) or its
// stream (10059) is not found ends a Lease with ErrConsumerGone. Any other answer, as JetStream
// gives during a leader change (10008 temporarily unavailable, a consumer offline, no responders,
// a timeout), leaves the Lease waiting for the failover to pass.
func TestConsumerGoneVerdict(t *testing.T) {
	for _, c := range []struct {
		err  error
		gone bool
	}{
		{jetstream.ErrConsumerNotFound, true},
		{&jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, false},
		{&jetstream.APIError{Code: 500, ErrorCode: 10119, Description: "consumer is offline"}, false},
		{&jetstream.APIError{Code: 404, Description: "not found, no error code"}, false},
		{jetstream.ErrJetStreamNotEnabled, false},
		{nats.ErrNoResponders, false},
		{context.DeadlineExceeded, false},
	} {
		q := &Queue{cons: infoStub{err: c.err}, stream: "WQ_verdict"}
		err := q.consumerGone(context.Background())
		if gone := errors.Is(err, ErrConsumerGone); gone != c.gone {
			t.Errorf("consumer info failing with %v: %v; want gone %t", c.err, err, c.gone)
		}
	}
}
