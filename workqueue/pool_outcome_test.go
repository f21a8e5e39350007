package workqueue_test

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// silentAcks serves api, but the first n acks get no answer: each hangs until its client gives up.
func silentAcks(api http.Handler, n int64) (http.Handler, *atomic.Int64) {
	var acks atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == workqueue.APIPrefix+"ack" && acks.Add(1) <= n {
			_, _ = io.Copy(io.Discard, r.Body) // so that the server sees the client go
			<-r.Context().Done()
			return
		}
		api.ServeHTTP(w, r)
	}), &acks
}

// TestPoolRetriesOutcomeWithoutAnswer: an Ack that gets no answer within its call's budget (a
// server that stopped answering for a while) is made again while the item's lease lasts, and the
// item is acked once, not lost. It used to be given up at the first call's deadline
// (context.DeadlineExceeded is not ErrUnavailable), and the item was done again after its lease.
func TestPoolRetriesOutcomeWithoutAnswer(t *testing.T) {
	q := mustMemory(t, workqueue.WithLeaseDuration(20*time.Second))
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	h, acks := silentAcks(api, 2)
	_, cl := serveHandler(t, h)
	var handled atomic.Int64
	p, err := workqueue.NewPool(cl, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error {
		handled.Add(1)
		return nil
	}), workqueue.WithProgressEvery(0), workqueue.WithOutcomeBudget(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the item's outcome", 15*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if c, n, a := p.Counts(), handled.Load(), acks.Load(); c != (workqueue.Counts{Acked: 1}) || n != 1 || a != 3 {
		t.Errorf("counts %+v, handled %d times, %d acks; want 1 acked, handled once, acked on the third call", c, n, a)
	}
	if s, err := q.Stats(bg(t)); err != nil || s.Depth() != 0 {
		t.Errorf("stats %+v, %v; want the item gone", s, err)
	}
}

// TestPoolGivesUpOutcomeWhenLeaseEnds: an Ack that never gets an answer is made again until the
// item's lease ends, then given up with a log line that says so, and the item counts as lost: the
// queue hands it out again.
func TestPoolGivesUpOutcomeWhenLeaseEnds(t *testing.T) {
	const lease = 2 * time.Second
	q := mustMemory(t, workqueue.WithLeaseDuration(lease))
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	h, acks := silentAcks(api, 1<<62)
	_, cl := serveHandler(t, h)
	core, logs := observer.New(zap.InfoLevel)
	p, err := workqueue.NewPool(cl, ackAll, workqueue.WithProgressEvery(0), workqueue.WithOutcomeBudget(300*time.Millisecond),
		workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	added := time.Now()
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var c workqueue.Counts
	await.True(t, "the item's outcome", 15*time.Second, func() bool { c = p.Counts(); return c != (workqueue.Counts{}) })
	took, a := time.Since(added), acks.Load()
	ended := logs.FilterMessage("outcome not taken before the lease ended; the queue hands the item out again").All()
	if err := stop(); err != nil { // the item's next attempt, handed out at once, goes the same way
		t.Errorf("Run: %v", err)
	}
	if c != (workqueue.Counts{Lost: 1}) || a < 3 || took < lease-time.Second || took > lease+2*time.Second {
		t.Errorf("counts %+v, %d acks, given up after %v; want 1 lost, after at least 3 acks, at the lease's end (%v)", c, a, took, lease)
	}
	var fields map[string]any
	if len(ended) == 1 {
		fields = ended[0].ContextMap()
	}
	if calls, _ := fields["calls"].(int64); fields["outcome"] != "acked" || calls < 3 {
		t.Errorf("log lines about the lease's end: %+v; want one, for the ack, after at least 3 calls", ended)
	}
}
