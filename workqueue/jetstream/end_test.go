package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// TestEndRetryAfterNATSRestart: an Ack, Nack or Bury that fails while the server is down keeps
// the lease, and its retry once the server is back (on the same port and store) returns nil and
// does its work, as a Pool's retry of an end that failed with ErrUnavailable needs. Each used to
// forget the lease before the server answered, so that the retry got ErrLeaseLost and the item
// came back after its lease, to be done again. The connection buffers nothing while it
// reconnects, so that each fails at once in the outage.
func TestEndRetryAfterNATSRestart(t *testing.T) {
	srv := startRestartable(t)
	nc := connectUnbuffered(t, srv.url())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "natsrestart")
	ends := []struct {
		name string
		end  func(ctx context.Context, lease string) error
	}{
		{"Ack", func(ctx context.Context, lease string) error { return q.Ack(ctx, lease) }},
		{"Nack", func(ctx context.Context, lease string) error { return q.Nack(ctx, lease, 0) }},
		{"Bury", func(ctx context.Context, lease string) error { return q.Bury(ctx, lease, "poison") }},
	}
	leases := make([]string, len(ends))
	for i := range ends {
		if _, err := q.Add(ctx, []byte(ends[i].name), workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leases[i] = it.Lease
	}
	srv.stop()
	waitDisconnected(ctx, t, nc)
	for i, e := range ends {
		ectx, ecancel := context.WithTimeout(ctx, time.Second)
		err := e.end(ectx, leases[i])
		ecancel()
		if err == nil || errors.Is(err, workqueue.ErrLeaseLost) {
			t.Fatalf("%s with the server down: %v, want an error other than ErrLeaseLost", e.name, err)
		}
	}
	srv.start()
	for i, e := range ends {
		var err error
		for {
			ectx, ecancel := context.WithTimeout(ctx, time.Second)
			err = e.end(ectx, leases[i])
			ecancel()
			if err == nil || errors.Is(err, workqueue.ErrLeaseLost) || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("%s retried after the server came back: %v, want nil", e.name, err)
		}
	}
	// The nacked item comes back at once, and only it.
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{"Nack", 2}, []any{string(it.Payload), it.Attempt}); diff != "" {
		t.Errorf("item leased after the retries (-want +got):\n%s", diff)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(workqueue.Stats{Dead: 1}, st); diff != "" {
		t.Errorf("stats after the retries (-want +got):\n%s", diff)
	}
	dead, err := q.Dead(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || string(dead[0].Payload) != "Bury" || dead[0].Reason != "poison" {
		t.Errorf("dead letters %+v; want one, of the item buried, for poison", dead)
	}
}
