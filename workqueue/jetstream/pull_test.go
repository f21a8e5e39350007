package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/faultproxy"
	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// leaseResult is what a Lease run in a goroutine returned.
type leaseResult struct {
	it  *workqueue.Item
	err error
}

// goLease runs q.Lease(ctx) in a goroutine.
func goLease(ctx context.Context, q *wqjs.Queue) <-chan leaseResult {
	ch := make(chan leaseResult, 1)
	go func() {
		it, err := q.Lease(ctx)
		ch <- leaseResult{it, err}
	}()
	return ch
}

// addAndLease adds an item and checks that the Lease whose result comes on leased gets it, at
// attempt 1, within limit of the add (what names the Lease in a failure); it returns the item.
func addAndLease(ctx context.Context, t *testing.T, q *wqjs.Queue, leased <-chan leaseResult, limit time.Duration, what string) *workqueue.Item {
	t.Helper()
	added := time.Now()
	id, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := <-leased
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	if waited := time.Since(added); r.it.ID != id || r.it.Attempt != 1 || waited > limit {
		t.Errorf("%s: leased %s at attempt %d %v after the add; want %s at attempt 1 within %v", what, r.it.ID, r.it.Attempt, waited, id, limit)
	}
	return r.it
}

// spyPulls subscribes (on its own connection) to the pull requests of queue name's consumer: the
// server gets them all the same, and the test learns each pull's reply subject.
func spyPulls(t *testing.T, url, name string) *nats.Subscription {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("$JS.API.CONSUMER.MSG.NEXT.WQ_" + name + "." + wqjs.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// nextPull waits for the next pull request the spy sees and returns its reply subject.
func nextPull(t *testing.T, spy *nats.Subscription) string {
	t.Helper()
	m, err := spy.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no pull request within 5s: %v", err)
	}
	return m.Reply
}

// TestPullStatus sends a status message of the kind the server sends about a pull (Status and
// Description headers, no payload) to the inbox of a Lease's blocking pull. A heartbeat (100)
// leaves the pull waiting; 404 and 408 end it without a message and the Lease keeps waiting on a
// new pull; so do the statuses of a passing server condition (409 Leadership Change, Server
// Shutdown, Exceeded MaxWaiting; 503), after a short backoff; any other status ends the Lease with
// an error that names it. In every case the next item added is leased at once, at attempt 1: the
// server's own request for the ended pull, which it still holds, has lost its interest and is
// skipped.
func TestPullStatus(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, c := range []struct {
		status, desc string
		fails        bool // Lease returns an error naming the status
		repulls      bool // the pull ends and the Lease starts another
	}{
		{status: "100", desc: "Idle Heartbeat"},
		{status: "404", desc: "No Messages", repulls: true},
		{status: "408", desc: "Request Timeout", repulls: true},
		{status: "409", desc: "Exceeded MaxWaiting", repulls: true},
		{status: "409", desc: "Leadership Change", repulls: true},
		{status: "409", desc: "Server Shutdown", repulls: true},
		{status: "503", repulls: true},
		{status: "409", desc: "Consumer Deleted", fails: true},
		{status: "409", desc: "Message Size Exceeds MaxBytes", fails: true},
		{status: "400", desc: "Bad Request", fails: true},
	} {
		t.Run(c.status+" "+c.desc, func(t *testing.T) {
			name := fmt.Sprintf("status%d", i)
			q, err := wqjs.Open(ctx, nc, name, wqjs.WithFetchBatch(1), wqjs.WithLeaseDuration(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			spy := spyPulls(t, node.URL(), name)
			lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
			defer lcancel()
			leased := goLease(lctx, q)
			reply := nextPull(t, spy)
			st := nats.NewMsg(reply)
			st.Header.Set("Status", c.status)
			if c.desc != "" {
				st.Header.Set("Description", c.desc)
			}
			if err := nc.PublishMsg(st); err != nil {
				t.Fatal(err)
			}
			if c.fails {
				r := <-leased
				if r.err == nil || errors.Is(r.err, workqueue.ErrClosed) || errors.Is(r.err, context.DeadlineExceeded) ||
					!strings.Contains(r.err.Error(), c.status) || !strings.Contains(r.err.Error(), c.desc) {
					t.Fatalf("Lease after status %s %s: %v, %v; want an error naming the status", c.status, c.desc, r.it, r.err)
				}
				leased = goLease(lctx, q)
			}
			if c.fails || c.repulls {
				nextPull(t, spy) // the new pull is on the server: the item goes to it
			}
			select {
			case r := <-leased:
				t.Fatalf("Lease after status %s %s and a new pull: %v, %v; want it waiting", c.status, c.desc, r.it, r.err)
			default:
			}
			addAndLease(ctx, t, q, leased, 5*time.Second, "Lease after status "+c.status+" "+c.desc+" and an add")
			if n, _, _ := spy.Pending(); !c.fails && !c.repulls && n != 0 {
				t.Errorf("%d new pulls after status %s %s, want the pull to go on", n, c.status, c.desc)
			}
		})
	}
}

// TestLeaseOnClosedConn: with the caller's connection closed, a Lease cannot start its pull and
// returns that error at once, wrapped in workqueue.ErrClosed (the queue cannot work any more, as
// after its Close), for either fetch batch.
func TestLeaseOnClosedConn(t *testing.T) {
	_, node := startNode(t)
	for _, batch := range []int{1, 10} {
		nc, err := nats.Connect(node.URL())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		q, err := wqjs.Open(ctx, nc, fmt.Sprintf("closedconn%d", batch), wqjs.WithFetchBatch(batch))
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		start := time.Now()
		it, err := q.Lease(ctx)
		if !errors.Is(err, nats.ErrConnectionClosed) || !errors.Is(err, workqueue.ErrClosed) || time.Since(start) > time.Second {
			t.Errorf("batch %d: Lease on a closed connection: %v, %v after %v; want workqueue.ErrClosed and nats.ErrConnectionClosed at once", batch, it, err, time.Since(start))
		}
		q.Close()
		cancel()
	}
}

// TestLeaseRequestNotSent: while the connection is down and has no reconnect buffer, the pull's
// request cannot be sent: Lease returns that error at once and leaves no subscription behind.
func TestLeaseRequestNotSent(t *testing.T) {
	_, node := startNode(t)
	nc, err := nats.Connect(node.URL(), nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "nobuf", wqjs.WithFetchBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	subs := nc.NumSubscriptions()
	node.Shutdown()
	for !nc.IsReconnecting() {
		if ctx.Err() != nil {
			t.Fatal("the connection did not notice the server's shutdown")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	it, err := q.Lease(ctx)
	if !errors.Is(err, nats.ErrReconnectBufExceeded) || time.Since(start) > time.Second {
		t.Errorf("Lease while reconnecting: %v, %v after %v; want nats.ErrReconnectBufExceeded at once", it, err, time.Since(start))
	}
	if n := nc.NumSubscriptions(); n != subs {
		t.Errorf("%d subscriptions after the failed Lease, want %d as before it", n, subs)
	}
}

// TestCloseOnBrokenConn: Close while a Lease waits on a connection on which the server no longer
// answers does not wait for the drain of the pull's subscription (nats.go's flush would wait 10s):
// it returns within drainWait (2s) and some slack, and the Lease returns ErrClosed.
func TestCloseOnBrokenConn(t *testing.T) {
	nc, _, px := startProxied(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, batch := range []int{1, 10} {
		name := fmt.Sprintf("broken%d", batch)
		q, err := wqjs.Open(ctx, nc, name, wqjs.WithFetchBatch(batch))
		if err != nil {
			t.Fatal(err)
		}
		leased := goLease(ctx, q)
		waitForPull(ctx, t, nc, name)
		px.PauseReplies()
		start := time.Now()
		q.Close()
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("batch %d: Close took %v on a broken connection, want about 2s (drainWait)", batch, took)
		}
		if r := <-leased; !errors.Is(r.err, workqueue.ErrClosed) {
			t.Errorf("batch %d: Lease: %v, %v; want ErrClosed", batch, r.it, r.err)
		}
		px.Resume()
	}
}

// TestPullEndLost: when nothing the server sends reaches the client any more, the end of a Lease's
// pull (its 408) is lost: the Lease ends the pull itself a second after it was due, gives up the
// drain after drainWait, and pulls again (the server gets the new request: the other direction
// works). Once the connection works again, an item added is leased at once, at attempt 1.
func TestPullEndLost(t *testing.T) {
	nc, node, px := startProxied(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "endlost", wqjs.WithFetchBatch(1), wqjs.WithLeaseDuration(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	spy := spyPulls(t, node.URL(), "endlost")
	leased := goLease(ctx, q)
	nextPull(t, spy)
	first := time.Now()
	px.PauseReplies()
	// The pull expires after 4.5s (5s less a tenth), the Lease gives up on it a second later and
	// on its drain 2s after that.
	if _, err := spy.NextMsg(12 * time.Second); err != nil {
		t.Fatalf("no new pull within 12s of the first, whose end was lost: %v", err)
	}
	if gap := time.Since(first); gap < 5*time.Second {
		t.Errorf("new pull %v after the first, before the first was due to end", gap)
	}
	px.Resume()
	addAndLease(ctx, t, q, leased, 7*time.Second, "Lease after the lost pull end") // within a pull's expiry
}

// TestLeaseServerShutdown: a server shutting down ends the pulls waiting on it with 409 Server
// Shutdown, a passing condition (in a cluster the client reconnects to another node): a Lease
// waiting then keeps waiting, pulling again, and Close ends it with ErrClosed.
func TestLeaseServerShutdown(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "shutdown", wqjs.WithFetchBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	leased := goLease(ctx, q)
	waitForPull(ctx, t, nc, "shutdown")
	node.Shutdown()
	select {
	case r := <-leased:
		t.Fatalf("Lease across a server shutdown: %v, %v; want it waiting", r.it, r.err)
	case <-time.After(2 * time.Second):
	}
	start := time.Now()
	q.Close()
	if r := <-leased; !errors.Is(r.err, workqueue.ErrClosed) {
		t.Errorf("Lease after Close: %v, %v; want ErrClosed", r.it, r.err)
	}
	// Close may wait drainWait (2s) for the drain of a pull sent while the connection is down.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v", took)
	}
}

// TestLeaseExceededMaxWaiting: with the consumer's waiting list full (512 pulls from elsewhere), the
// server refuses a Lease's pull with 409 Exceeded MaxWaiting, a passing condition: the Lease keeps
// pulling, and once those pulls are gone it gets the item added at attempt 1; nothing was
// delivered to the refused pulls.
func TestLeaseExceededMaxWaiting(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "maxwaiting", wqjs.WithFetchBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	other, err := nats.Connect(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	inbox := other.NewInbox()
	sub, err := other.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "WQ_maxwaiting", wqjs.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range ci.Config.MaxWaiting {
		if err := other.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.WQ_maxwaiting."+wqjs.ConsumerName, inbox, []byte(`{"batch":1,"expires":50000000000}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	spy := spyPulls(t, node.URL(), "maxwaiting")
	leased := goLease(ctx, q)
	// Refused, the Lease pulls again: the first pull and two more.
	for range 3 {
		nextPull(t, spy)
	}
	select {
	case r := <-leased:
		t.Fatalf("Lease with %d pulls waiting: %v, %v; want it waiting", ci.Config.MaxWaiting, r.it, r.err)
	default:
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// The server must have the unsubscribe before the add: until then it may deliver the item to
	// one of those pulls, which counts an attempt.
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	id, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The server drops pulls without interest when it looks at them: at the latest a second on,
	// and the Lease pulls again within a second (its backoff's cap).
	r := <-leased
	if r.err != nil || r.it.ID != id || r.it.Attempt != 1 {
		t.Fatalf("Lease once the other pulls are gone: %v, %v; want %s at attempt 1", r.it, r.err, id)
	}
}

// TestLeaseConsumerDeleted: deleting the consumer (or its stream) ends a waiting Lease's pull with
// 409 Consumer Deleted, which the Lease returns as an error naming it and wrapping
// ErrConsumerGone. Then nothing answers the pull requests (503, as while JetStream fails over), but
// the server, asked for the consumer, says it is not found: a Lease then returns ErrConsumerGone at
// once. It used to pull again and again until its ctx ended.
func TestLeaseConsumerDeleted(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		batch  int
		stream bool // delete the stream, not only the consumer
	}{{1, false}, {10, false}, {1, true}} {
		name := fmt.Sprintf("consdeleted%d", c.batch)
		if c.stream {
			name = "streamdeleted"
		}
		t.Run(name, func(t *testing.T) {
			q, err := wqjs.Open(ctx, nc, name, wqjs.WithFetchBatch(c.batch))
			if err != nil {
				t.Fatal(err)
			}
			leased := goLease(ctx, q)
			waitForPull(ctx, t, nc, name)
			if c.stream {
				err = js.DeleteStream(ctx, "WQ_"+name)
			} else {
				err = js.DeleteConsumer(ctx, "WQ_"+name, wqjs.ConsumerName)
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := <-leased; !errors.Is(r.err, wqjs.ErrConsumerGone) || !strings.Contains(r.err.Error(), "409 Consumer Deleted") {
				t.Errorf("Lease as its consumer is deleted: %v, %v; want ErrConsumerGone naming 409 Consumer Deleted", r.it, r.err)
			}
			for i := range 3 {
				lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				it, err := q.Lease(lctx)
				lcancel()
				if !errors.Is(err, wqjs.ErrConsumerGone) || time.Since(start) > time.Second {
					t.Errorf("Lease %d without a consumer: %v, %v after %v; want ErrConsumerGone at once", i, it, err, time.Since(start))
				}
			}
			start := time.Now()
			q.Close()
			if took := time.Since(start); took > time.Second {
				t.Errorf("Close took %v", took)
			}
		})
	}
}

// TestLeaseNoResponders: while pulls get 503 (no responders) but the server still has the consumer
// (JetStream unavailable for a moment, as in a failover), a Lease keeps pulling, with a backoff from
// 50ms doubling to 1s, logged at most once a second, and gets the item added once pulls work again.
func TestLeaseNoResponders(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	core, logs := observer.New(zap.InfoLevel)
	q, err := wqjs.Open(ctx, nc, "noresponders", wqjs.WithFetchBatch(1), wqjs.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	spy := spyPulls(t, node.URL(), "noresponders")
	leased := goLease(ctx, q)
	// 50+100+200+400+800ms of backoff: six pulls in the first 2s, the seventh at 2.55s.
	pulls := 0
	for start := time.Now(); time.Since(start) < 2*time.Second; pulls++ {
		st := nats.NewMsg(nextPull(t, spy))
		st.Header.Set("Status", "503")
		if err := nc.PublishMsg(st); err != nil {
			t.Fatal(err)
		}
	}
	if pulls < 4 || pulls > 10 {
		t.Errorf("%d pulls in 2s of 503, want a backoff from 50ms doubling to 1s", pulls)
	}
	if n := logs.FilterField(zap.String("status", "503")).Len(); n < 1 || n > 3 {
		t.Errorf("%d log lines about 503 in about 2s, want 1 to 3 (at most one a second)", n)
	}
	select {
	case r := <-leased:
		t.Fatalf("Lease while pulls get 503 and the consumer exists: %v, %v; want it waiting", r.it, r.err)
	default:
	}
	nextPull(t, spy) // the backoff is at its cap: the next pull, unanswered, waits for the item
	addAndLease(ctx, t, q, leased, 5*time.Second, "Lease after the 503s")
}

// TestLeaseConnClosed: a Lease waiting on its pull when the caller closes the connection returns
// nats.ErrConnectionClosed at once, not when the pull was due to end.
func TestLeaseConnClosed(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "connclosed", wqjs.WithFetchBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	leased := goLease(ctx, q)
	waitForPull(ctx, t, nc, "connclosed")
	start := time.Now()
	nc.Close()
	r := <-leased
	if !errors.Is(r.err, nats.ErrConnectionClosed) || time.Since(start) > time.Second {
		t.Errorf("Lease as the connection closes: %v, %v after %v; want nats.ErrConnectionClosed at once", r.it, r.err, time.Since(start))
	}
}

// TestLeaseInBackoffTakesSpare: a Lease waiting out the backoff after transient pull statuses takes
// a message an earlier, cancelled Lease's pull brings, at once and at attempt 1, instead of leaving
// it to handOff, which naks it after a quarter of the lease (here 500ms, less than the backoff) so
// that it comes back at attempt 2.
func TestLeaseInBackoffTakesSpare(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "backoffspare", wqjs.WithFetchBatch(1), wqjs.WithLeaseDuration(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	spy := spyPulls(t, node.URL(), "backoffspare")

	// Lease A's pull stays out after A gives up: it brings the next message, for the next Lease.
	actx, acancel := context.WithCancel(ctx)
	a := goLease(actx, q)
	nextPull(t, spy)
	acancel()
	if r := <-a; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Lease: %v, %v", r.it, r.err)
	}

	// Lease B's own pulls end with a transient status five times: its backoff grows to 800ms.
	b := goLease(ctx, q)
	for range 5 {
		st := nats.NewMsg(nextPull(t, spy))
		st.Header.Set("Status", "409")
		st.Header.Set("Description", "Leadership Change")
		if err := nc.PublishMsg(st); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	it := addAndLease(ctx, t, q, b, 400*time.Millisecond, "Lease in backoff")
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
}

// startProxied starts a single node and connects to it through a fault proxy; all end with the
// test.
func startProxied(t *testing.T) (*nats.Conn, *natstest.Node, *faultproxy.Proxy) {
	t.Helper()
	_, node := startNode(t)
	px := faultproxy.New(t, strings.TrimPrefix(node.URL(), "nats://"))
	nc, err := nats.Connect("nats://" + px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, node, px
}

// playPulls deletes queue name's consumer (on nc) and answers its pull requests instead of the server:
// answer gets each request on a connection of its own (fake), which closes when the test ends.
func playPulls(ctx context.Context, t *testing.T, nc *nats.Conn, url, name string, answer func(fake *nats.Conn, req *nats.Msg)) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, "WQ_"+name, wqjs.ConsumerName); err != nil {
		t.Fatal(err)
	}
	fake, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	_, err = fake.Subscribe("$JS.API.CONSUMER.MSG.NEXT.WQ_"+name+"."+wqjs.ConsumerName, func(m *nats.Msg) { answer(fake, m) })
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestNoWaitPullStatus: with a fetch batch, a Lease first makes a no-wait pull, and it treats the
// status that ends one as it treats the end of a blocking pull (TestPullStatus): a passing server
// condition makes it pull again after a backoff, logged; any other status ends the Lease with an
// error that names it. The test plays the server for the pulls (the consumer is deleted, so its
// subscription to the pull subject is the only responder), ends every no-wait pull with the status
// and leaves blocking pulls unanswered. The Lease used to drop the status and make a blocking
// pull at once, so it neither reported a lasting fault nor backed off from a passing one.
func TestNoWaitPullStatus(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, c := range []struct {
		status, desc string
		fails        bool
	}{
		{status: "409", desc: "Leadership Change"},
		{status: "409", desc: "Server Shutdown"},
		{status: "409", desc: "Exceeded MaxWaiting"},
		{status: "409", desc: "Consumer Deleted", fails: true},
		{status: "409", desc: "Message Size Exceeds MaxBytes", fails: true},
		{status: "400", desc: "Bad Request", fails: true},
	} {
		t.Run(c.status+" "+c.desc, func(t *testing.T) {
			name := fmt.Sprintf("nowait%d", i)
			core, logs := observer.New(zap.InfoLevel)
			q, err := wqjs.Open(ctx, nc, name, wqjs.WithFetchBatch(10), wqjs.WithLogger(zap.New(core)))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var noWait, blocking atomic.Int64
			playPulls(ctx, t, nc, node.URL(), name, func(fake *nats.Conn, m *nats.Msg) {
				if !strings.Contains(string(m.Data), `"no_wait":true`) {
					blocking.Add(1)
					return
				}
				noWait.Add(1)
				st := nats.NewMsg(m.Reply)
				st.Header.Set("Status", c.status)
				st.Header.Set("Description", c.desc)
				_ = fake.PublishMsg(st)
			})
			lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
			defer lcancel()
			start := time.Now()
			leased := goLease(lctx, q)
			if c.fails {
				r := <-leased
				if r.err == nil || !strings.Contains(r.err.Error(), c.status+" "+c.desc) || time.Since(start) > time.Second {
					t.Errorf("Lease after a no-wait pull ended with %s %s: %v, %v after %v; want an error naming the status at once", c.status, c.desc, r.it, r.err, time.Since(start))
				}
				return
			}
			// Backoff 50, 100, 200, 400ms: the fifth pull 750ms after the first.
			time.Sleep(1500 * time.Millisecond)
			select {
			case r := <-leased:
				t.Fatalf("Lease after no-wait pulls ended with %s %s: %v, %v; want it waiting", c.status, c.desc, r.it, r.err)
			default:
			}
			if n, b := noWait.Load(), blocking.Load(); n < 4 || n > 8 || b != 0 {
				t.Errorf("%d no-wait and %d blocking pulls in 1.5s of %s %s; want 4 to 8 no-wait pulls spaced by the backoff", n, b, c.status, c.desc)
			}
			if n := logs.FilterField(zap.String("status", c.status)).FilterField(zap.String("description", c.desc)).Len(); n < 1 || n > 2 {
				t.Errorf("%d log lines about %s %s in 1.5s, want 1 or 2 (at most one a second)", n, c.status, c.desc)
			}
			lcancel()
			<-leased
		})
	}
}

// TestAckServerSilent: Ack waits for the server's confirmation; when the server never answers
// (its replies held) and the caller's ctx has no deadline, Ack gives up after nats.go's default
// API timeout (5s) with an error, for either fetch batch. An item from a blocking pull (fetch
// batch 1) used to be acked with no bound at all: Ack hung until the server answered.
func TestAckServerSilent(t *testing.T) {
	nc, _, px := startProxied(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, batch := range []int{1, 10} {
		q, err := wqjs.Open(ctx, nc, fmt.Sprintf("silent%d", batch), wqjs.WithFetchBatch(batch))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		px.PauseReplies()
		acked := make(chan error, 1)
		start := time.Now()
		go func() { acked <- q.Ack(context.Background(), it.Lease) }()
		select {
		case err := <-acked:
			if err == nil || time.Since(start) < 4*time.Second {
				t.Errorf("batch %d: Ack with the server silent: %v after %v; want an error after about 5s", batch, err, time.Since(start))
			}
		case <-time.After(8 * time.Second):
			t.Errorf("batch %d: Ack with the server silent still waiting after 8s; want an error after about 5s", batch)
			px.Resume()
			<-acked
		}
		px.Resume()
		q.Close()
	}
}

// TestFetchBatchKeepsPulled: the messages a no-wait pull of a fetch batch brought wait for the
// next Leases however long the worker of the first one takes, as WithFetchBatch says (they count as
// leased from the pull and are refreshed when handed out). The 2s bound on a no-wait pull is for
// an answer that never comes: it used to end the pull 2s after it started even when its answer had
// come, and nak the messages no Lease had taken yet, each of which then came back at attempt 2
// (and, with WithMaxAttempts, towards burial without ever being worked on).
func TestFetchBatchKeepsPulled(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "keeppulled", wqjs.WithFetchBatch(10))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const items = 5
	for range items {
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if it, err := q.Lease(ctx); err != nil || it.Attempt != 1 {
		t.Fatalf("first Lease: %v, %v; want an item at attempt 1", it, err)
	}
	// The first item's worker works for longer than the no-wait pull's 2s bound; nothing can be
	// polled for, since what must not happen is a Nak.
	time.Sleep(3 * time.Second)
	for i := 1; i < items; i++ {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		it, err := q.Lease(lctx)
		lcancel()
		if err != nil || it.Attempt != 1 {
			t.Errorf("Lease %d, 3s after the pull: %v, %v; want an item at attempt 1", i, it, err)
		}
	}
}

// TestNoWaitPullAnswerLost: a no-wait pull whose answer never comes, wholly or after part of it
// (a reconnect lost it), ends once nothing of it is left to take 2s after it started, and the
// Lease goes on: with a blocking pull if the pull brought nothing, else with a new no-wait pull.
// The test plays the server, as TestNoWaitPullStatus does.
func TestNoWaitPullAnswerLost(t *testing.T) {
	nc, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, part := range []bool{false, true} {
		name := fmt.Sprintf("answerlost%t", part)
		t.Run(name, func(t *testing.T) {
			q, err := wqjs.Open(ctx, nc, name, wqjs.WithFetchBatch(10))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			noWait := make(chan time.Time, 10)
			blocking := make(chan time.Time, 10)
			playPulls(ctx, t, nc, node.URL(), name, func(fake *nats.Conn, m *nats.Msg) {
				if !strings.Contains(string(m.Data), `"no_wait":true`) {
					blocking <- time.Now()
					return
				}
				noWait <- time.Now()
				if part { // a message without JetStream metadata, which the Lease drops
					_ = fake.Publish(m.Reply, []byte("x"))
				}
			})
			lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
			defer lcancel()
			leased := goLease(lctx, q)
			first := <-noWait
			next := blocking
			if part {
				next = noWait
			}
			select {
			case at := <-next:
				if gap := at.Sub(first); gap < time.Second || gap > 4*time.Second {
					t.Errorf("next pull %v after a no-wait pull whose answer was lost; want about 2s", gap)
				}
			case <-time.After(6 * time.Second):
				t.Errorf("no next pull within 6s of a no-wait pull whose answer was lost")
			}
			lcancel()
			<-leased
		})
	}
}
