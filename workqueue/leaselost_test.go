package workqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// lostLeaseBackends are the queues, each with leases of lease, that TestLostLeaseOverHTTP runs on: the
// three backends, on real engines (a bolt file, an embedded NATS server).
func lostLeaseBackends(t *testing.T, lease time.Duration) map[string]func(t *testing.T) workqueue.Queue {
	return map[string]func(t *testing.T) workqueue.Queue{
		"memory": func(t *testing.T) workqueue.Queue {
			return mustMemory(t, workqueue.WithLeaseDuration(lease))
		},
		"bolt": func(t *testing.T) workqueue.Queue {
			q, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), bolt.WithLeaseDuration(lease))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return q
		},
		"jetstream": func(t *testing.T) workqueue.Queue {
			node, err := natstest.Start(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(node.Shutdown)
			nc, err := nats.Connect(node.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			q, err := wqjs.Open(ctx, nc, "lost", wqjs.WithLeaseDuration(lease), wqjs.WithFetchBatch(1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return q
		},
	}
}

// TestLostLeaseOverHTTP: over the HTTP API of every backend, a lease that ran out and whose item
// another Lease took gets 409 Conflict from POST ack, nack, extend and bury, and ErrLeaseLost from
// the Client's calls; none of them touches the item, whose new lease acks. (That every Queue,
// Client included, keeps the contract itself is workqueuetest.TestQueue's LostLease cases.)
func TestLostLeaseOverHTTP(t *testing.T) {
	const lease = time.Second
	for name, open := range lostLeaseBackends(t, lease) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api, err := workqueue.NewAPI(open(t))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			c, err := workqueue.NewClient(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := c.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
			lost, err := c.Lease(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held, err := c.Lease(ctx) // once lost ran out
			if err != nil {
				t.Fatal(err)
			}
			if held.ID != lost.ID || held.Lease == lost.Lease {
				t.Fatalf("lease %s/%q after item %s/%q's ran out: want the same item under a new lease", held.ID, held.Lease, lost.ID, lost.Lease)
			}
			for _, op := range []struct {
				name string
				call func() error
			}{
				{"nack", func() error { return c.Nack(ctx, lost.Lease, 0) }},
				{"extend", func() error { _, err := c.Extend(ctx, lost.Lease); return err }},
				{"bury", func() error { return c.Bury(ctx, lost.Lease, "lost") }},
				{"ack", func() error { return c.Ack(ctx, lost.Lease) }},
			} {
				if err := op.call(); !errors.Is(err, workqueue.ErrLeaseLost) {
					t.Errorf("Client %s of the lost lease: %v, want ErrLeaseLost", op.name, err)
				}
				body, _ := json.Marshal(map[string]string{"lease": lost.Lease})
				resp, err := http.Post(srv.URL+workqueue.APIPrefix+op.name, "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusConflict {
					t.Errorf("POST %s of the lost lease: %d, want 409", op.name, resp.StatusCode)
				}
			}
			if err := c.Ack(ctx, held.Lease); err != nil {
				t.Errorf("Ack of the new lease: %v", err)
			}
			st, err := c.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st != (workqueue.Stats{}) {
				t.Errorf("stats after the new lease's ack: %+v, want an empty queue (nothing buried or retried)", st)
			}
		})
	}
}
