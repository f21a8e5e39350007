package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/jetstream"
)

// Run a work queue on a NATS server with JetStream, here one embedded in the process; in a pod,
// connect to the NATS service instead.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dir, err := os.MkdirTemp("", "jetstream-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	s, err := startServer(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.WaitForShutdown()
	defer s.Shutdown()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close() // the connection stays ours: Close of the queue leaves it open

	q, err := jetstream.Open(ctx, nc, "thumbnails", jetstream.WithLeaseDuration(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()

	q.Add(ctx, []byte("resize cat.png"), workqueue.AddOptions{})
	a, _ := q.Add(ctx, []byte("resize dog.png"), workqueue.AddOptions{Key: "dog.png"})
	// While the key's item waits in the stream, another add of the key returns its ID.
	b, _ := q.Add(ctx, []byte("resize dog.png again"), workqueue.AddOptions{Key: "dog.png"})
	fmt.Println("same item:", a == b)

	for range 2 { // stream order: the order of the adds
		it, err := q.Lease(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s (key %q, attempt %d)\n", it.Payload, it.Key, it.Attempt)
		if err := q.Ack(ctx, it.Lease); err != nil { // returns once the server has the ack
			fmt.Println(err)
			return
		}
	}
	st, _ := q.Stats(ctx)
	fmt.Printf("ready %d, leased %d, dead %d\n", st.Ready, st.Leased, st.Dead)
	// Output:
	// same item: true
	// resize cat.png (key "", attempt 1)
	// resize dog.png (key "dog.png", attempt 1)
	// ready 0, leased 0, dead 0
}

// startServer starts a NATS server with JetStream storing under dir, on a random loopback port.
func startServer(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("nats server not ready")
	}
	return s, nil
}
