package jetstream_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// openOn opens queue name on a connection of its own to url (a second replica of a service, or the
// same service after a restart); both end with the test.
func openOn(ctx context.Context, t *testing.T, url, name string, opts ...wqjs.Option) *wqjs.Queue {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return openQueue(ctx, t, nc, name, opts...)
}

// wantDone checks that the queue holds nothing: no item ready, none leased.
func wantDone(ctx context.Context, t *testing.T, q *wqjs.Queue) {
	t.Helper()
	s, err := q.Stats(ctx)
	if err != nil || s.Ready != 0 || s.Leased != 0 {
		t.Errorf("Stats = %+v, %v; want nothing ready or leased", s, err)
	}
}

// TestLeaseOnOtherQueue: a lease handed out by one Queue is extended, nacked and acked through
// another Queue of the same name on another connection (two replicas of a service behind a
// balancer), and a Queue of another name refuses it.
func TestLeaseOnOtherQueue(t *testing.T) {
	_, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	qa := openOn(ctx, t, node.URL(), "replicas", wqjs.WithFetchBatch(1))
	qb := openOn(ctx, t, node.URL(), "replicas", wqjs.WithFetchBatch(1))
	other := openOn(ctx, t, node.URL(), "other", wqjs.WithFetchBatch(1))
	id, err := qa.Add(ctx, []byte("job"), workqueue.AddOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	it, err := qa.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { return other.Ack(ctx, it.Lease) },
		func() error { return other.Nack(ctx, it.Lease, 0) },
		func() error { _, err := other.Extend(ctx, it.Lease); return err },
		func() error { return other.Bury(ctx, it.Lease, "no") },
	} {
		if err := f(); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("queue other acting on a lease of queue replicas: %v, want ErrLeaseLost", err)
		}
	}
	before := time.Now()
	dl, err := qb.Extend(ctx, it.Lease)
	if err != nil {
		t.Fatalf("Extend on the other replica: %v", err)
	}
	if dl.Before(before.Add(29 * time.Second)) {
		t.Errorf("Extend on the other replica: deadline %v, want a whole lease (30s) from now", dl)
	}
	if err := qb.Nack(ctx, it.Lease, 0); err != nil {
		t.Fatalf("Nack on the other replica: %v", err)
	}
	it2, err := qa.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it2.ID != id || it2.Key != "k" || it2.Attempt != 2 || string(it2.Payload) != "job" {
		t.Errorf("after the nack: %+v, want item %s (key k, payload job) on attempt 2", it2, id)
	}
	if err := qb.Ack(ctx, it2.Lease); err != nil {
		t.Fatalf("Ack on the other replica: %v", err)
	}
	wantDone(ctx, t, qa)
	// The replica that handed the lease out learns of its end from the other one (a message on
	// its way when the Ack returned).
	for err := qa.Ack(ctx, it2.Lease); !errors.Is(err, workqueue.ErrLeaseLost); err = qa.Ack(ctx, it2.Lease) {
		if ctx.Err() != nil {
			t.Fatalf("Ack on the issuing replica after the other acked: %v, want ErrLeaseLost", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Bury through the other replica records the item as it was added.
	if _, err := qa.Add(ctx, []byte("bad"), workqueue.AddOptions{Key: "kb"}); err != nil {
		t.Fatal(err)
	}
	it3, err := qa.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := qb.Bury(ctx, it3.Lease, "broken"); err != nil {
		t.Fatalf("Bury on the other replica: %v", err)
	}
	dead, err := qa.Dead(ctx, 10)
	if err != nil || len(dead) != 1 || dead[0].ID != it3.ID || dead[0].Key != "kb" || string(dead[0].Payload) != "bad" || dead[0].Attempts != 1 || dead[0].Reason != "broken" {
		t.Errorf("Dead = %+v, %v; want item %s (key kb, payload bad, 1 attempt, reason broken)", dead, err, it3.ID)
	}
	wantDone(ctx, t, qa)
}

// TestLeaseAfterReopen: a service restarted (its Queue closed, a new one opened on a new
// connection) extends and acks the leases the old one handed out; an ack of a lease already acked
// is ErrLeaseLost.
func TestLeaseAfterReopen(t *testing.T) {
	_, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := openOn(ctx, t, node.URL(), "restart")
	if _, err := old.Add(ctx, []byte("job"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := old.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	q := openOn(ctx, t, node.URL(), "restart")
	if _, err := q.Extend(ctx, it.Lease); err != nil {
		t.Fatalf("Extend after the restart: %v", err)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatalf("Ack after the restart: %v", err)
	}
	wantDone(ctx, t, q)
	if err := q.Ack(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("second Ack: %v, want ErrLeaseLost", err)
	}
	if _, err := q.Extend(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Extend after the Ack: %v, want ErrLeaseLost", err)
	}
}

// TestStaleLeaseAfterRedelivery: once an expired lease's item has been leased again, the old token
// is ErrLeaseLost on every Queue (the one that issued it, another one, a new one), and acts on
// nothing: the new lease holds, and is acked through a Queue that did not issue it.
func TestStaleLeaseAfterRedelivery(t *testing.T) {
	_, node := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const lease = 500 * time.Millisecond
	qa := openOn(ctx, t, node.URL(), "stale", wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	qb := openOn(ctx, t, node.URL(), "stale", wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
	if _, err := qa.Add(ctx, []byte("job"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	first, err := qa.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := qb.Lease(ctx) // after the lease ran out
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.Attempt != 2 {
		t.Fatalf("second lease %+v, want item %s on attempt 2", second, first.ID)
	}
	qc := openOn(ctx, t, node.URL(), "stale", wqjs.WithLeaseDuration(lease))
	for _, q := range []*wqjs.Queue{qa, qb, qc} {
		if _, err := q.Extend(ctx, first.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Extend of the first lease: %v, want ErrLeaseLost", err)
		}
		if err := q.Ack(ctx, first.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Ack of the first lease: %v, want ErrLeaseLost", err)
		}
		if err := q.Nack(ctx, first.Lease, 0); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Nack of the first lease: %v, want ErrLeaseLost", err)
		}
		if err := q.Bury(ctx, first.Lease, "stale"); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Errorf("Bury of the first lease: %v, want ErrLeaseLost", err)
		}
	}
	if s, err := qa.Stats(ctx); err != nil || s.Leased != 1 {
		t.Errorf("Stats after the stale token = %+v, %v; want the item still leased", s, err)
	}
	if dead, err := qa.Dead(ctx, 10); err != nil || len(dead) != 0 {
		t.Errorf("Dead = %+v, %v; want none", dead, err)
	}
	if err := qa.Ack(ctx, second.Lease); err != nil {
		t.Fatalf("Ack of the second lease on the replica that did not issue it: %v", err)
	}
	wantDone(ctx, t, qa)
}

// TestAckRetryAfterNATSRestart: an Ack that fails while the NATS server is down (the Pool retries
// it) succeeds once the server is back, rather than finding its lease forgotten.
func TestAckRetryAfterNATSRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(port int) *server.Server {
		t.Helper()
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			t.Fatal("server not ready")
		}
		return s
	}
	s := start(server.RANDOM_PORT)
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	_, portStr, _ := net.SplitHostPort(s.Addr().String())
	port, _ := strconv.Atoi(portStr)
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "natsrestart")
	if _, err := q.Add(ctx, []byte("job"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	actx, acancel := context.WithTimeout(ctx, time.Second)
	err = q.Ack(actx, it.Lease)
	acancel()
	if err == nil || errors.Is(err, workqueue.ErrLeaseLost) {
		t.Fatalf("Ack with the server down: %v, want an error other than ErrLeaseLost", err)
	}
	s = start(port)
	for {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		err = q.Ack(actx, it.Lease)
		acancel()
		if err == nil || errors.Is(err, workqueue.ErrLeaseLost) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Ack retried after the server came back: %v, want nil", err)
	}
	wantDone(ctx, t, q)
}
