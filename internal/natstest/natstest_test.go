package natstest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func publishOne(t *testing.T, urls string, replicas int) {
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Replicas: replicas}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "t", []byte("x"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Sequence != 1 {
		t.Errorf("sequence %d, want 1", ack.Sequence)
	}
}

func TestSingle(t *testing.T) {
	n, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	publishOne(t, n.URL(), 1)
	n.Shutdown()
	n.Shutdown()
}

func TestCluster(t *testing.T) {
	c, err := StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	publishOne(t, c.URLs(), 3)
}

// TestClusterRoutePortTaken occupies the first route port StartCluster reserves, as another socket
// can between the reservation and the bind, and checks that the cluster still starts, promptly, on
// other ports.
func TestClusterRoutePortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	orig := reservePort
	defer func() { reservePort = orig }()
	handed := false
	reservePort = func() (int, error) {
		if !handed {
			handed = true
			return takenPort, nil
		}
		return orig()
	}
	start := time.Now()
	c, err := StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("start took %v; a taken port should be noticed at once", d)
	}
	for _, n := range c.Nodes {
		if a := n.Server.ClusterAddr(); a == nil || a.Port == takenPort {
			t.Errorf("%s: route address %v, taken port %d", n.Name, n.Server.ClusterAddr(), takenPort)
		}
	}
	publishOne(t, c.URLs(), 3)
}
