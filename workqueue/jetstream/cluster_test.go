package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestClusterNodeLoss adds items to a queue replicated on 3 nodes, shuts down the stream's leader
// node part-way, keeps adding, and then checks that every add that returned nil is delivered.
func TestClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node JetStream cluster")
	}
	c, err := natstest.StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "ha", wqjs.WithReplicas(3), wqjs.WithLeaseDuration(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	const n = 600
	acked := map[string]bool{}
	failed := 0
	killed := ""
	for i := 0; len(acked) < n; i++ {
		if len(acked) == n/3 && killed == "" {
			killed = leaderOf(ctx, t, nc, "WQ_ha")
			for _, node := range c.Nodes {
				if node.Name == killed {
					node.Shutdown()
				}
			}
		}
		p := fmt.Sprintf("p-%05d", i)
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := q.Add(actx, []byte(p), workqueue.AddOptions{})
		acancel()
		if err != nil {
			failed++ // not acknowledged: the producer would retry it under a new payload
			if ctx.Err() != nil {
				t.Fatalf("adds still failing at the deadline: %v", err)
			}
			continue
		}
		acked[p] = true
	}
	t.Logf("shut down stream leader %s after %d adds; %d adds failed while the cluster recovered", killed, n/3, failed)

	got := map[string]bool{}
	seenAcked := 0
	for seenAcked < len(acked) {
		lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
		it, err := q.Lease(lctx)
		lcancel()
		if err != nil {
			t.Fatalf("Lease after %d of %d acknowledged items: %v", seenAcked, len(acked), err)
		}
		if p := string(it.Payload); !got[p] {
			got[p] = true
			if acked[p] {
				seenAcked++
			}
		}
		if err := q.Ack(ctx, it.Lease); err != nil && !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Logf("Ack: %v (the item may come again)", err)
		}
	}
	for p := range acked {
		if !got[p] {
			t.Errorf("acknowledged add %s was lost", p)
		}
	}
}

func leaderOf(ctx context.Context, t *testing.T, nc *nats.Conn, stream string) string {
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream leader: %v %+v", err, info)
	}
	return info.Cluster.Leader
}
