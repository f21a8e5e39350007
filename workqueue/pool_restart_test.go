package workqueue_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// TestPoolReturnsWhenQueueCloses: once the queue closed and every worker has exited, Run returns
// ErrClosed, although its ctx has not ended and progress logging is on (it used to wait for ctx).
func TestPoolReturnsWhenQueueCloses(t *testing.T) {
	q := mustMemory(t)
	r := startPool(t, q, workqueue.WithConcurrency(2), workqueue.WithProgressEvery(30*time.Second))
	<-r.p.Ready()
	q.Close()
	if ok, err := r.returned(10 * time.Second); !ok {
		t.Errorf("Run still running 10s after the queue closed and its workers exited")
	} else if !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Run returned %v, want ErrClosed", err)
	}
}

// ackAll acks every item.
var ackAll = workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil })

// running is a Pool of ackAll running over a queue.
type running struct {
	p      *workqueue.Pool
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startPool runs a Pool of ackAll over q with opts until the test ends (or stop).
func startPool(t *testing.T, q workqueue.Queue, opts ...workqueue.PoolOption) *running {
	t.Helper()
	p, err := workqueue.NewPool(q, ackAll, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// returned waits up to d for Run to return, and returns whether it did and its error.
func (r *running) returned(d time.Duration) (bool, error) {
	select {
	case err := <-r.done:
		r.once.Do(func() { r.err = err })
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// stop ends Run's ctx and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// swapServer is an HTTP server whose handler can be replaced, as a restarted server on the same
// address would be.
type swapServer struct {
	h atomic.Pointer[http.Handler]
}

func (s *swapServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func (s *swapServer) serve(t *testing.T, q workqueue.Queue) {
	t.Helper()
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = api
	s.h.Store(&h)
}

// swapServed serves q through a swapServer, and returns it and a Client of it (closed, with the
// server, when the test ends).
func swapServed(t *testing.T, q workqueue.Queue) (*swapServer, *workqueue.Client) {
	t.Helper()
	ss := &swapServer{}
	ss.serve(t, q)
	_, cl := serveHandler(t, ss)
	return ss, cl
}

// TestPoolOverClientOutlivesServerRestart: the server's queue closes (a server stopping) and a new
// one takes its place; a Pool over a Client keeps leasing, from the new queue, and logs the outage
// once. (The Client used to turn the server's 503 "closed" into ErrClosed, and each worker that got
// it exited for good.)
func TestPoolOverClientOutlivesServerRestart(t *testing.T) {
	q1 := mustMemory(t)
	ss, cl := swapServed(t, q1)
	core, logs := observer.New(zap.WarnLevel)
	r := startPool(t, cl, workqueue.WithConcurrency(2), workqueue.WithLogger(zap.New(core)))
	p, ctx := r.p, bg(t)
	if _, err := q1.Add(ctx, []byte("before"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the first item acked", 20*time.Second, func() bool { return p.Counts().Acked == 1 })

	q1.Close() // waiting leases answer 503 "workqueue: closed", and so do later ones
	await.True(t, "the outage logged", 20*time.Second, func() bool { return logs.FilterMessageSnippet("lease failed").Len() > 0 })
	if ok, err := r.returned(2 * time.Second); ok { // meanwhile, several retries of both workers
		t.Fatalf("Run returned %v while the server was away", err)
	}

	q2 := mustMemory(t)
	ss.serve(t, q2)
	if _, err := q2.Add(ctx, []byte("after"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the item of the restarted server acked", 20*time.Second, func() bool { return p.Counts().Acked == 2 })
	if n := logs.FilterMessageSnippet("lease failed").Len(); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestClientUnavailableIsNotClosed: a Client whose server's queue closed, or whose server is gone,
// gets ErrUnavailable; ErrClosed is for the Client's own Close.
func TestClientUnavailableIsNotClosed(t *testing.T) {
	q := mustMemory(t)
	srv, cl := serve(t, q)
	q.Close()
	if _, err := cl.Lease(bg(t)); !errors.Is(err, workqueue.ErrUnavailable) || errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Lease from a server whose queue closed: %v, want ErrUnavailable and not ErrClosed", err)
	}
	srv.Close()
	if _, err := cl.Stats(bg(t)); !errors.Is(err, workqueue.ErrUnavailable) {
		t.Errorf("Stats from a stopped server: %v, want ErrUnavailable", err)
	}
	// A port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gone, err := workqueue.NewClient("http://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	if _, err := gone.Lease(bg(t)); !errors.Is(err, workqueue.ErrUnavailable) {
		t.Errorf("Lease from a refused address: %v, want ErrUnavailable", err)
	}
	cl.Close()
	if _, err := cl.Lease(bg(t)); !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Lease after the Client's Close: %v, want ErrClosed", err)
	}
}

// TestAPIStopPolls: StopPolls ends the waiting lease requests at once, later ones answer 503, and
// the other requests are still served, so that a server can stop (http.Server.Shutdown) before its
// queue closes and let in-flight acks complete.
func TestAPIStopPolls(t *testing.T) {
	q := mustMemory(t)
	cq := &countLeases{Queue: q}
	api, err := workqueue.NewAPI(cq)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := q.Add(bg(t), []byte("held"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	held, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := cl.Lease(bg(t)) // the queue is empty: this waits
		waiting <- err
	}()
	await.True(t, "the lease poll waiting", 20*time.Second, func() bool { return cq.waiting.Load() > 0 })
	start := time.Now()
	api.StopPolls()
	select {
	case err := <-waiting:
		if !errors.Is(err, workqueue.ErrUnavailable) {
			t.Errorf("Lease across StopPolls: %v, want ErrUnavailable", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("the waiting lease ended %v after StopPolls", el)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a lease was still waiting 20s after StopPolls")
	}
	if err := cl.Ack(bg(t), held.Lease); err != nil {
		t.Errorf("Ack after StopPolls: %v", err)
	}
	if s, _ := q.Stats(bg(t)); s.Depth() != 0 {
		t.Errorf("stats %+v after the ack, want an empty queue", s)
	}
}

// countLeases counts the Leases in progress.
type countLeases struct {
	workqueue.Queue
	waiting atomic.Int32
}

func (c *countLeases) Lease(ctx context.Context) (*workqueue.Item, error) {
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	return c.Queue.Lease(ctx)
}
