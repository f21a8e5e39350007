package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// restartable is a JetStream server that a test stops and starts again on the same port and
// store; it is stopped when the test ends.
type restartable struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

// startRestartable starts a server on a random port and a store of its own.
func startRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	r.start()
	_, port, _ := net.SplitHostPort(r.s.Addr().String())
	r.port, _ = strconv.Atoi(port)
	t.Cleanup(r.stop)
	return r
}

// start starts the server (again), on its port and store.
func (r *restartable) start() {
	r.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: r.port, NoLog: true, NoSigs: true, JetStream: true, StoreDir: r.dir})
	if err != nil {
		r.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		r.t.Fatal("server not ready")
	}
	r.s = s
}

// stop stops the server and waits for it. Idempotent.
func (r *restartable) stop() {
	r.s.Shutdown()
	r.s.WaitForShutdown()
}

func (r *restartable) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", r.port) }

// connectUnbuffered connects to url with no reconnect buffer, so that a publish fails at once
// while the server is down rather than wait in the buffer for it, reconnecting every 50ms for as
// long as it takes; the connection is closed when the test ends.
func connectUnbuffered(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitDisconnected waits until nc has noticed that its server went away.
func waitDisconnected(ctx context.Context, t *testing.T, nc *nats.Conn) {
	t.Helper()
	for nc.Status() == nats.CONNECTED {
		if ctx.Err() != nil {
			t.Fatal("the connection did not notice its server going away")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queueCalls are the calls of a queue that talk to the server, each with a lease of its own
// where it needs one; a call returns its error.
func queueCalls(ctx context.Context, t *testing.T, q *wqjs.Queue) map[string]func(ctx context.Context) error {
	t.Helper()
	leases := map[string]string{}
	for _, name := range []string{"Ack", "Nack", "Extend", "Bury"} {
		if _, err := q.Add(ctx, []byte(name), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leases[name] = it.Lease
	}
	return map[string]func(ctx context.Context) error{
		"Add":    func(ctx context.Context) error { _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); return err },
		"Ack":    func(ctx context.Context) error { return q.Ack(ctx, leases["Ack"]) },
		"Nack":   func(ctx context.Context) error { return q.Nack(ctx, leases["Nack"], time.Second) },
		"Extend": func(ctx context.Context) error { _, err := q.Extend(ctx, leases["Extend"]); return err },
		"Bury":   func(ctx context.Context) error { return q.Bury(ctx, leases["Bury"], "poison") },
		"Lease":  func(ctx context.Context) error { _, err := q.Lease(ctx); return err },
		"Stats":  func(ctx context.Context) error { _, err := q.Stats(ctx); return err },
		"Dead":   func(ctx context.Context) error { _, err := q.Dead(ctx, -1); return err },
	}
}

// runCalls runs the named calls at once, each under a ctx of its own from mk, and returns their
// errors and how long each took.
func runCalls(calls map[string]func(context.Context) error, names []string, mk func() (context.Context, context.CancelFunc)) (map[string]error, map[string]time.Duration) {
	var mu sync.Mutex
	errs, took := map[string]error{}, map[string]time.Duration{}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			ctx, cancel := mk()
			defer cancel()
			start := time.Now()
			err := calls[name](ctx)
			mu.Lock()
			errs[name], took[name] = err, time.Since(start)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs, took
}

// TestUnavailable: while the server cannot be reached or does not answer, the calls that talk to
// it return an error wrapping workqueue.ErrUnavailable (and not ErrLeaseLost), as a Client's do
// while its server restarts, so that a Pool retries them: with the server down and no reconnect
// buffer at once (the connection refuses the publish), with the server down and a reconnect
// buffer, or with it silent, once the call's request got no answer within its bound (its ctx has
// none: 5s). A Lease on a connection that buffers its pull waits for the server instead (see
// TestLeaseServerShutdown). They used to return nats.go's errors as they were, and Nack and
// Extend, which did not wait for the server's answer, nil while it was down (their message waiting
// in the reconnect buffer) or silent.
func TestUnavailable(t *testing.T) {
	all := []string{"Add", "Ack", "Nack", "Extend", "Bury", "Stats", "Dead"}
	for _, c := range []struct {
		name  string
		dial  func(t *testing.T) (nc *nats.Conn, cut func())
		calls []string
		max   time.Duration
	}{
		{"down, no reconnect buffer", func(t *testing.T) (*nats.Conn, func()) {
			node, err := natstest.Start(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(node.Shutdown)
			return connectUnbuffered(t, node.URL()), node.Shutdown
		}, append(all, "Lease"), time.Second},
		{"down", func(t *testing.T) (*nats.Conn, func()) {
			node, err := natstest.Start(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(node.Shutdown)
			nc, err := nats.Connect(node.URL(), nats.MaxReconnects(-1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			return nc, node.Shutdown
		}, all, 8 * time.Second},
		{"silent", func(t *testing.T) (*nats.Conn, func()) {
			nc, _, px := startProxied(t)
			t.Cleanup(px.Resume)
			return nc, px.PauseReplies
		}, all, 8 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc, cut := c.dial(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			q := openQueue(ctx, t, nc, "unavailable", wqjs.WithFetchBatch(1))
			calls := queueCalls(ctx, t, q)
			cut()
			if c.name != "silent" {
				waitDisconnected(ctx, t, nc)
			}
			errs, took := runCalls(calls, c.calls, func() (context.Context, context.CancelFunc) {
				return context.WithCancel(context.Background())
			})
			for _, name := range c.calls {
				if err := errs[name]; !errors.Is(err, workqueue.ErrUnavailable) || errors.Is(err, workqueue.ErrLeaseLost) || took[name] > c.max {
					t.Errorf("%s: %v after %v; want ErrUnavailable within %v", name, err, took[name], c.max)
				}
			}
		})
	}
}

// TestNotUnavailable: what no retry can help is not ErrUnavailable: a call whose own ctx ended
// while the server was silent returns the ctx's error, and one on a closed connection an error
// wrapping workqueue.ErrClosed and nats.ErrConnectionClosed (the queue can no longer work, as
// after its Close).
func TestNotUnavailable(t *testing.T) {
	names := []string{"Add", "Ack", "Nack", "Extend", "Bury", "Stats", "Dead"}
	nc, _, px := startProxied(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "notunavailable", wqjs.WithFetchBatch(1))
	calls := queueCalls(ctx, t, q)
	px.PauseReplies()
	errs, _ := runCalls(calls, names, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 300*time.Millisecond)
	})
	px.Resume()
	for _, name := range names {
		if err := errs[name]; !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, workqueue.ErrUnavailable) {
			t.Errorf("%s whose ctx ended with the server silent: %v; want context.DeadlineExceeded, not ErrUnavailable", name, err)
		}
	}
	nc.Close()
	errs, _ = runCalls(calls, append(names, "Lease"), func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	})
	for name, err := range errs {
		if !errors.Is(err, nats.ErrConnectionClosed) || !errors.Is(err, workqueue.ErrClosed) || errors.Is(err, workqueue.ErrUnavailable) {
			t.Errorf("%s on a closed connection: %v; want workqueue.ErrClosed and nats.ErrConnectionClosed, not ErrUnavailable", name, err)
		}
	}
}

// TestPoolAckAcrossNATSRestart: a Pool whose Ack fails while the NATS server restarts retries it
// (the queue says ErrUnavailable), and once the server is back the item is acked: it is handled
// once, and does not come back when its lease would have ended. Before, the Ack's error was not
// ErrUnavailable, the Pool gave the item up as lost, and it was handled again after its lease.
func TestPoolAckAcrossNATSRestart(t *testing.T) {
	srv := startRestartable(t)
	nc := connectUnbuffered(t, srv.url())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const lease = 6 * time.Second
	q := openQueue(ctx, t, nc, "poolrestart", wqjs.WithLeaseDuration(lease))
	var handled atomic.Int64
	release := make(chan struct{})
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if handled.Add(1) == 1 {
			<-release
		}
		return nil
	}), workqueue.WithProgressEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	if _, err := q.Add(ctx, []byte("once"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for handled.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	srv.stop()
	waitDisconnected(ctx, t, nc)
	close(release) // the handler returns nil; the Ack fails while the server is down
	time.Sleep(time.Second)
	srv.start()
	for p.Counts().Acked == 0 && p.Counts().Lost == 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(lease + 3*time.Second) // past the item's lease: a lost item would be handled again
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if c, n := p.Counts(), handled.Load(); c != (workqueue.Counts{Acked: 1}) || n != 1 {
		t.Errorf("counts %+v, handled %d times; want 1 acked, handled once", c, n)
	}
}
