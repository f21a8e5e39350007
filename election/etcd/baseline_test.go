package etcd_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// baselineCandidate campaigns with etcd's own concurrency package (the baseline the failover
// figures are compared with): a session with the same TTL, Election.Campaign, Election.Resign.
type baselineCandidate struct {
	id     string
	cli    *clientv3.Client
	sess   *concurrency.Session
	el     *concurrency.Election
	cancel context.CancelFunc
	done   chan struct{}
	err    atomic.Pointer[error] // a Campaign error not caused by cancel
}

func startBaseline(t *testing.T, endpoint, id string, starts chan<- termStart) *baselineCandidate {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(1))
	if err != nil {
		t.Fatal(err)
	}
	c := &baselineCandidate{id: id, cli: cli, sess: sess, el: concurrency.NewElection(sess, "/baseline/failover/")}
	c.campaign(starts)
	return c
}

// campaign campaigns in the background and reports the win on starts.
func (c *baselineCandidate) campaign(starts chan<- termStart) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		err := c.el.Campaign(ctx, c.id)
		if err == nil {
			starts <- termStart{id: c.id, at: time.Now()}
			return
		}
		if ctx.Err() == nil {
			c.err.Store(&err)
		}
	}()
}

func (c *baselineCandidate) crash() {
	c.cli.Close()
	c.cancel()
	<-c.done
}

func (c *baselineCandidate) stop() {
	c.cancel()
	<-c.done
	c.sess.Close()
	c.cli.Close()
}

// baselineFailover runs n crash and n resign trials with the concurrency package.
func baselineFailover(t *testing.T, endpoint string, admin *clientv3.Client, n int) (crash, resign []time.Duration) {
	starts := make(chan termStart, 4)
	cands := map[string]*baselineCandidate{}
	for _, id := range []string{"a", "b"} {
		cands[id] = startBaseline(t, endpoint, id, starts)
	}
	defer func() {
		for _, c := range cands {
			c.stop()
		}
	}()
	leader := nextStart(t, starts).id
	check := func() {
		for _, c := range cands {
			if err := c.err.Load(); err != nil {
				t.Fatalf("baseline candidate %s: Campaign: %v", c.id, *err)
			}
		}
	}
	for i := range n {
		check()
		waitCandidates(t, admin, "/baseline/failover/", 2)
		t0 := time.Now()
		cands[leader].crash()
		s := nextStart(t, starts)
		if s.id == leader {
			t.Fatalf("baseline trial %d: crashed %s led again", i, leader)
		}
		crash = append(crash, s.at.Sub(t0))
		cands[leader] = startBaseline(t, endpoint, leader, starts)
		leader = s.id
	}
	for i := range n {
		check()
		waitCandidates(t, admin, "/baseline/failover/", 2)
		c := cands[leader]
		t0 := time.Now()
		if err := c.el.Resign(context.Background()); err != nil {
			t.Fatalf("baseline resign %d: %v", i, err)
		}
		s := nextStart(t, starts)
		if s.id == leader {
			t.Fatalf("baseline resign %d: %s led again", i, leader)
		}
		resign = append(resign, s.at.Sub(t0))
		<-c.done
		c.campaign(starts)
		leader = s.id
	}
	return crash, resign
}
