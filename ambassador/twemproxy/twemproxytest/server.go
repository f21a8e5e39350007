package twemproxytest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// StartPool runs a twemproxy.Server with one pool, name, listening on a free loopback port and
// sharding over backends (server lines "addr:1"), for the length of the test. extra holds more pool
// lines, each indented two spaces ("  hash: md5\n"); redis adds "redis: true". It returns the pool's
// address, the server and the pool's parsed config, and fails the test unless Run returns nil at
// cleanup. opts go to twemproxy.NewServer.
func StartPool(t *testing.T, name string, redis bool, extra string, backends []string, protos twemproxy.Protocols, opts ...twemproxy.Option) (string, *twemproxy.Server, *twemproxy.PoolConfig) {
	t.Helper()
	port, err := shardproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  listen: %s\n", name, addr)
	if redis {
		b.WriteString("  redis: true\n")
	}
	fmt.Fprintf(&b, "%s  servers:\n", extra)
	for _, be := range backends {
		fmt.Fprintf(&b, "   - %s:1\n", be)
	}
	cfg, err := twemproxy.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, protos, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy not ready")
	}
	return addr, srv, cfg.Pools[0]
}
