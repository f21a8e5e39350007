package workqueue_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/faultproxy"
	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// natsOutage is a NATS server and a connection to it, and a way to take the server away for a
// while: cut starts the outage, heal ends it.
type natsOutage struct {
	nc        *nats.Conn
	cut, heal func()
}

// stoppedNATS: the server stops and starts again on its port and store; the connection has no
// reconnect buffer, so that every call fails at once while it is down (ErrUnavailable).
func stoppedNATS(t *testing.T) natsOutage {
	dir := t.TempDir()
	node, err := natstest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := node.Server
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	_, port, _ := net.SplitHostPort(s.Addr().String())
	nc, err := nats.Connect(node.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return natsOutage{nc: nc,
		cut: func() {
			s.Shutdown()
			s.WaitForShutdown()
			for nc.IsConnected() {
				time.Sleep(5 * time.Millisecond)
			}
		},
		heal: func() {
			p, _ := strconv.Atoi(port)
			again, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: p, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			again.Start()
			if !again.ReadyForConnections(10 * time.Second) {
				t.Fatal("NATS server not ready again")
			}
			s = again
		}}
}

// silentNATS: the server stops answering, and nothing the client sends reaches it (a network
// that stops delivering), until it delivers everything late; the connection keeps its reconnect
// buffer (the default), and its requests get no answer until then.
func silentNATS(t *testing.T) natsOutage {
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	px := faultproxy.New(t, strings.TrimPrefix(node.URL(), "nats://"))
	nc, err := nats.Connect("nats://" + px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return natsOutage{nc: nc, cut: px.Pause, heal: px.Resume}
}

// TestPoolAckAcrossNATSOutage: the NATS server goes away while an item's handler runs, for less
// than the item's lease but longer than the budget of an Ack call, and comes back: the Pool makes
// the Ack again while the lease lasts, and the item is acked once, handled once. The Pool used to
// give the Ack up at the end of its first call's budget, and count the item as lost: with the
// server stopped, it was not acked and would be handled again once its lease ran out; with the
// server silent, the call ended with context.DeadlineExceeded, which it did not retry at all.
func TestPoolAckAcrossNATSOutage(t *testing.T) {
	for _, c := range []struct {
		name string
		dial func(t *testing.T) natsOutage
	}{
		{"stopped", stoppedNATS},
		{"silent", silentNATS},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.dial(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const lease, outage, budget = 8 * time.Second, 3 * time.Second, time.Second
			q, err := wqjs.Open(ctx, o.nc, "outage", wqjs.WithLeaseDuration(lease))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var handled atomic.Int64
			release := make(chan struct{})
			p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
				if handled.Add(1) == 1 {
					<-release
				}
				return nil
			}), workqueue.WithProgressEvery(0), workqueue.WithOutcomeBudget(budget))
			if err != nil {
				t.Fatal(err)
			}
			stop := runPool(t, p)
			if _, err := q.Add(ctx, []byte("once"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
			await.True(t, "the item handled", 20*time.Second, func() bool { return handled.Load() == 1 })
			o.cut()
			close(release) // the handler returns nil; the Ack fails, or gets no answer, in the outage
			time.Sleep(outage)
			o.heal()
			await.True(t, "the item's outcome", 20*time.Second, func() bool { return p.Counts() != (workqueue.Counts{}) })
			if err := stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			if c, n := p.Counts(), handled.Load(); c != (workqueue.Counts{Acked: 1}) || n != 1 {
				t.Errorf("counts %+v, handled %d times; want 1 acked, handled once", c, n)
			}
			var s workqueue.Stats
			await.True(t, "the stats", 20*time.Second, func() bool { s, err = q.Stats(ctx); return err == nil })
			if s != (workqueue.Stats{}) {
				t.Errorf("stats after the outage: %+v; want the queue empty (the item acked)", s)
			}
		})
	}
}
