package workqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// lostLeaseBackends are the queues, each with leases of lease, that TestLostLease runs on: the
// three backends, on real engines (a bolt file, an embedded NATS server).
func lostLeaseBackends(t *testing.T, lease time.Duration) map[string]func(t *testing.T) workqueue.Queue {
	return map[string]func(t *testing.T) workqueue.Queue{
		"memory": func(t *testing.T) workqueue.Queue {
			return mustMemory(t, workqueue.WithLeaseDuration(lease))
		},
		"bolt": func(t *testing.T) workqueue.Queue {
			q, err := bolt.Open(filepath.Join(t.TempDir(), "q.db"), bolt.WithLeaseDuration(lease))
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

// TestLostLease: a lease that ran out and whose item another Lease took gets ErrLeaseLost from
// Ack, Nack, Extend and Bury, on every backend and through the HTTP API (whose status for it is
// 409 Conflict, and which Client turns back into ErrLeaseLost); none of them touches the item,
// whose new lease acks. A lease that ran out with its item not handed out again gets it from Nack,
// Extend and Bury; its Ack either gets it too or (Memory's late ack) ends the item.
func TestLostLease(t *testing.T) {
	const lease = time.Second
	for name, open := range lostLeaseBackends(t, lease) {
		for _, tc := range []struct {
			via      string
			released bool // the lease ran out and nobody leased the item since (else someone did)
		}{{"queue", false}, {"http", false}, {"queue", true}, {"http", true}} {
			via, released := tc.via, tc.released
			t.Run(fmt.Sprintf("%s/%s/releasedOnly=%v", name, via, released), func(t *testing.T) {
				t.Parallel()
				q := open(t)
				var base string
				if via == "http" {
					api, err := workqueue.NewAPI(q)
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
					q, base = c, srv.URL
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
					t.Fatal(err)
				}
				lost, err := q.Lease(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var held *workqueue.Item
				if released {
					time.Sleep(lease + lease/2) // the lease runs out; nobody leases the item meanwhile
				} else {
					held = leaseAgain(t, ctx, q, lost)
				}
				// Ack comes last: over a Memory (and bolt), a lease that ran out may still be acked
				// until the queue hands its item out again (see Memory.Ack), which ends the item.
				acked := false
				for _, op := range []struct {
					name string
					call func() error
				}{
					{"nack", func() error { return q.Nack(ctx, lost.Lease, 0) }},
					{"extend", func() error { _, err := q.Extend(ctx, lost.Lease); return err }},
					{"bury", func() error { return q.Bury(ctx, lost.Lease, "lost") }},
					{"ack", func() error { return q.Ack(ctx, lost.Lease) }},
				} {
					err := op.call()
					if late := released && op.name == "ack" && err == nil; late {
						acked = true
						continue
					}
					if !errors.Is(err, workqueue.ErrLeaseLost) {
						t.Errorf("%s of the lost lease: %v, want ErrLeaseLost", op.name, err)
					}
					if base == "" {
						continue
					}
					body, _ := json.Marshal(map[string]string{"lease": lost.Lease})
					resp, err := http.Post(base+workqueue.APIPrefix+op.name, "application/json", bytes.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusConflict {
						t.Errorf("POST %s of the lost lease: %d, want 409", op.name, resp.StatusCode)
					}
				}
				if held == nil && !acked {
					held = leaseAgain(t, ctx, q, lost)
				}
				if held != nil {
					if err := q.Ack(ctx, held.Lease); err != nil {
						t.Errorf("Ack of the new lease: %v", err)
					}
				}
				st, err := q.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st != (workqueue.Stats{}) {
					t.Errorf("stats after the new lease's ack: %+v, want an empty queue (nothing buried or retried)", st)
				}
			})
		}
	}
}

// leaseAgain leases the item of lost again, once lost ran out, and fails the test unless it is
// lost's item under a new lease.
func leaseAgain(t *testing.T, ctx context.Context, q workqueue.Queue, lost *workqueue.Item) *workqueue.Item {
	t.Helper()
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != lost.ID || it.Lease == lost.Lease {
		t.Fatalf("lease %s/%q after item %s/%q's ran out: want the same item under a new lease", it.ID, it.Lease, lost.ID, lost.Lease)
	}
	return it
}
