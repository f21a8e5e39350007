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
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// TestUnreleasedLeasesReleasedAfterRestart: while etcd is down, the leader steps down and the
// waiting candidate's Campaign ends with its lease lost; neither can revoke its lease, and etcd
// restores leases with a fresh TTL when it restarts, so every observer went on naming the
// stepped-down leader, and then the waiting candidate (which leads nothing), for a TTL after the
// restart, and the waiting candidate's next Campaign queued behind its own old key. The Elector
// retries both releases once etcd answers: the old keys must be gone well within the TTL.
func TestUnreleasedLeasesReleasedAfterRestart(t *testing.T) {
	const ttl = 8 * time.Second
	c := etcdtest.NewServer(t)
	name := fmt.Sprintf("restart-%d", elections.Add(1))
	core, logs := observer.New(zapcore.WarnLevel)
	started := make(chan election.Term, 4)
	run := func(id string, ctx context.Context) (*etcd.Backend, chan error) {
		// gRPC's reconnect backoff (up to 2 minutes) is not under test: reconnect within 500ms.
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{c.Endpoint(0)}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			})},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		b, err := etcd.New(cli, name, etcd.WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		e, err := election.New(b, id, func(ctx context.Context, tm election.Term) error {
			started <- tm
			<-ctx.Done()
			return nil
		}, election.WithReleaseTimeout(200*time.Millisecond), election.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond }),
			election.WithLogger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return b, done
	}
	ctx, cancel := context.WithCancel(context.Background())
	var dones []chan error
	defer func() {
		cancel()
		for _, done := range dones {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}()
	b, done := run("a", ctx)
	dones = append(dones, done)
	first := recv(t, started, 30*time.Second, "a's term")
	_, done = run("b", ctx)
	dones = append(dones, done)
	admin := c.Client(t)
	waitCandidates(t, admin, b.Prefix(), 2)
	resp, err := admin.Get(context.Background(), b.Prefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	last := resp.Header.Revision
	tokens := map[uint64]string{}
	for _, kv := range resp.Kvs {
		tokens[uint64(kv.CreateRevision)] = string(kv.Value)
	}
	if tokens[first.Token] != "a" || len(tokens) != 2 {
		t.Fatalf("candidate keys %v, want a's (token %d) and b's", tokens, first.Token)
	}

	c.Stop(0)
	// Wait until each old lease's Release has been retried (and failed) at least once.
	for deadline := time.Now().Add(3 * ttl); ; {
		retried := map[uint64]bool{}
		for _, e := range logs.FilterMessage("release").FilterFieldKey("attempt").All() {
			if tok, ok := e.ContextMap()["token"].(uint64); ok && tokens[tok] != "" {
				retried[tok] = true
			}
		}
		if len(retried) == len(tokens) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("releases retried while etcd is down: %v of %v", retried, tokens)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	admin = c.Client(t)
	for {
		resp, err := admin.Get(context.Background(), b.Prefix(), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(last))
		if err == nil && len(resp.Kvs) == 0 { // (Count ignores the revision filter)
			break
		}
		if time.Since(restarted) > ttl/2 {
			var left []string
			if resp != nil {
				for _, kv := range resp.Kvs {
					left = append(left, string(kv.Value))
				}
			}
			t.Fatalf("old keys of %v still there %v after etcd restarted (TTL %v)", left, time.Since(restarted).Round(time.Millisecond), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the old keys went %v after etcd restarted", time.Since(restarted).Round(time.Millisecond))
}
