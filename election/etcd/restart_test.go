package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSteppedDownLeaderReleasedAfterRestart: a leader that stepped down while etcd was down could
// not revoke its lease, and etcd restores leases with a fresh TTL when it restarts, so every
// observer went on naming the stepped-down leader for a TTL after the restart. The Elector now
// retries the release once etcd answers: the old key must be gone well within the TTL.
func TestSteppedDownLeaderReleasedAfterRestart(t *testing.T) {
	const ttl = 8 * time.Second
	c := etcdtest.NewServer(t)
	name := fmt.Sprintf("restart-%d", elections.Add(1))
	cli := etcdtest.NewClient(t, c.Endpoint(0))
	b, err := etcd.New(cli, name, etcd.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	started, ended := make(chan election.Term, 4), make(chan election.Term, 4)
	e, err := election.New(b, "a", func(ctx context.Context, tm election.Term) error {
		started <- tm
		<-ctx.Done()
		ended <- tm
		return nil
	}, election.WithReleaseTimeout(200*time.Millisecond), election.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	first := recv(t, started, 30*time.Second, "a's term")

	c.Stop(0)
	recv(t, ended, 2*ttl, "a stepping down while etcd is down")
	time.Sleep(500 * time.Millisecond) // its release has failed by now
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	admin := c.Client(t)
	for {
		resp, err := admin.Get(context.Background(), b.Prefix(), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(int64(first.Token)))
		if err == nil && len(resp.Kvs) == 0 { // (Count ignores the revision filter)
			break
		}
		if time.Since(restarted) > ttl/2 {
			t.Fatalf("the stepped-down term's key is still there %v after etcd restarted (TTL %v)", time.Since(restarted).Round(time.Millisecond), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the stepped-down term's key went %v after etcd restarted", time.Since(restarted).Round(time.Millisecond))
}
