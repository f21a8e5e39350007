package workqueue_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
	"github.com/prometheus/client_golang/prometheus"
)

// away answers every request as a stopping server does.
var away http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	http.Error(w, `{"error":"workqueue: server stopping"}`, http.StatusServiceUnavailable)
})

// TestPoolReportsOutcomeAfterServerRestart: an item finished while its server is away (answering
// 503, as a stopping one does) is acked once the server is back, not done again when its lease runs
// out: the Pool makes the Ack again while the queue is unavailable.
func TestPoolReportsOutcomeAfterServerRestart(t *testing.T) {
	q := mustMemory(t)
	ss, cl := swapServed(t, q)
	var calls atomic.Int32
	started, finish := make(chan struct{}), make(chan struct{})
	h := workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-finish
		return nil
	})
	p, err := workqueue.NewPool(cl, h, workqueue.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	<-started
	ss.h.Store(&away)
	close(finish)
	time.Sleep(time.Second) // the Ack fails, and is made again, while the server is away
	if s, _ := q.Stats(bg(t)); s.Leased != 1 {
		t.Fatalf("while the server is away: %+v, want the item still leased", s)
	}
	ss.serve(t, q)
	await.True(t, "the ack to land", 20*time.Second, func() bool { s, _ := q.Stats(bg(t)); return s.Depth() == 0 })
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want once", n)
	}
	// The pool counts the outcome once its Ack call returns, a moment after the queue has it.
	await.True(t, "the pool to count the ack", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	if c := p.Counts(); c != (workqueue.Counts{Acked: 1}) {
		t.Errorf("counts %+v, want one acked", c)
	}
}

// TestStaleTokenMissesRestartedMemory: a Memory of a restarted server numbers its items from 1
// again, so a worker's Ack made again with a token from before the restart must not end the lease
// another worker holds on the new queue's item 1: the API's tokens name the Memory that made them.
func TestStaleTokenMissesRestartedMemory(t *testing.T) {
	q1 := mustMemory(t)
	ss, cl := swapServed(t, q1)
	started, finish := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h := workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if calls.Add(1) == 1 {
			close(started)
			<-finish
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	})
	p, err := workqueue.NewPool(cl, h, workqueue.WithConcurrency(1), workqueue.WithProgressEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	if _, err := q1.Add(bg(t), []byte("old"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	<-started
	ss.h.Store(&away)
	close(finish) // its Ack fails while the server is away, and is made again
	q2 := mustMemory(t)
	if _, err := q2.Add(bg(t), []byte("new"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := q2.Lease(bg(t)) // another worker holds the new queue's item 1
	if err != nil {
		t.Fatal(err)
	}
	ss.serve(t, q2)
	await.True(t, "the old item's outcome", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := q2.Nack(bg(t), b.Lease, 0); err != nil {
		t.Errorf("the other worker's Nack of the new item: %v, want its lease intact", err)
	}
	if s, _ := q2.Stats(bg(t)); s.Depth() != 1 {
		t.Errorf("the restarted queue: %+v, want its one item", s)
	}
}

// TestDrainBoundsOutcomeCall: an Ack in flight to a server that took it and hangs ends within the
// outcome grace (2s) after the drain budget, and Run returns; it used to hold Run for the whole
// outcome budget (30s).
func TestDrainBoundsOutcomeCall(t *testing.T) {
	q := mustMemory(t)
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	defer close(hang)
	var acking atomic.Bool
	_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == workqueue.APIPrefix+"ack" {
			acking.Store(true)
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		api.ServeHTTP(w, r)
	}))
	p, err := workqueue.NewPool(cl, ackAll, workqueue.WithDrainTimeout(200*time.Millisecond), workqueue.WithProgressEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the ack in flight", 20*time.Second, acking.Load)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(6 * time.Second):
		t.Errorf("Run still running 6s after ctx ended, with a drain budget of 200ms and a grace of 2s")
		<-stopped
	}
	if c := p.Counts(); c != (workqueue.Counts{Lost: 1}) {
		t.Errorf("counts %+v, want the one item lost (its Ack did not reach the queue), not acked", c)
	}
}

// TestPoolLogsLeaseErrors: a Lease error other than ErrUnavailable (a wrong server URL's 404) is
// logged again every leaseErrLogEvery (here 500ms), once for the pool however many workers try, so
// that it is seen but floods nothing; a 502 or 504 of a proxy in front of the server is
// ErrUnavailable, logged once per outage.
func TestPoolLogsLeaseErrors(t *testing.T) {
	defer workqueue.SetLeaseErrLogEvery(500 * time.Millisecond)()
	for _, tc := range []struct {
		status   int
		min, max int
	}{{http.StatusNotFound, 2, 4}, {http.StatusBadGateway, 1, 1}, {http.StatusGatewayTimeout, 1, 1}} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `{"error":"no"}`, tc.status)
			}))
			if _, err := cl.Lease(bg(t)); errors.Is(err, workqueue.ErrUnavailable) != (tc.status != http.StatusNotFound) {
				t.Errorf("Lease answered %d: %v", tc.status, err)
			}
			core, logs := observer.New(zap.WarnLevel)
			p, err := workqueue.NewPool(cl, ackAll, workqueue.WithConcurrency(32), workqueue.WithLogger(zap.New(core)), workqueue.WithProgressEvery(0))
			if err != nil {
				t.Fatal(err)
			}
			stop := runPool(t, p)
			time.Sleep(1200 * time.Millisecond)
			stop()
			if n := logs.FilterMessageSnippet("lease failed").Len(); n < tc.min || n > tc.max {
				t.Errorf("%d lease failures logged in 1.2s of %d answers to 32 workers, want %d to %d", n, tc.status, tc.min, tc.max)
			}
		})
	}
}

// nopJournal takes every change and keeps nothing.
type nopJournal struct{}

func (nopJournal) Commit([]workqueue.Change) error { return nil }

// TestAPITokensOfJournaledMemory: a Memory with a Journal numbers on from its records after a
// restart and keeps their leases, so its tokens over HTTP are the queue's own and outlive the
// server's run; a Memory without one gets tokens of this run only.
func TestAPITokensOfJournaledMemory(t *testing.T) {
	for name, opts := range map[string][]workqueue.Option{
		"journal":    {workqueue.WithJournal(nopJournal{}, nil, 0)},
		"no journal": nil,
	} {
		t.Run(name, func(t *testing.T) {
			cl, it := leasedOverHTTP(t, mustMemory(t, opts...))
			if own := !strings.Contains(it.Lease, "~"); own != (opts != nil) {
				t.Errorf("token %q over HTTP; want the queue's own token %v", it.Lease, opts != nil)
			}
			if err := cl.Ack(bg(t), it.Lease); err != nil {
				t.Errorf("Ack(%q): %v", it.Lease, err)
			}
		})
	}
}

// TestPoolsNamedShareRegisterer: two pools named with WithPoolName register with one registerer,
// their metrics told apart by the pool label; two unnamed ones collide, with an error that says how.
func TestPoolsNamedShareRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"thumbnails", "reports"} {
		if _, err := workqueue.NewPool(mustMemory(t), ackAll, workqueue.WithRegisterer(reg), workqueue.WithPoolName(name)); err != nil {
			t.Fatalf("pool %s: %v", name, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_workqueue_in_flight_items" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "pool" {
						pools[l.GetValue()] = true
					}
				}
			}
		}
	}
	if !pools["thumbnails"] || !pools["reports"] || len(pools) != 2 {
		t.Errorf("in-flight gauges for pools %v, want thumbnails and reports", pools)
	}
	unnamed := prometheus.NewRegistry()
	if _, err := workqueue.NewPool(mustMemory(t), ackAll, workqueue.WithRegisterer(unnamed)); err != nil {
		t.Fatal(err)
	}
	if _, err := workqueue.NewPool(mustMemory(t), ackAll, workqueue.WithRegisterer(unnamed)); err == nil || !strings.Contains(err.Error(), "WithPoolName") {
		t.Errorf("a second unnamed pool on one registerer: %v, want an error naming WithPoolName", err)
	}
}
