// Package etcdtest runs real etcd servers for tests on loopback: embedded members (a single server or
// a cluster whose members can be stopped and restarted) with go.etcd.io/etcd/server/v3/embed, and
// Debian's etcd binary as a separate process. Ports are random, data lives in t.TempDir(), and
// everything is shut down by t.Cleanup, so goleak finds nothing left behind.
//
// Members use a 50ms heartbeat and a 500ms election timeout, so the server's minimum lease TTL is
// 1s (etcd raises shorter TTLs to 1.5 election timeouts, rounded up to whole seconds), and fsync is
// off: the data is throw-away.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/freeport"
)

const (
	tickMs     = 50
	electionMs = 500
	startLimit = 60 * time.Second // generous: CI machines are shared and run -race
)

// Cluster is a set of embedded etcd members on loopback.
type Cluster struct {
	t       testing.TB
	members []*member
	initial string // the initial-cluster flag value
}

type member struct {
	name       string
	dir        string
	clientURL  url.URL
	peerURL    url.URL
	mu         sync.Mutex
	e          *embed.Etcd // nil while stopped
	startedOne bool
}

// NewServer starts a single embedded etcd server and stops it when the test ends.
func NewServer(t testing.TB) *Cluster { return NewCluster(t, 1) }

// NewCluster starts an n-member embedded etcd cluster, waits until every member is ready, and stops
// it when the test ends. Ports are picked before etcd binds them, so another process can take one in
// between; then the members started so far are stopped and the cluster starts again on new ports
// (at most startTries times).
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	for try := 1; ; try++ {
		c, err := newCluster(t, n)
		if err == nil {
			t.Cleanup(c.close)
			return c
		}
		c.close()
		if !errors.Is(err, syscall.EADDRINUSE) || try == startTries {
			t.Fatalf("etcdtest: start cluster: %v", err)
		}
		t.Logf("etcdtest: start cluster on new ports: %v", err)
	}
}

const startTries = 3

// pickAddr returns a loopback host:port to listen on; tests replace it to hand out a taken port.
var pickAddr = freeport.TCP

func newCluster(t testing.TB, n int) (*Cluster, error) {
	c := &Cluster{t: t}
	var parts []string
	for i := range n {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			dir:       t.TempDir(),
			clientURL: url.URL{Scheme: "http", Host: pickAddr(t)},
			peerURL:   url.URL{Scheme: "http", Host: pickAddr(t)},
		}
		c.members = append(c.members, m)
		parts = append(parts, m.name+"="+m.peerURL.String())
	}
	c.initial = strings.Join(parts, ",")
	errs := make(chan error, n)
	for i := range c.members {
		go func() { errs <- c.start(i) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return c, first
}

func (c *Cluster) config(m *member) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = "etcdtest"
	cfg.TickMs = tickMs
	cfg.ElectionMs = electionMs
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	if m.startedOne {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	return cfg
}

// start starts member i (again) and waits until it is ready.
func (c *Cluster) start(i int) error {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e != nil {
		return nil
	}
	var e *embed.Etcd
	var err error
	// A restarted member must have its old ports (the peer URL is its identity in the cluster), and a
	// port it just closed may linger for a moment: retry the listen briefly. A first start gives up at
	// once, and NewCluster picks new ports.
	wait := time.Duration(0)
	if m.startedOne {
		wait = 10 * time.Second
	}
	for deadline := time.Now().Add(wait); ; {
		e, err = embed.StartEtcd(c.config(m))
		if err == nil || time.Now().After(deadline) || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("member %s: %w", m.name, err)
	}
	m.startedOne = true
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", m.name, err)
	case <-time.After(startLimit):
		e.Close()
		return fmt.Errorf("member %s: not ready after %v", m.name, startLimit)
	}
	m.e = e
	return nil
}

// Start restarts the stopped member i with its old data and waits until it is ready.
func (c *Cluster) Start(i int) error { return c.start(i) }

// Stop stops member i (a no-op if it is stopped).
func (c *Cluster) Stop(i int) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
}

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.e != nil
}

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Leader returns the index of the running member that is the raft leader, or -1 if none knows.
func (c *Cluster) Leader() int {
	for i, m := range c.members {
		m.mu.Lock()
		e := m.e
		isLeader := e != nil && e.Server.Leader() == e.Server.MemberID() && e.Server.Leader() != 0
		m.mu.Unlock()
		if isLeader {
			return i
		}
	}
	return -1
}

// Endpoints returns the client URLs of all members (running or not).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL.String())
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL.String() }

// Client returns a client for endpoints (default: all members) that is closed when the test ends.
func (c *Cluster) Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return NewClient(t, endpoints...)
}

// NewClient returns a client for endpoints that is closed when the test ends.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) close() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// WaitHealthy polls until a linearizable read through cli succeeds or ctx ends.
func WaitHealthy(ctx context.Context, cli *clientv3.Client) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "etcdtest-health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdtest: not healthy: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
