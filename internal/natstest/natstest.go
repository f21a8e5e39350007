// Package natstest runs embedded nats-server nodes with JetStream for tests and benchmarks: a single
// node, or a cluster of nodes with routes between them, all on loopback with random ports and store
// directories that the caller owns.
//
// # Lifecycle
//
// Start and StartCluster return running servers; Shutdown stops them and waits until their goroutines
// have exited. Store directories are the caller's (use t.TempDir()).
//
// # Concurrency
//
// A Node or Cluster may be used from several goroutines; Shutdown is idempotent.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/internal/freeport"
)

// ErrNotReady is returned when a server or cluster does not become ready in time.
var ErrNotReady = errors.New("natstest: not ready")

// Node is one embedded nats-server.
type Node struct {
	Name   string
	Server *server.Server
	once   sync.Once
}

// URL is the node's client URL (nats://127.0.0.1:PORT).
func (n *Node) URL() string { return n.Server.ClientURL() }

// Shutdown stops the node and waits for it. Idempotent.
func (n *Node) Shutdown() {
	n.once.Do(func() {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	})
}

// errListen marks a start that failed because a listener could not bind its port.
var errListen = errors.New("natstest: listen")

// fatalLog is a nats-server Logger that keeps the first Fatalf message and drops everything else.
// nats-server reports a port it cannot bind through Fatalf and then keeps running without that
// listener, so without it a start would wait out the whole ready timeout.
type fatalLog struct {
	mu    sync.Mutex
	fatal string
}

func (l *fatalLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatal == "" {
		l.fatal = fmt.Sprintf(format, v...)
	}
}

func (l *fatalLog) failed() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (*fatalLog) Noticef(string, ...any) {}
func (*fatalLog) Warnf(string, ...any)   {}
func (*fatalLog) Errorf(string, ...any)  {}
func (*fatalLog) Debugf(string, ...any)  {}
func (*fatalLog) Tracef(string, ...any)  {}

// readyTimeout bounds how long startNode waits for a node's listeners.
const readyTimeout = 60 * time.Second

func startNode(opts *server.Options) (*Node, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	log := &fatalLog{}
	s.SetLogger(log, false, false)
	s.Start()
	fail := func(err error) (*Node, error) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, err
	}
	for deadline := time.Now().Add(readyTimeout); !s.ReadyForConnections(100 * time.Millisecond); {
		if msg := log.failed(); msg != "" {
			return fail(fmt.Errorf("%w: %s: %s", errListen, opts.ServerName, msg))
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%w: %s accepts no connections", ErrNotReady, opts.ServerName))
		}
	}
	return &Node{Name: opts.ServerName, Server: s}, nil
}

func baseOptions(name, dir string) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   dir,
		// Keep test servers small: the machine is shared.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  2 << 30,
	}
}

// Start runs a single JetStream node storing under dir.
func Start(dir string) (*Node, error) {
	n, err := startNode(baseOptions("n0", dir))
	if err != nil {
		return nil, err
	}
	if err := waitJetStream(n.URL(), 1); err != nil {
		n.Shutdown()
		return nil, err
	}
	return n, nil
}

// Cluster is a set of routed JetStream nodes.
type Cluster struct {
	Nodes []*Node
}

// StartCluster runs size nodes (3 for replicated streams) in one cluster, storing under dir/nN.
func StartCluster(dir string, size int) (*Cluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("natstest: cluster size %d", size)
	}
	var err error
	for range clusterAttempts {
		var c *Cluster
		if c, err = startCluster(dir, size); !errors.Is(err, errListen) {
			return c, err
		}
	}
	return nil, err
}

// clusterAttempts is how many times StartCluster picks fresh route ports after one was taken.
const clusterAttempts = 5

// reservePort returns a loopback port that was free a moment ago; tests replace it.
var reservePort = freeport.Port

func startCluster(dir string, size int) (*Cluster, error) {
	// Route ports are reserved up front so that every node can list every other as a route (the
	// mesh then survives losing any one node). Another socket can take a reserved port before its
	// node binds it (an outgoing connection's ephemeral port, say); startNode reports that as
	// errListen and StartCluster tries again with new ports.
	ports := make([]int, size)
	var routes []string
	for i := range ports {
		p, err := reservePort()
		if err != nil {
			return nil, fmt.Errorf("natstest: reserve route port: %w", err)
		}
		ports[i] = p
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &Cluster{Nodes: make([]*Node, size)}
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		name := fmt.Sprintf("n%d", i)
		o := baseOptions(name, filepath.Join(dir, name))
		o.Cluster = server.ClusterOpts{Name: "podblocks", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		wg.Go(func() { c.Nodes[i], errs[i] = startNode(o) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	if err := waitJetStream(c.URLs(), size); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// URLs is every node's client URL, comma-separated, as nats.Connect takes it.
func (c *Cluster) URLs() string {
	s := ""
	for i, n := range c.Nodes {
		if i > 0 {
			s += ","
		}
		s += n.URL()
	}
	return s
}

// Shutdown stops every node. Idempotent.
func (c *Cluster) Shutdown() {
	for _, n := range c.Nodes {
		if n != nil {
			n.Shutdown()
		}
	}
}

// waitJetStream waits until the JetStream API answers and (for clusters) has a meta leader with
// peers+1 known servers.
func waitJetStream(urls string, peers int) error {
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect %s: %w", urls, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, last = js.AccountInfo(ctx)
		cancel()
		if last == nil && peers > 1 {
			last = probeStream(js, peers)
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%w: jetstream: %v", ErrNotReady, last)
}

// probeStream creates and deletes a stream with peers replicas, proving the cluster can place one.
func probeStream(js jetstream.JetStream, peers int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "NATSTEST_PROBE", Subjects: []string{"natstest.probe"}, Replicas: peers, Storage: jetstream.MemoryStorage})
	if err != nil {
		return err
	}
	return js.DeleteStream(ctx, "NATSTEST_PROBE")
}
