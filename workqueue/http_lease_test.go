package workqueue_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// holdQueue is a Queue whose Lease is slow to answer: once the queue under it has leased an item,
// it says so on leased and holds the item until its ctx ends (the window in which the API has an
// item its client may no longer want), and once its ctx ended without an item it returns only
// after late. polls counts the Leases in progress.
type holdQueue struct {
	workqueue.Queue
	leased chan *workqueue.Item
	late   time.Duration
	polls  atomic.Int32
}

func newHoldQueue(t *testing.T) *holdQueue {
	return &holdQueue{Queue: newMemory(t, workqueuetest.Config{LeaseDuration: 10 * time.Second}), leased: make(chan *workqueue.Item, 1)}
}

func (h *holdQueue) Lease(ctx context.Context) (*workqueue.Item, error) {
	h.polls.Add(1)
	defer h.polls.Add(-1)
	it, err := h.Queue.Lease(ctx)
	if err != nil {
		time.Sleep(h.late)
		return nil, err
	}
	h.leased <- it
	<-ctx.Done()
	return it, nil
}

// releaseQueue is a holdQueue with a Release that records the leases it gets (and nacks them, so
// that the item comes back).
type releaseQueue struct {
	*holdQueue
	released chan string
}

func (r *releaseQueue) Release(ctx context.Context, lease string) error {
	r.released <- lease
	return r.Queue.Nack(ctx, lease, 0)
}

func serve(t *testing.T, q workqueue.Queue) (*httptest.Server, *workqueue.Client) {
	t.Helper()
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	return serveHandler(t, api)
}

// leasedOverHTTP serves m, adds an item to it, and leases it through a Client of the server.
func leasedOverHTTP(t *testing.T, m *workqueue.Memory) (*workqueue.Client, *workqueue.Item) {
	t.Helper()
	_, cl := serve(t, m)
	if _, err := m.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	return cl, it
}

// serveHandler serves h and returns the server and a Client of it, both closed when the test ends.
func serveHandler(t *testing.T, h http.Handler) (*httptest.Server, *workqueue.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestClientLeaseCancelledAfterServerLeased: the client's ctx ends after the server leased an item
// for it and before the answer came. The item must reach the caller, or be back in the queue at
// once; either way on its first attempt. (The client used to drop the answer, and the server then
// nacked the item, which counted the attempt: the next lease was attempt 2.)
func TestClientLeaseCancelledAfterServerLeased(t *testing.T) {
	hq := newHoldQueue(t)
	_, cl := serve(t, hq)
	id, err := hq.Add(bg(t), []byte("x"), workqueue.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg(t))
	go func() {
		<-hq.leased
		cancel()
	}()
	it, err := cl.Lease(ctx)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Lease: %v, want an item or context.Canceled", err)
		}
		// Not handed over: it must be ready again now, not after its lease.
		lctx, lcancel := context.WithTimeout(bg(t), time.Second)
		defer lcancel()
		if it, err = hq.Queue.Lease(lctx); err != nil {
			t.Fatalf("the item leased for the cancelled Lease is not back: %v", err)
		}
	}
	if it.ID != id || it.Attempt != 1 {
		t.Errorf("item %s attempt %d, want %s attempt 1 (no attempt counted for a lease nobody received)", it.ID, it.Attempt, id)
	}
	if err := hq.Queue.Ack(bg(t), it.Lease); err != nil {
		t.Errorf("Ack: %v", err)
	}
}

// TestClientLeaseWaitsForServerPoll: a Lease whose ctx ended returns only once the server's poll for
// it has ended, so that no poll outlives it and leases an item that comes later for nobody (the
// cause of workqueuetest's LeaseBatch flake over HTTP: its noLease left a poll behind that took the
// item nacked next, counting an attempt).
func TestClientLeaseWaitsForServerPoll(t *testing.T) {
	hq := newHoldQueue(t)
	hq.late = 500 * time.Millisecond
	_, cl := serve(t, hq)
	ctx, cancel := context.WithTimeout(bg(t), 300*time.Millisecond)
	defer cancel()
	if it, err := cl.Lease(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lease on an empty queue: %v, %v; want context.DeadlineExceeded", it, err)
	}
	if n := hq.polls.Load(); n != 0 {
		t.Errorf("%d server polls still running after Lease returned, want 0", n)
	}
}

// TestAPIReleasesItemOfGoneClient: a client that goes away (its request ends) after the server
// leased an item for it gets nothing; the item is released (not nacked: a Release does not count
// the attempt) when the queue can.
func TestAPIReleasesItemOfGoneClient(t *testing.T) {
	rq := &releaseQueue{holdQueue: newHoldQueue(t), released: make(chan string, 1)}
	srv, _ := serve(t, rq)
	if _, err := rq.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg(t))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+workqueue.APIPrefix+"lease", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	it := <-rq.leased
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	select {
	case l := <-rq.released:
		if l != it.Lease {
			t.Errorf("released %q, want the lease %q", l, it.Lease)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the item leased for the gone client was not released")
	}
}

// failWriter is a ResponseWriter whose connection is gone: every write fails.
type failWriter struct{ h http.Header }

func (f *failWriter) Header() http.Header       { return f.h }
func (f *failWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }
func (f *failWriter) WriteHeader(int)           {}

// TestAPIGivesBackItemItCouldNotWrite: the answer with the item cannot be written (the request's
// ctx is still alive): the item is given back at once rather than left leased to nobody.
func TestAPIGivesBackItemItCouldNotWrite(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10 * time.Second})
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(bg(t), http.MethodPost, workqueue.APIPrefix+"lease?wait=5s", nil)
	api.ServeHTTP(&failWriter{h: http.Header{}}, req)
	s, err := q.Stats(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready != 1 || s.Leased != 0 {
		t.Errorf("after a failed answer: %+v, want the item ready again", s)
	}
}

// TestAPICancelBeforePoll: a cancel that reaches the server before its poll (they travel on two
// connections) ends the poll as soon as it comes.
func TestAPICancelBeforePoll(t *testing.T) {
	hq := newHoldQueue(t)
	srv, _ := serve(t, hq)
	post := func(path string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg(t), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+workqueue.APIPrefix+path, bytes.NewReader(nil))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("cancel?poll=p1"); code != http.StatusNoContent {
		t.Fatalf("cancel: %d, want 204", code)
	}
	if code := post("lease?wait=20s&poll=p1"); code != http.StatusNoContent {
		t.Errorf("lease of a cancelled poll: %d, want 204", code)
	}
	for _, path := range []string{"cancel", "cancel?poll=" + string(bytes.Repeat([]byte("x"), 65)), "lease?poll=" + string(bytes.Repeat([]byte("x"), 65))} {
		if code := post(path); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d, want 400", path, code)
		}
	}
}

// TestAPIPollIDInUse: a lease request whose poll ID names a poll still waiting is refused with
// 400 saying so (a cancel by that ID could not tell the two apart), and the waiting poll is left
// alone: it still ends by its own cancel.
func TestAPIPollIDInUse(t *testing.T) {
	hq := newHoldQueue(t)
	srv, _ := serve(t, hq)
	first := make(chan int, 1)
	go func() {
		code, _ := apiCall(t, srv, "POST", "lease?wait=20s&poll=p1", "")
		first <- code
	}()
	// The API registers a poll before it calls the queue's Lease.
	for deadline := time.Now().Add(5 * time.Second); hq.polls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("first poll did not reach the queue in 5s")
		}
	}
	if code, body := apiCall(t, srv, "POST", "lease?wait=0&poll=p1", ""); code != http.StatusBadRequest || !strings.Contains(body, `poll id \"p1\" is in use by a lease request still waiting`) {
		t.Errorf("second lease with a poll ID in use: %d %q, want 400 saying it is in use", code, body)
	}
	select {
	case code := <-first:
		t.Fatalf("first poll ended (%d) when the second came", code)
	default:
	}
	if code, body := apiCall(t, srv, "POST", "cancel?poll=p1", ""); code != http.StatusNoContent {
		t.Fatalf("cancel: %d %q", code, body)
	}
	select {
	case code := <-first:
		if code != http.StatusNoContent {
			t.Errorf("cancelled first poll: %d, want 204", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("first poll still waiting 5s after its cancel")
	}
}
