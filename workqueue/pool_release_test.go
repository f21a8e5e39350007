package workqueue_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// drainTwice runs two Pools over q in turn, each stopped (as by SIGTERM) while its handler runs an
// item that only ends with its ctx, so that the drain budget runs out and the item is released.
// A released item was never failed: m, the queue under q, must still hand it out, on attempt 1
// where it can release (it used to be nacked, which counted the attempt: with max attempts 2 the
// second drain buried it).
func drainTwice(t *testing.T, m *workqueue.Memory, q workqueue.Queue) {
	t.Helper()
	if _, err := m.Add(bg(t), []byte("long job"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		started := make(chan struct{}, 1)
		p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
			started <- struct{}{}
			<-ctx.Done() // a long job, cancelled by the drain budget
			return ctx.Err()
		}), workqueue.WithDrainTimeout(50*time.Millisecond), workqueue.WithProgressEvery(0))
		if err != nil {
			t.Fatal(err)
		}
		stop := runPool(t, p)
		<-started
		if err := stop(); err != nil {
			t.Fatalf("run %d: Run: %v", run, err)
		}
		if c := p.Counts(); c != (workqueue.Counts{Released: 1}) {
			t.Fatalf("run %d: counts %+v, want 1 released", run, c)
		}
	}
	ctx, cancel := context.WithTimeout(bg(t), 5*time.Second)
	defer cancel()
	it, err := m.Lease(ctx)
	if err != nil {
		d, _ := m.Dead(bg(t), 10)
		t.Fatalf("an item released by two drains, never failed, is not handed out again (Lease: %v; dead: %+v)", err, d)
	}
	if it.Attempt != 1 {
		t.Errorf("after two drains the item is on attempt %d, want 1", it.Attempt)
	}
}

func TestPoolDrainDoesNotCountAttempt(t *testing.T) {
	m := mustMemory(t, workqueue.WithMaxAttempts(2))
	drainTwice(t, m, m)
}

func TestPoolOverClientDrainDoesNotCountAttempt(t *testing.T) {
	m := mustMemory(t, workqueue.WithMaxAttempts(2))
	_, cl := serve(t, m)
	drainTwice(t, m, cl)
}

// TestClientRelease: POST release gives the item back at once without counting the attempt; a
// lease not held is 409 (ErrLeaseLost); a server without the endpoint gets a Nack instead.
func TestClientRelease(t *testing.T) {
	m := mustMemory(t)
	cl, it := leasedOverHTTP(t, m)
	if err := cl.Release(bg(t), it.Lease); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := cl.Release(bg(t), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("second Release of one lease: %v, want ErrLeaseLost", err)
	}
	again, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.Attempt != 1 {
		t.Errorf("after Release the item is on attempt %d, want 1", again.Attempt)
	}

	// An older server: no release endpoint.
	api, err := workqueue.NewAPI(m)
	if err != nil {
		t.Fatal(err)
	}
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == workqueue.APIPrefix+"release" {
			http.NotFound(w, r)
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer old.Close()
	oc, err := workqueue.NewClient(old.URL, old.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	if err := oc.Release(bg(t), again.Lease); err != nil {
		t.Fatalf("Release to a server without the endpoint: %v", err)
	}
	third, err := oc.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if third.Attempt != 2 {
		t.Errorf("after a Release that the old server took as a Nack, attempt %d, want 2", third.Attempt)
	}
}
