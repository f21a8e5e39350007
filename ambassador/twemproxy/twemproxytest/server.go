package twemproxytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	cfg, err := twemproxy.Parse(poolYAML(name, addr, redis, extra, backends))
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

// StartNutcracker runs Debian's nutcracker (twemproxy 0.5.0) with the pool StartPool runs for the
// same arguments, on a free loopback port, for the length of the test, and returns the pool's
// address: a test can send the same bytes to both. It skips the test when nutcracker is not
// installed.
func StartNutcracker(t *testing.T, name string, redis bool, extra string, backends []string) string {
	t.Helper()
	if !shardproc.Have(shardproc.NutcrackerPath) {
		t.Skipf("%s is not installed (Debian package nutcracker): not compared with nutcracker", shardproc.NutcrackerPath)
	}
	ports, err := shardproc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, poolYAML(name, addr, redis, extra, backends), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := shardproc.StartNutcracker(path, ports[1], addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)
	return addr
}

// poolYAML is the configuration of one pool, name, listening on addr over backends.
func poolYAML(name, addr string, redis bool, extra string, backends []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  listen: %s\n", name, addr)
	if redis {
		b.WriteString("  redis: true\n")
	}
	fmt.Fprintf(&b, "%s  servers:\n", extra)
	for _, be := range backends {
		fmt.Fprintf(&b, "   - %s:1\n", be)
	}
	return []byte(b.String())
}
