package bolt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// Items and committed leases outlive the process: after a restart (here a Close and an Open; after
// a crash, the same for a lease committed before it, a few milliseconds after Lease), the holder of
// a lease from before it can still ack the item with its token.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "queue-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "jobs.db")

	q, _ := bolt.Open(context.Background(), path)
	q.Add(ctx, []byte("resize cat.png"), workqueue.AddOptions{})
	q.Add(ctx, []byte("resize dog.png"), workqueue.AddOptions{})
	it, _ := q.Lease(ctx)
	fmt.Println("leased", string(it.Payload))
	q.Close()

	q, _ = bolt.Open(context.Background(), path)
	defer q.Close()
	s, _ := q.Stats(ctx)
	fmt.Printf("reopened: ready %d, leased %d\n", s.Ready, s.Leased)
	fmt.Println("ack with the old token:", q.Ack(ctx, it.Lease))
	next, _ := q.Lease(ctx)
	fmt.Println("leased", string(next.Payload))
	fmt.Println("ack:", q.Ack(ctx, next.Lease))
	// Output:
	// leased resize cat.png
	// reopened: ready 1, leased 1
	// ack with the old token: <nil>
	// leased resize dog.png
	// ack: <nil>
}
