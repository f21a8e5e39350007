package workqueue_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// skewAPI serves api as a server whose wall clock is skew ahead of the client's would: every
// "deadline" it answers is skew later.
func skewAPI(api http.Handler, skew time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			if s, ok := m["deadline"].(string); ok {
				if d, err := time.Parse(time.RFC3339Nano, s); err == nil {
					m["deadline"] = d.Add(skew)
					body, _ = json.Marshal(m)
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// TestPoolOverClientExtendsUnderClockSkew: the server's clock is two leases ahead of the worker's.
// A handler that runs three leases keeps its item: the Client takes the lease's deadline from the
// ttl the server sends, by its own clock, not from the server's deadline (by which the Pool
// extended too late and lost the lease).
func TestPoolOverClientExtendsUnderClockSkew(t *testing.T) {
	const lease = 600 * time.Millisecond
	m := mustMemory(t, workqueue.WithLeaseDuration(lease))
	api, err := workqueue.NewAPI(m)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(skewAPI(api, 2*lease))
	defer srv.Close()
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := m.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var cause error
	p, err := workqueue.NewPool(cl, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		select {
		case <-ctx.Done():
			cause = context.Cause(ctx)
		case <-time.After(3 * lease):
		}
		return nil
	}), workqueue.WithProgressEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	await.True(t, "the item's outcome", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
	stop()
	if c := p.Counts(); c != (workqueue.Counts{Acked: 1}) {
		t.Errorf("counts %+v (handler's ctx ended by %v), want 1 acked: the lease was lost under the skew", c, cause)
	}
}
