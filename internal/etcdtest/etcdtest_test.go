package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/etcdtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, etcdtest.IgnoreOptions()...) }

func TestServerServes(t *testing.T) {
	c := etcdtest.NewServer(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("Get = %v, %v; want k=v", resp, err)
	}
}

func TestClusterStopRestartLeader(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := etcdtest.WaitHealthy(ctx, cli); err != nil {
		t.Fatal(err)
	}
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no member is the raft leader of a healthy cluster")
	}
	c.Stop(lead)
	if c.Running(lead) {
		t.Fatal("Running after Stop")
	}
	if _, err := cli.Put(ctx, "k", "after leader stop"); err != nil {
		t.Fatalf("Put with 2 of 3 members: %v", err)
	}
	if err := c.Start(lead); err != nil {
		t.Fatalf("restart: %v", err)
	}
	one := c.Client(t, c.Endpoint(lead))
	if err := etcdtest.WaitHealthy(ctx, one); err != nil {
		t.Fatal(err)
	}
}

func TestBinary(t *testing.T) {
	p := etcdtest.StartBinary(t)
	t.Logf("%s", etcdtest.Version())
	cli := etcdtest.NewClient(t, p.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func TestProxyPauseResume(t *testing.T) {
	c := etcdtest.NewServer(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0)[len("http://"):])
	cli := etcdtest.NewClient(t, p.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := etcdtest.WaitHealthy(ctx, cli); err != nil {
		t.Fatal(err)
	}
	p.Pause()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cli.Get(short, "k")
	cancelShort()
	if err == nil {
		t.Fatal("Get through a paused proxy succeeded")
	}
	p.Resume()
	if err := etcdtest.WaitHealthy(ctx, cli); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	p.CloseConns()
	if err := etcdtest.WaitHealthy(ctx, cli); err != nil {
		t.Fatalf("after CloseConns (the client redials): %v", err)
	}
}
