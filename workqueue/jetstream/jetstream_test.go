package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
	"github.com/podblocks/podblocks/workqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNode starts a single node and connects to it; both end with the test or benchmark.
func startNode(tb testing.TB) (*nats.Conn, *natstest.Node) {
	tb.Helper()
	node, err := natstest.Start(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc, node
}

// startConn is startNode for a test that needs only the connection.
func startConn(t *testing.T) *nats.Conn {
	t.Helper()
	nc, _ := startNode(t)
	return nc
}

// openQueue opens the queue name on nc; it is closed when the test ends.
func openQueue(ctx context.Context, t *testing.T, nc *nats.Conn, name string, opts ...wqjs.Option) *wqjs.Queue {
	t.Helper()
	q, err := wqjs.Open(ctx, nc, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

var queueN atomic.Int64

func TestConformance(t *testing.T) {
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	newQueue := func(t *testing.T, c workqueuetest.Config) workqueue.Queue {
		nc, err := nats.Connect(node.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		q, err := wqjs.Open(ctx, nc, fmt.Sprintf("t%d", queueN.Add(1)), wqjs.WithLeaseDuration(c.LeaseDuration), wqjs.WithMaxAttempts(c.MaxAttempts))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	workqueuetest.TestQueue(t, newQueue, workqueuetest.WithoutPriority(), workqueuetest.WithoutKeyTurns())
}

// TestPoolPanicDeadLetters runs a Pool over a JetStream queue whose handler panics: the item is
// retried, then (after the queue's max attempts) published to the dead-letter stream.
func TestPoolPanicDeadLetters(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "panics", wqjs.WithMaxAttempts(2), wqjs.WithLeaseDuration(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var calls atomic.Int64
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		calls.Add(1)
		panic("handler bug")
	}), workqueue.WithBackoff(func(int) time.Duration { return 50 * time.Millisecond }), workqueue.WithProgressEvery(0))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	if _, err := q.Add(ctx, []byte("boom"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var dead []workqueue.DeadItem
	for len(dead) == 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		dead, _ = q.Dead(ctx, 10)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(dead) != 1 || string(dead[0].Payload) != "boom" || dead[0].Attempts != 2 {
		t.Fatalf("dead letters %+v, want boom after 2 attempts", dead)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}

// TestAddTooLarge: an add that does not fit in the server's max_payload with its headers (those
// of its dead letter, see TestBuryLargest) is refused with ErrTooLarge before it is sent (one that
// just fits is stored), the HTTP API answers it with 413 and a reason rather than 500, its Client
// sees ErrTooLarge, and the queue keeps serving.
func TestAddTooLarge(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "large")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	limit := int(nc.MaxPayload())
	fits := largestAdd(limit, "k1")
	if _, err := q.Add(ctx, make([]byte, fits), workqueue.AddOptions{Key: "k1"}); err != nil {
		t.Errorf("Add of %d bytes with key k1 (max_payload %d): %v, want it stored", fits, limit, err)
	}
	_, err = q.Add(ctx, make([]byte, fits+1), workqueue.AddOptions{Key: "k2"})
	if !errors.Is(err, workqueue.ErrTooLarge) || !strings.Contains(fmt.Sprint(err), "max_payload") {
		t.Errorf("Add of %d bytes with key k2 (max_payload %d): %v, want ErrTooLarge naming max_payload", fits+1, limit, err)
	}

	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	big := make([]byte, 2<<20)
	resp, err := srv.Client().Post(srv.URL+workqueue.APIPrefix+"items", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "max_payload") {
		t.Errorf("POST of 2 MiB: %d %s; want 413 naming max_payload", resp.StatusCode, b)
	}
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Add(ctx, big, workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrTooLarge) {
		t.Errorf("Client.Add of 2 MiB: %v, want ErrTooLarge", err)
	}

	if _, err := cl.Add(ctx, []byte("small"), workqueue.AddOptions{}); err != nil {
		t.Errorf("Client.Add of a small payload after the large ones: %v", err)
	}
	if s, err := q.Stats(ctx); err != nil || s.Ready != 2 {
		t.Errorf("Stats = %+v, %v; want the item that fit and the small one ready", s, err)
	}
}

// TestStatsAtOnce: Stats counts an add, a lease and an ack as soon as the call returns. Ready used
// to be the consumer's pending count, which the server raises on another goroutine after it has
// answered the publish, so a Stats right after an Add missed it now and then (and
// TestAddTooLarge's check of Ready flaked).
func TestStatsAtOnce(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "statsatonce", wqjs.WithFetchBatch(1))
	check := func(after string, want workqueue.Stats) {
		t.Helper()
		if s, err := q.Stats(ctx); err != nil || s != want {
			t.Fatalf("Stats after %s: %+v, %v; want %+v", after, s, err, want)
		}
	}
	const n = 500
	for i := 1; i <= n; i++ {
		if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("add %d", i), workqueue.Stats{Ready: int64(i)})
	}
	for i := 1; i <= 20; i++ {
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("lease %d", i), workqueue.Stats{Ready: int64(n - i), Leased: 1})
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("ack %d", i), workqueue.Stats{Ready: int64(n - i)})
	}
}
